package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/api"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/webhooks"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/schemas"
)

const hookURL = "https://hooks.example.com/blazelock"

// ---- Sign-in, sessions, sign-out ----

func TestSignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	b := e.newBrowser()
	p := b.get("/portal/sign-in")
	wantPage(t, p, http.StatusOK, "Sign in")
	if tag := inputTag(t, p.body, "token"); !strings.Contains(tag, `type="password"`) {
		t.Errorf("token input %s is not a password field", tag)
	}

	const wrongToken = "not-the-admin-token-a41c"
	refused := []string{wrongToken, "", "   ", adminToken + "x", adminToken[:len(adminToken)-1], strings.ToUpper(adminToken)}
	for _, token := range refused {
		p := b.post("/portal/sign-in", url.Values{"token": {token}})
		wantPage(t, p, http.StatusUnauthorized, "Sign in")
		if msg, _ := fieldError(p.body, "token"); !strings.Contains(msg, "This is not the admin token") {
			t.Errorf("token %q: no field message next to the token: %q", token, msg)
		}
		if len(p.header.Values("Set-Cookie")) > 0 || b.cookie() != "" {
			t.Fatalf("token %q: a refused sign-in set a cookie", token)
		}
		if token != "" && strings.Contains(p.body, token) && strings.TrimSpace(token) != "" {
			t.Errorf("the refused token %q is echoed in the page", token)
		}
	}
	if got := len(e.logLines("portal sign-in refused: wrong admin token")); got != len(refused) {
		t.Errorf("%d refusals logged, want %d", got, len(refused))
	}
	if n := len(e.audits("session.signed_in")); n != 0 {
		t.Fatalf("%d sign-ins audited before the right token", n)
	}

	// The right token, as pasted with surrounding white space.
	p = b.post("/portal/sign-in", url.Values{"token": {"  " + adminToken + "\n"}})
	wantRedirect(t, p, "/portal/")
	c := setCookie(t, p)
	if c.Name != "blazelock_session" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" || c.Secure {
		t.Errorf("session cookie %+v: want blazelock_session, HttpOnly, SameSite=Strict, Path=/, host-only, not Secure over http", c)
	}
	if least := int((sessionTTL - time.Minute).Seconds()); c.MaxAge < least || c.MaxAge > int(sessionTTL.Seconds()) {
		t.Errorf("cookie Max-Age %d, want about %s", c.MaxAge, sessionTTL)
	}
	if !wellFormed(c.Value) || c.Value == adminToken {
		t.Errorf("cookie value is not a fresh token")
	}
	e.requireAudit("session.signed_in", "", "operator session")
	wantPage(t, b.get("/portal/"), http.StatusOK, "Integrations")
}

func TestSignInRefusedWithoutAdminToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(d *Deps) { d.AdminToken = "" })
	b := e.newBrowser()
	for _, token := range []string{"", adminToken} {
		p := b.post("/portal/sign-in", url.Values{"token": {token}})
		wantPage(t, p, http.StatusUnauthorized, "Sign in")
		if b.cookie() != "" {
			t.Fatalf("token %q signed in with no admin token configured", token)
		}
	}
}

func TestSignInSecureCookie(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		publicURL string
		target    string // scheme says whether the request came over TLS
	}{
		{"public URL https behind a TLS proxy", "https://webhooks.example.com", "http://webhooks.example.com/portal/sign-in"},
		{"request over TLS", "", "https://webhooks.example.com/portal/sign-in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(d *Deps) { d.PublicURL = tt.publicURL })
			req := httptest.NewRequest(http.MethodPost, tt.target, strings.NewReader(url.Values{"token": {adminToken}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			p := e.serve(req)
			wantRedirect(t, p, "/portal/")
			c := setCookie(t, p)
			if c.Name != "__Host-blazelock_session" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
				t.Fatalf("cookie %+v: want __Host-blazelock_session, Secure, HttpOnly, SameSite=Strict, Path=/, no Domain", c)
			}

			pageWith := func(name string) page {
				req := httptest.NewRequest(http.MethodGet, strings.Replace(tt.target, "/sign-in", "/", 1), nil)
				req.AddCookie(&http.Cookie{Name: name, Value: c.Value})
				return e.serve(req)
			}
			wantPage(t, pageWith(c.Name), http.StatusOK, "Integrations")
			// The same value under the plain name is not read.
			if p := pageWith(cookieName); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/portal/sign-in") {
				t.Errorf("plain cookie name on a secure site: status %d to %q, want the sign-in page", p.status, p.location())
			}

			// Signing out clears the __Host- cookie.
			req = httptest.NewRequest(http.MethodPost, strings.Replace(tt.target, "/sign-in", "/sign-out", 1), nil)
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
			out := setCookie(t, e.serve(req))
			if out.Name != c.Name || out.MaxAge >= 0 || out.Value != "" || !out.Secure {
				t.Errorf("sign-out cookie %+v: want %s cleared", out, c.Name)
			}
			if p := pageWith(c.Name); p.status != http.StatusSeeOther {
				t.Errorf("after sign-out: status %d, want the sign-in redirect", p.status)
			}
		})
	}
}

func TestSignInNextStaysOnThisSite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	deliveries := "/portal/integrations/" + id + "/deliveries?state=dead&event=file_scan.failed"
	tests := []struct{ next, want, hidden string }{
		{"", "/portal/", ""},
		{"/portal/", "/portal/", ""},
		{deliveries, deliveries, ""},
		{"/portal//evil.example", "/portal/", ""}, // not a clean path: refused
		{"/portal/../x", "/portal/", ""},          // resolves outside the pages
		{"/portal/%2e%2e/x", "/portal/", ""},
		{"/portal/%2E%2E/x", "/portal/", ""},
		{"//evil.example", "/portal/", ""},
		{"//evil.example/portal/", "/portal/", ""},
		{"///evil.example", "/portal/", ""},
		{"https://evil.example", "/portal/", ""},
		{"https://evil.example/portal/", "/portal/", ""},
		{"http:/portal/", "/portal/", ""},
		{"HTTPS://evil.example/portal/", "/portal/", ""},
		{"javascript:alert(1)//", "/portal/", ""},
		{"/\\evil.example", "/portal/", ""},
		{"/portal/\\evil.example", "/portal/", ""},
		{"/portal/\\\\evil.example", "/portal/", ""},
		{"/portal/\r\nSet-Cookie: x=y", "/portal/", ""},
		{"/portal/\t//evil.example", "/portal/", ""},
		{" /portal/", "/portal/", ""},
		{"/evil", "/portal/", ""},
		{"/v1/integrations", "/portal/", ""},
		{"portal/", "/portal/", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.next), func(t *testing.T) {
			// Posted with the sign-in form.
			b := e.newBrowser()
			p := b.post("/portal/sign-in", url.Values{"token": {adminToken}, "next": {tt.next}})
			wantRedirect(t, p, tt.want)

			// Carried by the sign-in page's hidden field.
			hidden := tt.hidden
			if hidden == "" {
				hidden = tt.want
			}
			signIn := e.newBrowser().get("/portal/sign-in?next=" + url.QueryEscape(tt.next))
			m := regexp.MustCompile(`name="next" value="([^"]*)"`).FindStringSubmatch(signIn.body)
			if m == nil || html.UnescapeString(m[1]) != hidden {
				t.Errorf("hidden next %v, want %q", m, hidden)
			}

			// And the sign-in page of a signed-in operator moves on at once.
			wantRedirect(t, b.get("/portal/sign-in?next="+url.QueryEscape(tt.next)), tt.want)
		})
	}
}

func TestUnauthenticatedRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	cfg := e.createWebhook(id, true, hookURL, schemas.EventCompleted)
	d := e.saveDelivery(newDelivery(id, 1, e.clock.Now(), deliverylog.StateDead, schemas.EventCompleted))

	signedOut := e.operator()
	stale := signedOut.cookie()
	if p := signedOut.post("/portal/sign-out", nil); p.status != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", p.status)
	}
	browsers := map[string]func() *browser{
		"no cookie":        e.newBrowser,
		"unknown cookie":   func() *browser { b := e.newBrowser(); tok, _ := newToken(); b.setCookie(tok); return b },
		"malformed cookie": func() *browser { b := e.newBrowser(); b.setCookie("garbage"); return b },
		"signed-out cookie": func() *browser {
			b := e.newBrowser()
			b.setCookie(stale)
			return b
		},
	}

	base := "/portal/integrations/" + id
	gets := []string{
		"/portal/",
		"/portal/?q=abc",
		"/portal/integrations/?id=" + id,
		base,
		base + "?notice=created",
		base + "/secret/regenerate",
		base + "/deliveries?state=dead&event=" + schemas.EventCompleted,
		base + "/deliveries/" + d.ID,
		"/portal/integrations/not-a-uuid",
	}
	posts := []struct {
		path string
		form url.Values
	}{
		{base + "/webhook", settingsForm(false, "https://other.example.com/x")},
		{base + "/secret", nil},
		{base + "/secret/regenerate", nil},
		{base + "/deliveries/" + d.ID + "/retry", nil},
	}
	for name, newBrowser := range browsers {
		t.Run(name, func(t *testing.T) {
			for _, path := range gets {
				b := newBrowser()
				p := b.get(path)
				wantRedirect(t, p, "/portal/sign-in?next="+url.QueryEscape(path))
			}
			for _, post := range posts {
				p := newBrowser().post(post.path, post.form, "Accept", "application/json")
				wantErrorPage(t, p, http.StatusUnauthorized, "Your session has ended")
			}
		})
	}

	// The redirect's next brings the operator back after signing in.
	b := e.newBrowser()
	path := base + "/deliveries?state=dead&event=" + schemas.EventCompleted
	loc := b.get(path).location()
	signIn := b.get(loc)
	m := regexp.MustCompile(`name="next" value="([^"]*)"`).FindStringSubmatch(signIn.body)
	if m == nil || html.UnescapeString(m[1]) != path {
		t.Fatalf("sign-in page next %v, want %q", m, path)
	}
	wantRedirect(t, b.post("/portal/sign-in", url.Values{"token": {adminToken}, "next": {html.UnescapeString(m[1])}}), path)

	// Nothing changed.
	if got, err := e.getWebhook(id); err != nil || got.Revision != cfg.Revision || got.Secret != cfg.Secret {
		t.Errorf("webhook changed by unauthenticated requests: %+v, %v", got, err)
	}
	if got := e.loadDelivery(d); got.State != deliverylog.StateDead {
		t.Errorf("delivery %s after unauthenticated retry, want dead", got.State)
	}
	for _, action := range []string{"webhook.saved", "secret.revealed", "secret.regenerated", "delivery.retried"} {
		if n := len(e.audits(action)); n != 0 {
			t.Errorf("%d %s audit lines", n, action)
		}
	}
}

func TestSessionExpiresOnPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	e.createWebhook(id, false, hookURL)
	op := e.operator()
	pb := e.portal(id)

	e.clock.Advance(sessionTTL - time.Second)
	wantPage(t, op.get("/portal/"), http.StatusOK, "Integrations")
	wantPage(t, pb.get("/portal/integrations/"+id), http.StatusOK, "Webhook")

	e.clock.Advance(time.Second)
	for _, b := range []*browser{op, pb} {
		wantRedirect(t, b.get("/portal/integrations/"+id), "/portal/sign-in?next="+url.QueryEscape("/portal/integrations/"+id))
		wantErrorPage(t, b.post("/portal/integrations/"+id+"/secret/regenerate", nil), http.StatusUnauthorized, "Your session has ended")
	}
	if n := len(e.audits("secret.regenerated")); n != 0 {
		t.Errorf("an expired session regenerated the secret")
	}
}

func TestSignOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	for _, tt := range []struct {
		kind, integrationID string
		open                func() *browser
	}{
		{"operator session", "", e.operator},
		{"portal session", id, func() *browser { return e.portal(id) }},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			b := tt.open()
			cookie := b.cookie()
			p := b.post("/portal/sign-out", nil)
			wantRedirect(t, p, "/portal/sign-in?notice=signed-out")
			if c := setCookie(t, p); c.Name != cookieName || c.MaxAge >= 0 || c.Value != "" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Errorf("sign-out Set-Cookie %+v: want the session cookie cleared", c)
			}
			if b.cookie() != "" {
				t.Error("the browser kept its cookie")
			}
			if got := notice(b.get("/portal/sign-in?notice=signed-out").body); got != "You are signed out." {
				t.Errorf("sign-in notice %q", got)
			}
			// The session is gone on the server: replaying the cookie fails.
			replay := e.newBrowser()
			replay.setCookie(cookie)
			wantRedirect(t, replay.get("/portal/"), "/portal/sign-in?next=%2Fportal%2F")
			if slices.Contains(e.portalKeys(), "session."+hashOf(cookie)) {
				t.Error("the session's key is still in the bucket")
			}
			var found bool
			for _, m := range e.audits("session.signed_out") {
				if m["integration_id"] == tt.integrationID && strings.HasPrefix(m["actor"].(string), tt.kind+" "+hashOf(cookie)[:12]) {
					found = true
				}
			}
			if !found {
				t.Errorf("no session.signed_out audit line for the %s", tt.kind)
			}
		})
	}
	// Signing out without a session just goes to the sign-in page.
	wantRedirect(t, e.newBrowser().post("/portal/sign-out", nil), "/portal/sign-in?notice=signed-out")
}

// ---- Portal links ----

func TestPortalLinkPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()

	token := e.newLink(id)
	b := e.newBrowser()
	p := b.get("/portal/links/" + token)
	wantPage(t, p, http.StatusOK, "Signed in")
	next := "/portal/integrations/" + id
	if !strings.Contains(p.body, `<meta http-equiv="refresh" content="0; url=`+next+`">`) {
		t.Errorf("continue page does not move on to %s:\n%s", next, p.body)
	}
	c := setCookie(t, p)
	if c.Name != cookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Errorf("link cookie %+v", c)
	}
	if strings.Contains(p.body, token) {
		t.Error("the continue page repeats the link token")
	}
	e.requireAudit("session.opened_by_link", id, "portal session")
	wantPage(t, b.get(next), http.StatusOK, "Webhook")

	t.Run("used", func(t *testing.T) {
		again := e.newBrowser()
		p := again.get("/portal/links/" + token)
		wantErrorPage(t, p, http.StatusGone, "This link has already been used")
		if len(p.header.Values("Set-Cookie")) > 0 {
			t.Error("a used link set a cookie")
		}
	})
	t.Run("expired", func(t *testing.T) {
		expired := e.newLink(id)
		e.clock.Advance(linkTTL)
		t.Cleanup(func() { e.clock.Advance(-linkTTL) })
		p := e.newBrowser().get("/portal/links/" + expired)
		wantErrorPage(t, p, http.StatusGone, "This link has expired")
		if len(p.header.Values("Set-Cookie")) > 0 {
			t.Error("an expired link set a cookie")
		}
	})
	t.Run("altered or malformed", func(t *testing.T) {
		fresh := e.newLink(id)
		for _, alt := range []string{
			alter(fresh),
			fresh[:len(fresh)-1],
			fresh + "A",
			"abc",
			strings.Repeat("-", len(fresh)),
			url.PathEscape("<script>alert(1)</script>"),
		} {
			p := e.newBrowser().get("/portal/links/" + alt)
			wantErrorPage(t, p, http.StatusNotFound, "This link is not valid")
			if strings.Contains(p.body, "<script>alert") {
				t.Error("the link path is reflected unescaped")
			}
		}
		// The genuine link still works afterwards.
		wantPage(t, e.newBrowser().get("/portal/links/"+fresh), http.StatusOK, "Signed in")
	})
	t.Run("operator link", func(t *testing.T) {
		op := e.newBrowser()
		p := op.get("/portal/links/" + e.newLink(""))
		if !strings.Contains(p.body, `content="0; url=/portal/"`) {
			t.Errorf("an operator link does not continue to /portal/:\n%s", p.body)
		}
		wantPage(t, op.get("/portal/"), http.StatusOK, "Integrations")
	})
	t.Run("two browsers at once", func(t *testing.T) {
		racy := e.newLink(id)
		statuses := make([]int, 2)
		var wg sync.WaitGroup
		for i := range statuses {
			wg.Go(func() { statuses[i] = e.newBrowser().get("/portal/links/" + racy).status })
		}
		wg.Wait()
		slices.Sort(statuses)
		if !slices.Equal(statuses, []int{http.StatusOK, http.StatusGone}) {
			t.Errorf("statuses %v, want one 200 and one 410", statuses)
		}
	})
}

func TestCreateLink(t *testing.T) {
	t.Parallel()
	id := newID()
	linkShape := regexp.MustCompile(`^(https?://[^/]+)/portal/links/([A-Za-z0-9_-]{43})$`)
	tests := []struct {
		name, publicURL, target, wantBase string
	}{
		{"request host over http", "", "http://dispatcher.internal:8080/v1/integrations/" + id + "/portal-links", "http://dispatcher.internal:8080"},
		{"request host over TLS", "", "https://dispatcher.internal/v1/integrations/" + id + "/portal-links", "https://dispatcher.internal"},
		{"public URL", "https://webhooks.example.com", "http://10.1.2.3:8080/v1/integrations/" + id + "/portal-links", "https://webhooks.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(d *Deps) { d.PublicURL = tt.publicURL })
			req := httptest.NewRequest(http.MethodPost, tt.target, nil)
			link, expires, err := e.srv.CreateLink(req.Context(), req, id)
			if err != nil {
				t.Fatal(err)
			}
			m := linkShape.FindStringSubmatch(link)
			if m == nil || m[1] != tt.wantBase {
				t.Fatalf("link %q, want %s/portal/links/<token>", link, tt.wantBase)
			}
			e.remember(m[2])
			if want := e.clock.Now().Add(linkTTL); expires.Sub(want).Abs() > time.Second {
				t.Errorf("expires %s, want %s", expires, want)
			}
			// The link opens a session for that integration only.
			redeem := httptest.NewRequest(http.MethodGet, link, nil)
			p := e.serve(redeem)
			wantPage(t, p, http.StatusOK, "Signed in")
			c := setCookie(t, p)
			sess, err := e.access.Session(context.Background(), c.Value)
			if err != nil || sess.IntegrationID != id {
				t.Fatalf("link session %+v, %v; want one limited to %s", sess, err, id)
			}
			if secure := strings.HasPrefix(tt.wantBase, "https://"); c.Secure != secure {
				t.Errorf("cookie Secure %t, want %t", c.Secure, secure)
			}

			// The start-up banner's operator link.
			op, _, err := e.srv.OperatorLink(context.Background(), "http://127.0.0.1:8080")
			if err != nil {
				t.Fatal(err)
			}
			wantOpBase := "http://127.0.0.1:8080"
			if tt.publicURL != "" {
				wantOpBase = tt.publicURL
			}
			m = linkShape.FindStringSubmatch(op)
			if m == nil || m[1] != wantOpBase {
				t.Fatalf("operator link %q, want base %s", op, wantOpBase)
			}
			e.remember(m[2])
			cookie, sess, err := e.access.Redeem(context.Background(), m[2])
			e.remember(cookie)
			if err != nil || !sess.Operator() {
				t.Errorf("operator link session %+v, %v", sess, err)
			}
		})
	}
}

// The management API's route hands out links the pages redeem.
func TestPortalLinkFromAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	apiServer := httptest.NewServer(api.New(api.Deps{
		Webhooks: e.store, AdminToken: adminToken, PortalLinks: e.srv, Logger: e.deps.Logger,
	}).Handler())
	t.Cleanup(apiServer.Close)
	id := newID()

	req, _ := http.NewRequest(http.MethodPost, apiServer.URL+"/v1/integrations/"+strings.ToUpper(id)+"/portal-links", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := apiServer.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		URL       string `json:"url"`
		ExpiresAt string `json:"expires_at"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusCreated || res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, Cache-Control %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	prefix := apiServer.URL + "/portal/links/"
	token, ok := strings.CutPrefix(body.URL, prefix)
	if !ok || !wellFormed(token) {
		t.Fatalf("url %q, want %s<token>", body.URL, prefix)
	}
	e.remember(token)
	if exp, err := time.Parse(time.RFC3339, body.ExpiresAt); err != nil || exp.Sub(time.Now().Add(linkTTL)).Abs() > time.Minute {
		t.Errorf("expires_at %q", body.ExpiresAt)
	}

	b := e.newBrowser()
	p := b.get("/portal/links/" + token)
	wantPage(t, p, http.StatusOK, "Signed in")
	if !strings.Contains(p.body, "url=/portal/integrations/"+id+`"`) {
		t.Errorf("continue page does not go to the lower-case integration %s", id)
	}
	wantPage(t, b.get("/portal/integrations/"+id), http.StatusOK, "Webhook")
	wantErrorPage(t, b.get("/portal/integrations/"+newID()), http.StatusNotFound, "Not found")
}

// ---- Who sees what ----

func TestPortalSessionSeesOnlyItsIntegration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, other := newID(), newID()
	e.createWebhook(a, true, hookURL, schemas.EventCompleted)
	cfgOther := e.createWebhook(other, true, "https://other.example.com/hook", schemas.EventFailed)
	dA := e.saveDelivery(newDelivery(a, e.publishEvent(a, schemas.EventCompleted), e.clock.Now(), deliverylog.StateDead, schemas.EventCompleted))
	dOther := e.saveDelivery(newDelivery(other, e.publishEvent(other, schemas.EventFailed), e.clock.Now(), deliverylog.StateDead, schemas.EventFailed))

	b := e.portal(a)
	own := "/portal/integrations/" + a
	wantRedirect(t, b.get("/portal/"), own)
	wantRedirect(t, b.get("/portal/?q="+other), own)
	wantRedirect(t, b.get("/portal/integrations/?id="+a), own)

	p := b.get(own)
	wantPage(t, p, http.StatusOK, "Webhook")
	if !strings.Contains(p.body, "Integration "+a) || strings.Contains(p.body, "All integrations") {
		t.Error("a portal session's menu should name its integration and not list all integrations")
	}
	wantPage(t, b.get("/portal/integrations/"+strings.ToUpper(a)), http.StatusOK, "Webhook")
	p = b.get(own + "/deliveries")
	wantPage(t, p, http.StatusOK, "Deliveries")
	if ids := listedDeliveries(p.body); !slices.Equal(ids, []string{dA.ID}) {
		t.Errorf("deliveries listed %v, want only %s", ids, dA.ID)
	}
	wantPage(t, b.get(own+"/deliveries/"+dA.ID), http.StatusOK, "Delivery")
	wantPage(t, b.get(own+"/secret/regenerate"), http.StatusOK, "Regenerate the secret")

	// Another integration answers exactly as one that does not exist.
	absent := b.get("/portal/integrations/" + newID())
	wantErrorPage(t, absent, http.StatusNotFound, "Not found")
	theirs := "/portal/integrations/" + other
	requests := []struct {
		method, path string
		form         url.Values
	}{
		{http.MethodGet, theirs, nil},
		{http.MethodGet, theirs + "?notice=saved", nil},
		{http.MethodGet, "/portal/integrations/" + strings.ToUpper(other), nil},
		{http.MethodGet, theirs + "/deliveries", nil},
		{http.MethodGet, theirs + "/deliveries?state=dead", nil},
		{http.MethodGet, theirs + "/deliveries/" + dOther.ID, nil},
		{http.MethodGet, theirs + "/deliveries/" + dA.ID, nil},
		{http.MethodGet, theirs + "/secret/regenerate", nil},
		{http.MethodPost, theirs + "/webhook", settingsForm(false, hookURL)},
		{http.MethodPost, theirs + "/secret", nil},
		{http.MethodPost, theirs + "/secret/regenerate", nil},
		{http.MethodPost, theirs + "/deliveries/" + dOther.ID + "/retry", nil},
	}
	for _, r := range requests {
		var p page
		if r.method == http.MethodGet {
			p = b.get(r.path)
		} else {
			p = b.post(r.path, r.form, "Accept", "application/json")
		}
		wantErrorPage(t, p, http.StatusNotFound, "Not found")
		if p.body != absent.body {
			t.Errorf("%s %s: the answer differs from a nonexistent integration's", r.method, r.path)
		}
		if strings.Contains(p.body, cfgOther.Secret) || strings.Contains(p.body, cfgOther.URL) {
			t.Errorf("%s %s: leaks the other integration's settings", r.method, r.path)
		}
	}
	wantErrorPage(t, b.get("/portal/integrations/?id="+other), http.StatusNotFound, "Not an integration id")

	// Its own URLs with the other integration's delivery.
	for _, p := range []page{
		b.get(own + "/deliveries/" + dOther.ID),
		b.post(own+"/deliveries/"+dOther.ID+"/retry", nil),
	} {
		wantErrorPage(t, p, http.StatusNotFound, "No such delivery")
	}

	// Nothing of the other integration changed.
	if got, err := e.getWebhook(other); err != nil || got.Revision != cfgOther.Revision || got.Secret != cfgOther.Secret {
		t.Errorf("the other integration's webhook changed: %+v, %v", got, err)
	}
	if got := e.loadDelivery(dOther); got.State != deliverylog.StateDead || got.Series != 1 {
		t.Errorf("the other integration's delivery is %s, series %d; want dead, 1", got.State, got.Series)
	}
	for _, m := range e.logLines("portal audit") {
		if m["integration_id"] == other {
			t.Errorf("audit line about the other integration: %v", m)
		}
	}

	// An operator sees both.
	op := e.operator()
	wantPage(t, op.get(theirs), http.StatusOK, "Webhook")
	wantPage(t, op.get(theirs+"/deliveries/"+dOther.ID), http.StatusOK, "Delivery")
	wantErrorPage(t, op.get(own+"/deliveries/"+dOther.ID), http.StatusNotFound, "No such delivery")
}

func TestOperatorIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const count = indexPageSize + 2
	var ids []string
	for i := range count {
		id := newID()
		ids = append(ids, id)
		e.createWebhook(id, i%2 == 0, hookURL, schemas.EventCompleted, schemas.EventFailed)
	}
	slices.Sort(ids)
	op := e.operator()

	p := op.get("/portal/")
	wantPage(t, p, http.StatusOK, "Integrations")
	if !strings.Contains(p.body, fmt.Sprintf("%d integrations", count)) {
		t.Errorf("index does not count %d integrations", count)
	}
	rows := regexp.MustCompile(`<a href="/portal/integrations/([0-9a-f-]{36})"`).FindAllStringSubmatch(p.body, -1)
	if len(rows) != indexPageSize || rows[0][1] != ids[0] || rows[len(rows)-1][1] != ids[indexPageSize-1] {
		t.Fatalf("first page lists %d rows, want the first %d ids in order", len(rows), indexPageSize)
	}
	more := regexp.MustCompile(`href="(/portal/\?q=&amp;after=[0-9a-f-]{36})"`).FindStringSubmatch(p.body)
	if more == nil {
		t.Fatal("no link to the next integrations")
	}
	p = op.get(html.UnescapeString(more[1]))
	rows = regexp.MustCompile(`<a href="/portal/integrations/([0-9a-f-]{36})"`).FindAllStringSubmatch(p.body, -1)
	if len(rows) != count-indexPageSize || rows[0][1] != ids[indexPageSize] {
		t.Errorf("second page lists %d rows, want %d", len(rows), count-indexPageSize)
	}

	// Search by part of an id.
	p = op.get("/portal/?q=" + url.QueryEscape(strings.ToUpper(ids[7][:13])))
	if !strings.Contains(p.body, ids[7]) || !strings.Contains(p.body, "matching") {
		t.Errorf("search for %s does not list it", ids[7][:13])
	}
	p = op.get("/portal/?q=" + url.QueryEscape("<script>alert(1)</script>"))
	if strings.Contains(p.body, "<script>alert") || !strings.Contains(p.body, "0 integrations") {
		t.Error("search text is reflected unescaped, or matched something")
	}

	// Open by id, also one without a webhook.
	fresh := newID()
	wantRedirect(t, op.get("/portal/integrations/?id="+url.QueryEscape("  "+strings.ToUpper(fresh)+" ")), "/portal/integrations/"+fresh)
	p = op.get("/portal/integrations/" + fresh)
	wantPage(t, p, http.StatusOK, "Webhook")
	if strings.Contains(p.body, "secret-value") {
		t.Error("an integration without a webhook shows a secret section")
	}
	for _, bad := range []string{"", "nope", fresh[:35], fresh + "0", "{" + fresh + "}"} {
		wantErrorPage(t, op.get("/portal/integrations/?id="+url.QueryEscape(bad)), http.StatusNotFound, "Not an integration id")
	}
}

// ---- Settings ----

func TestSettingsCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	b := e.portal(id)
	path := "/portal/integrations/" + id

	p := b.get(path)
	wantPage(t, p, http.StatusOK, "Webhook")
	if strings.Contains(p.body, "secret-value") || strings.Contains(p.body, "/secret/regenerate") {
		t.Error("the form of an integration without a webhook shows a secret section")
	}
	if tag := inputTag(t, p.body, "url"); !strings.Contains(tag, `value=""`) {
		t.Errorf("url input %s, want empty", tag)
	}

	// Events as a browser sends them: in page order, whatever was ticked.
	p = b.post(path+"/webhook", settingsForm(true, "  "+hookURL+"  ", schemas.EventFailed, schemas.EventCompleted))
	wantRedirect(t, p, path+"?notice=created")
	cfg, err := e.getWebhook(id)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Enabled || cfg.URL != hookURL || !slices.Equal(cfg.Events, []string{schemas.EventCompleted, schemas.EventFailed}) {
		t.Errorf("stored %+v", cfg.Settings)
	}
	audit := e.requireAudit("webhook.saved", id, "portal session")
	if audit["created"] != true || audit["changes"] != "enabled=true url="+hookURL+" events=file_scan.completed,file_scan.failed" {
		t.Errorf("audit line %v", audit)
	}

	p = b.get(path + "?notice=created")
	wantPage(t, p, http.StatusOK, "Webhook")
	if got := notice(p.body); got != notices["created"] {
		t.Errorf("notice %q, want %q", got, notices["created"])
	}
	if !checked(inputTag(t, p.body, "enabled")) {
		t.Error("enabled is not ticked")
	}
	if tag := inputTag(t, p.body, "url"); !strings.Contains(tag, `value="`+hookURL+`"`) {
		t.Errorf("url input %s", tag)
	}
	for _, ev := range allEvents {
		if got, want := checked(inputTag(t, p.body, "event-"+ev)), slices.Contains(cfg.Events, ev); got != want {
			t.Errorf("event %s ticked %t, want %t", ev, got, want)
		}
	}
	if strings.Contains(p.body, cfg.Secret) {
		t.Fatal("the settings page contains the secret")
	}
	if !strings.Contains(p.body, webhooks.MaskSecret(cfg.Secret)) {
		t.Error("the settings page does not show the masked secret")
	}

	// Only the fixed notices are shown.
	for _, n := range []string{"bogus", "<script>alert(1)</script>"} {
		p := b.get(path + "?notice=" + url.QueryEscape(n))
		if got := notice(p.body); got != "" {
			t.Errorf("notice %q shown for ?notice=%s", got, n)
		}
	}
}

func TestSettingsValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name   string
		form   url.Values
		field  string // the field with the problem; the other must have none
		reason string
	}{
		{"http URL", settingsForm(true, "http://hooks.example.com/blazelock", schemas.EventCompleted), "url", "URL must use https."},
		{"localhost", settingsForm(true, "https://localhost/hook", schemas.EventCompleted), "url", "URL must not point at localhost."},
		{"localhost subdomain", settingsForm(true, "https://api.localhost:8443/hook", schemas.EventCompleted), "url", "URL must not point at localhost."},
		{"loopback address", settingsForm(true, "https://127.0.0.1/hook", schemas.EventCompleted), "url", "URL must not point at"},
		{"name resolving to a private address", settingsForm(true, "https://internal.example.com/hook", schemas.EventCompleted), "url", "URL must not resolve to"},
		{"host that does not exist", settingsForm(true, "https://nowhere.example.com/hook", schemas.EventCompleted), "url", "URL has a host that does not exist."},
		{"credentials", settingsForm(true, "https://user:pw@hooks.example.com/hook", schemas.EventCompleted), "url", "URL must not contain credentials."},
		{"empty URL", settingsForm(false, "  "), "url", "URL must not be empty."},
		{"enabled without events", settingsForm(true, hookURL), "events", "Events must include at least one event while the webhook is enabled."},
		{"tampered event name", settingsForm(true, hookURL, schemas.EventCompleted, "file_scan.deleted"), "events", "is not an event"},
		{"markup as an event name", settingsForm(false, hookURL, "<script>alert(1)</script>"), "events", "is not an event"},
		{"repeated event", settingsForm(true, hookURL, schemas.EventFailed, schemas.EventFailed), "events", "is listed more than once"},
	}
	existing := newID()
	before := e.createWebhook(existing, true, "https://other.example.com/hook", schemas.EventSubmitted)
	op := e.operator()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, id := range []string{newID(), existing} {
				path := "/portal/integrations/" + id
				p := op.post(path+"/webhook", tt.form)
				wantPage(t, p, http.StatusUnprocessableEntity, "Webhook")
				if got := alert(p.body); got != "Nothing was saved: correct the fields marked below." {
					t.Errorf("alert %q", got)
				}
				msg, ok := fieldError(p.body, tt.field)
				if !ok || !strings.Contains(html.UnescapeString(msg), tt.reason) {
					t.Errorf("%s message %q, want one containing %q", tt.field, html.UnescapeString(msg), tt.reason)
				}
				otherField := map[string]string{"url": "events", "events": "url"}[tt.field]
				if msg, ok := fieldError(p.body, otherField); ok {
					t.Errorf("unexpected %s message %q", otherField, msg)
				}
				if tt.field == "url" {
					tag := inputTag(t, p.body, "url")
					if !strings.Contains(tag, `aria-invalid="true"`) || !strings.Contains(tag, "url-error") {
						t.Errorf("url input %s is not marked invalid and described by its error", tag)
					}
				}
				// The form shows what was submitted, escaped.
				if tag := inputTag(t, p.body, "url"); !strings.Contains(html.UnescapeString(tag), `value="`+strings.TrimSpace(tt.form.Get("url"))+`"`) {
					t.Errorf("url input %s does not keep the submitted value", tag)
				}
				if strings.Contains(p.body, "<script>alert") {
					t.Error("a submitted value is reflected unescaped")
				}
				// Nothing was stored.
				got, err := e.getWebhook(id)
				if id == existing {
					if err != nil || got.Revision != before.Revision {
						t.Errorf("existing webhook changed: %+v, %v", got, err)
					}
					if strings.Contains(p.body, before.Secret) || !strings.Contains(p.body, webhooks.MaskSecret(before.Secret)) {
						t.Error("the 422 page should show the stored secret masked, never in full")
					}
				} else if !errors.Is(err, webhooks.ErrNotFound) {
					t.Errorf("a refused form stored a webhook: %+v, %v", got, err)
				}
			}
		})
	}
	if n := len(e.audits("webhook.saved")); n != 0 {
		t.Errorf("%d webhook.saved audit lines for refused forms", n)
	}
}

func TestSettingsSaveAndDisable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	created := e.createWebhook(id, true, hookURL, schemas.EventCompleted)
	op := e.operator()
	path := "/portal/integrations/" + id
	const otherURL = "https://other.example.com/hook"

	steps := []struct {
		name       string
		form       url.Values
		wantNotice string
		want       webhooks.Settings
		changes    string
	}{
		{"change the URL and events", settingsForm(true, otherURL, schemas.EventSubmitted, schemas.EventCompleted), "saved",
			webhooks.Settings{Enabled: true, URL: otherURL, Events: []string{schemas.EventSubmitted, schemas.EventCompleted}},
			"url " + hookURL + "→" + otherURL + "; events file_scan.completed→file_scan.submitted,file_scan.completed"},
		{"disable", settingsForm(false, otherURL, schemas.EventSubmitted, schemas.EventCompleted), "disabled",
			webhooks.Settings{Enabled: false, URL: otherURL, Events: []string{schemas.EventSubmitted, schemas.EventCompleted}},
			"enabled true→false"},
		{"save while disabled, without events", settingsForm(false, otherURL), "saved",
			webhooks.Settings{Enabled: false, URL: otherURL}, "events file_scan.submitted,file_scan.completed→"},
		{"save unchanged", settingsForm(false, otherURL), "saved", webhooks.Settings{Enabled: false, URL: otherURL}, "none"},
		{"enable again", settingsForm(true, otherURL, schemas.EventFailed), "saved",
			webhooks.Settings{Enabled: true, URL: otherURL, Events: []string{schemas.EventFailed}}, "enabled false→true; events →file_scan.failed"},
	}
	for i, st := range steps {
		p := op.post(path+"/webhook", st.form)
		wantRedirect(t, p, path+"?notice="+st.wantNotice)
		cfg, err := e.getWebhook(id)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Enabled != st.want.Enabled || cfg.URL != st.want.URL || !slices.Equal(cfg.Events, st.want.Events) {
			t.Errorf("%s: stored %+v, want %+v", st.name, cfg.Settings, st.want)
		}
		if cfg.Secret != created.Secret {
			t.Errorf("%s: saving settings changed the secret", st.name)
		}
		lines := e.audits("webhook.saved")
		if len(lines) != i+1 || lines[i]["created"] != false || lines[i]["changes"] != st.changes {
			t.Errorf("%s: audit lines %v, want the last with changes %q", st.name, lines, st.changes)
		}
		page := op.get(p.location())
		if got := notice(page.body); got != notices[st.wantNotice] {
			t.Errorf("%s: notice %q", st.name, got)
		}
		if got := checked(inputTag(t, page.body, "enabled")); got != st.want.Enabled {
			t.Errorf("%s: enabled ticked %t", st.name, got)
		}
	}
}

// conflictStore is the real store whose writes lose to a concurrent
// writer every time (webhooks.Store only gives up after 16 rounds, which a
// test cannot provoke reliably).
type conflictStore struct{ *webhooks.Store }

func (conflictStore) Put(context.Context, string, webhooks.Settings) (webhooks.Webhook, bool, error) {
	return webhooks.Webhook{}, false, fmt.Errorf("put webhook: %w", webhooks.ErrConflict)
}

func (conflictStore) RotateSecret(context.Context, string) (webhooks.Webhook, error) {
	return webhooks.Webhook{}, fmt.Errorf("rotate secret: %w", webhooks.ErrConflict)
}

func TestSettingsConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(d *Deps) { d.Webhooks = conflictStore{d.Webhooks.(*webhooks.Store)} })
	id := newID()
	before := e.createWebhook(id, true, hookURL, schemas.EventCompleted)
	op := e.operator()
	path := "/portal/integrations/" + id

	p := op.post(path+"/webhook", settingsForm(false, "https://other.example.com/x", schemas.EventFailed))
	wantPage(t, p, http.StatusConflict, "Webhook")
	if got := alert(p.body); !strings.Contains(got, "changed at the same moment elsewhere, so nothing was saved") {
		t.Errorf("alert %q", got)
	}
	if tag := inputTag(t, p.body, "url"); !strings.Contains(tag, `value="https://other.example.com/x"`) {
		t.Errorf("the conflict page does not keep the submitted URL: %s", tag)
	}
	if checked(inputTag(t, p.body, "enabled")) || !checked(inputTag(t, p.body, "event-"+schemas.EventFailed)) {
		t.Error("the conflict page does not keep the submitted switches")
	}

	wantErrorPage(t, op.post(path+"/secret/regenerate", nil), http.StatusConflict, "Changed elsewhere")

	if got, err := e.getWebhook(id); err != nil || got.Revision != before.Revision {
		t.Errorf("webhook changed: %+v, %v", got, err)
	}
	if n := len(e.audits("webhook.saved")) + len(e.audits("secret.regenerated")); n != 0 {
		t.Errorf("%d audit lines for changes that were not made", n)
	}
}

// ---- Secret ----

func TestSecretReveal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	cfg := e.createWebhook(id, true, hookURL, schemas.EventCompleted)
	b := e.portal(id)
	path := "/portal/integrations/" + id

	for _, p := range []page{b.get(path), b.get(path + "?notice=created"), b.get(path + "/secret/regenerate")} {
		if strings.Contains(p.body, cfg.Secret) {
			t.Fatal("a page's initial HTML contains the secret")
		}
		if !strings.Contains(p.body, webhooks.MaskSecret(cfg.Secret)) {
			t.Error("a page does not show the masked secret")
		}
	}

	// The page's script asks for JSON.
	p := b.post(path+"/secret", nil, "Accept", "application/json")
	if p.status != http.StatusOK || p.header.Get("Content-Type") != "application/json" || p.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("reveal: status %d, Content-Type %q, Cache-Control %q", p.status, p.header.Get("Content-Type"), p.header.Get("Cache-Control"))
	}
	dec := json.NewDecoder(strings.NewReader(p.body))
	dec.DisallowUnknownFields()
	var got struct {
		Secret string `json:"secret"`
	}
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("reveal body %q: %v", p.body, err)
	}
	stored, err := e.getWebhook(id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Secret != stored.Secret || !strings.HasPrefix(got.Secret, "whsec_") {
		t.Fatalf("revealed %q, want the stored secret", got.Secret)
	}

	// Without scripts, the form posts and the page shows the secret.
	p = b.post(path+"/secret", nil, "Accept", "text/html,application/xhtml+xml")
	wantPage(t, p, http.StatusOK, "Webhook")
	if p.header.Get("Cache-Control") != "no-store" {
		t.Errorf("reveal page Cache-Control %q", p.header.Get("Cache-Control"))
	}
	if !strings.Contains(p.body, cfg.Secret) {
		t.Error("the reveal page does not show the secret")
	}

	if n := len(e.audits("secret.revealed")); n != 2 {
		t.Errorf("%d secret.revealed audit lines, want 2", n)
	}
	e.requireAudit("session.opened_by_link", id, "portal session")

	// Never by GET, never without a webhook.
	wantErrorPage(t, b.get(path+"/secret"), http.StatusNotFound, "Not found")
	none := newID()
	op := e.operator()
	wantErrorPage(t, op.post("/portal/integrations/"+none+"/secret", nil, "Accept", "application/json"), http.StatusNotFound, "No webhook yet")
}

func TestRegenerateSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	before := e.createWebhook(id, true, hookURL, schemas.EventCompleted, schemas.EventFailed)
	op := e.operator()
	path := "/portal/integrations/" + id

	p := op.get(path + "/secret/regenerate")
	wantPage(t, p, http.StatusOK, "Regenerate the secret")
	if !strings.Contains(p.body, `action="`+path+`/secret/regenerate"`) || !strings.Contains(p.body, webhooks.MaskSecret(before.Secret)) {
		t.Error("the confirmation page lacks its form or the masked current secret")
	}
	// Nothing changes until the confirmation is posted.
	if got, _ := e.getWebhook(id); got.Secret != before.Secret {
		t.Fatal("showing the confirmation page regenerated the secret")
	}

	wantRedirect(t, op.post(path+"/secret/regenerate", nil), path+"?notice=regenerated")
	after, err := e.getWebhook(id)
	if err != nil {
		t.Fatal(err)
	}
	if after.Secret == before.Secret || !strings.HasPrefix(after.Secret, "whsec_") {
		t.Fatalf("secret not regenerated")
	}
	if after.Enabled != before.Enabled || after.URL != before.URL || !slices.Equal(after.Events, before.Events) {
		t.Errorf("regenerating changed the settings: %+v", after.Settings)
	}
	audit := e.requireAudit("secret.regenerated", id, "operator session")
	for _, v := range audit {
		if s, ok := v.(string); ok && (strings.Contains(s, before.Secret) || strings.Contains(s, after.Secret)) {
			t.Fatal("the audit line holds a secret")
		}
	}
	p = op.get(path + "?notice=regenerated")
	if got := notice(p.body); got != notices["regenerated"] {
		t.Errorf("notice %q", got)
	}
	if strings.Contains(p.body, after.Secret) {
		t.Error("the page after regenerating shows the new secret in its HTML")
	}
	var revealed struct{ Secret string }
	_ = json.Unmarshal([]byte(op.post(path+"/secret", nil, "Accept", "application/json").body), &revealed)
	if revealed.Secret != after.Secret {
		t.Error("reveal does not give the new secret")
	}

	none := "/portal/integrations/" + newID()
	wantErrorPage(t, op.get(none+"/secret/regenerate"), http.StatusNotFound, "No webhook yet")
	wantErrorPage(t, op.post(none+"/secret/regenerate", nil), http.StatusNotFound, "No webhook yet")
}

// ---- Deliveries ----

func TestDeliveriesList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, other := newID(), newID()
	base := e.clock.Now().Add(-time.Hour)
	const total = 25
	var all []*deliverylog.Delivery // oldest first
	for seq := uint64(1); seq <= total; seq++ {
		state := deliverylog.StateSucceeded
		if seq%2 == 0 {
			state = deliverylog.StateDead
		}
		all = append(all, e.saveDelivery(newDelivery(id, seq, base.Add(time.Duration(seq)*time.Second), state, allEvents[seq%3])))
	}
	for seq := uint64(100); seq < 103; seq++ {
		e.saveDelivery(newDelivery(other, seq, base.Add(time.Duration(seq)*time.Second), deliverylog.StateDead, schemas.EventFailed))
	}
	newestFirst := func(keep func(*deliverylog.Delivery) bool) []string {
		var ids []string
		for i := len(all) - 1; i >= 0; i-- {
			if keep(all[i]) {
				ids = append(ids, all[i].ID)
			}
		}
		return ids
	}
	every := newestFirst(func(*deliverylog.Delivery) bool { return true })
	b := e.portal(id)
	path := "/portal/integrations/" + id + "/deliveries"

	p := b.get(path)
	wantPage(t, p, http.StatusOK, "Deliveries")
	if got := listedDeliveries(p.body); !slices.Equal(got, every[:deliveriesPageSize]) {
		t.Fatalf("first page %v,\nwant the %d newest %v", got, deliveriesPageSize, every[:deliveriesPageSize])
	}
	if alert(p.body) != "" {
		t.Errorf("alert %q on a plain listing", alert(p.body))
	}
	older := regexp.MustCompile(`href="([^"]*cursor=([0-9a-f-]{36}))">Older`).FindStringSubmatch(p.body)
	if older == nil || older[2] != every[deliveriesPageSize-1] {
		t.Fatalf("no Older link with the last listed id as cursor: %v", older)
	}
	if strings.Contains(p.body, "Newest</a>") {
		t.Error("the first page links to the newest page")
	}
	p = b.get(html.UnescapeString(older[1]))
	if got := listedDeliveries(p.body); !slices.Equal(got, every[deliveriesPageSize:]) {
		t.Errorf("second page %v, want %v", got, every[deliveriesPageSize:])
	}
	if strings.Contains(p.body, ">Older") || !strings.Contains(p.body, "Newest</a>") {
		t.Error("the last page should link to the newest page and have no older one")
	}

	filters := []struct {
		query string
		keep  func(*deliverylog.Delivery) bool
	}{
		{"state=dead", func(d *deliverylog.Delivery) bool { return d.State == deliverylog.StateDead }},
		{"state=succeeded", func(d *deliverylog.Delivery) bool { return d.State == deliverylog.StateSucceeded }},
		{"event=" + schemas.EventFailed, func(d *deliverylog.Delivery) bool { return *d.Event == schemas.EventFailed }},
		{"state=dead&event=" + schemas.EventSubmitted, func(d *deliverylog.Delivery) bool {
			return d.State == deliverylog.StateDead && *d.Event == schemas.EventSubmitted
		}},
		{"state=pending", func(d *deliverylog.Delivery) bool { return false }},
	}
	for _, f := range filters {
		p := b.get(path + "?" + f.query)
		want := newestFirst(f.keep)
		if got := listedDeliveries(p.body); !slices.Equal(got, want) {
			t.Errorf("?%s lists %v, want %v", f.query, got, want)
		}
		q, _ := url.ParseQuery(f.query)
		for _, name := range []string{"state", "event"} {
			if v := q.Get(name); v != "" && !strings.Contains(p.body, `<option value="`+v+`" selected>`) {
				t.Errorf("?%s: the %s filter does not show %s selected", f.query, name, v)
			}
		}
		if len(want) == 0 && !strings.Contains(p.body, "No deliveries match these filters.") {
			t.Errorf("?%s: no empty-result message", f.query)
		}
	}

	// Unknown filter values: the page, with every delivery and a notice.
	unknown := []struct{ query, message string }{
		{"state=bogus", "Unknown state: showing every state."},
		{"state=" + url.QueryEscape("<script>alert(1)</script>"), "Unknown state: showing every state."},
		{"event=file_scan.deleted", "Unknown event: showing every event."},
		{"cursor=nope", "That page does not exist: showing the newest deliveries."},
		{"cursor=" + strings.ToUpper(every[3]), "That page does not exist: showing the newest deliveries."},
	}
	for _, u := range unknown {
		p := b.get(path + "?" + u.query)
		wantPage(t, p, http.StatusOK, "Deliveries")
		if got := alert(p.body); got != u.message {
			t.Errorf("?%s: alert %q, want %q", u.query, got, u.message)
		}
		if got := listedDeliveries(p.body); !slices.Equal(got, every[:deliveriesPageSize]) {
			t.Errorf("?%s: lists %d deliveries, want the newest page", u.query, len(got))
		}
		if strings.Contains(p.body, "<script>alert") {
			t.Errorf("?%s: reflected unescaped", u.query)
		}
	}

	// An integration without deliveries.
	p = e.operator().get("/portal/integrations/" + newID() + "/deliveries")
	wantPage(t, p, http.StatusOK, "Deliveries")
	if !strings.Contains(p.body, "No deliveries.") || len(listedDeliveries(p.body)) != 0 {
		t.Error("an integration without deliveries should say so")
	}
}

func TestDeliveryPageEscapesCustomerText(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	at := e.clock.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	d := newDelivery(id, 7, at, deliverylog.StateDead, schemas.EventCompleted)
	code500, excerpt, refused := 500, `<script>alert(1)</script> & "quotes"`, `connection refused <b>`
	d.Attempts = []deliverylog.Attempt{
		{Number: 1, StartedAt: at, DurationMillis: 3, Error: &refused},
		{Number: 2, StartedAt: at.Add(10 * time.Second), DurationMillis: 42, StatusCode: &code500, ResponseExcerpt: &excerpt},
	}
	d.AttemptCount, d.SeriesAttempts, d.LastStatusCode = 2, 2, &code500
	e.saveDelivery(d)

	// A rejected event's name comes from the publisher: anything at all.
	event, reason := `"><img src=x onerror=alert(2)>`, `invalid <em>payload</em>`
	rejected := newDelivery(id, 8, at.Add(time.Second), deliverylog.StateRejected, event)
	rejected.LastError = &reason
	e.saveDelivery(rejected)
	pending := e.saveDelivery(newDelivery(id, 9, at.Add(2*time.Second), deliverylog.StatePending, schemas.EventFailed))

	b := e.portal(id)
	path := "/portal/integrations/" + id + "/deliveries/"
	p := b.get(path + d.ID)
	wantPage(t, p, http.StatusOK, "Delivery")
	if !strings.Contains(p.body, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;") {
		t.Errorf("response excerpt not shown escaped:\n%s", p.body)
	}
	if strings.Contains(p.body, "<script>alert") {
		t.Fatal("the response excerpt is in the page unescaped")
	}
	for _, want := range []string{d.ID, "HTTP 500", "42 ms", schemas.EventCompleted, "dead"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("delivery page lacks %q", want)
		}
	}
	if strings.Contains(p.body, "<b>") {
		t.Error("an attempt error is in the page unescaped")
	}
	if !strings.Contains(p.body, `action="/portal/integrations/`+id+`/deliveries/`+d.ID+`/retry"`) {
		t.Error("a dead delivery has no Retry form")
	}

	for _, dd := range []*deliverylog.Delivery{rejected, pending} {
		p := b.get(path + dd.ID)
		wantPage(t, p, http.StatusOK, "Delivery")
		if strings.Contains(p.body, "/retry") {
			t.Errorf("a %s delivery offers Retry", dd.State)
		}
		if strings.Contains(p.body, "<img") || strings.Contains(p.body, "<em>") {
			t.Errorf("the %s delivery page shows publisher text unescaped", dd.State)
		}
	}
	list := b.get("/portal/integrations/" + id + "/deliveries")
	if strings.Contains(list.body, "<img") || strings.Contains(list.body, "<em>") || !strings.Contains(list.body, "&lt;img src=x") {
		t.Error("the list shows publisher text unescaped")
	}
}

func TestRetryDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	now := e.clock.Now()
	dead := e.saveDelivery(newDelivery(id, e.publishEvent(id, schemas.EventCompleted), now, deliverylog.StateDead, schemas.EventCompleted))
	succeeded := e.saveDelivery(newDelivery(id, e.publishEvent(id, schemas.EventFailed), now.Add(time.Millisecond), deliverylog.StateSucceeded, schemas.EventFailed))
	rejected := e.saveDelivery(newDelivery(id, e.publishEvent(id, schemas.EventFailed), now.Add(2*time.Millisecond), deliverylog.StateRejected, schemas.EventFailed))
	gone := e.saveDelivery(newDelivery(id, 999_999, now.Add(3*time.Millisecond), deliverylog.StateDead, schemas.EventSubmitted))
	b := e.portal(id)
	path := "/portal/integrations/" + id + "/deliveries/"

	for _, d := range []*deliverylog.Delivery{dead, succeeded} {
		wantRedirect(t, b.post(path+d.ID+"/retry", nil), path+d.ID+"?notice=retried")
		got := e.loadDelivery(d)
		if got.State != deliverylog.StatePending || got.Series != 2 || got.SeriesAttempts != 0 || got.NextAttemptAt == nil {
			t.Errorf("after retry: state %s, series %d, attempts %d; want pending, 2, 0", got.State, got.Series, got.SeriesAttempts)
		}
		p := b.get(path + d.ID + "?notice=retried")
		if n := notice(p.body); n != notices["retried"] {
			t.Errorf("notice %q", n)
		}
		if strings.Contains(p.body, "/retry") {
			t.Error("a pending delivery still offers Retry")
		}
	}
	// Each retry is one due attempt on the retries stream.
	stream, err := e.js.Stream(context.Background(), natsinfra.RetriesStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background(), jetstream.WithSubjectFilter(natsinfra.RetriesDuePrefix+id))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects[natsinfra.RetriesDuePrefix+id]; got != 2 || info.State.Msgs != 2 {
		t.Errorf("%d due attempts on the retries stream (%d messages), want 2", got, info.State.Msgs)
	}
	if n := len(e.audits("delivery.retried")); n != 2 {
		t.Errorf("%d delivery.retried audit lines, want 2", n)
	}
	for _, m := range e.audits("delivery.retried") {
		if m["delivery_id"] != dead.ID && m["delivery_id"] != succeeded.ID {
			t.Errorf("audit line names delivery %v", m["delivery_id"])
		}
	}

	// Pending (the retry above) and rejected cannot be retried.
	for _, d := range []*deliverylog.Delivery{dead, rejected} {
		before := e.loadDelivery(d)
		p := b.post(path+d.ID+"/retry", nil)
		wantErrorPage(t, p, http.StatusConflict, "This delivery cannot be retried")
		if !strings.Contains(p.body, "It is "+before.State) {
			t.Errorf("409 page does not say the delivery is %s", before.State)
		}
		if got := e.loadDelivery(d); got.Series != before.Series || got.State != before.State {
			t.Errorf("a refused retry changed the record")
		}
	}
	// The event left the stream.
	wantErrorPage(t, b.post(path+gone.ID+"/retry", nil), http.StatusGone, "The event is no longer stored")
	if got := e.loadDelivery(gone); got.State != deliverylog.StateDead || got.Series != 1 {
		t.Errorf("a failed retry left the record %s, series %d", got.State, got.Series)
	}
	wantErrorPage(t, b.post(path+newID()+"/retry", nil), http.StatusNotFound, "No such delivery")
	if n := len(e.audits("delivery.retried")); n != 2 {
		t.Errorf("%d delivery.retried audit lines after refused retries, want 2", n)
	}
}

// ---- Browser security ----

func TestCrossOriginRequestsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	cfg := e.createWebhook(id, true, hookURL, schemas.EventCompleted)
	d := e.saveDelivery(newDelivery(id, e.publishEvent(id, schemas.EventCompleted), e.clock.Now(), deliverylog.StateDead, schemas.EventCompleted))
	op := e.operator()
	path := "/portal/integrations/" + id

	posts := []struct {
		path string
		form url.Values
	}{
		{"/portal/sign-in", url.Values{"token": {adminToken}}},
		{"/portal/sign-out", nil},
		{path + "/webhook", settingsForm(false, "https://other.example.com/x", schemas.EventFailed)},
		{path + "/secret", nil},
		{path + "/secret/regenerate", nil},
		{path + "/deliveries/" + d.ID + "/retry", nil},
	}
	origins := []struct {
		name    string
		headers []string
	}{
		{"Sec-Fetch-Site cross-site", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}},
		{"Sec-Fetch-Site same-site", []string{"Sec-Fetch-Site", "same-site", "Origin", "https://sub." + strings.TrimPrefix(e.ts.URL, "http://")}},
		{"Sec-Fetch-Site cross-site with a same Origin", []string{"Sec-Fetch-Site", "cross-site"}},
		{"foreign Origin, old browser", []string{"Sec-Fetch-Site", "", "Origin", "https://evil.example"}},
		{"opaque Origin, old browser", []string{"Sec-Fetch-Site", "", "Origin", "null"}},
	}
	for _, o := range origins {
		t.Run(o.name, func(t *testing.T) {
			for _, post := range posts {
				p := op.post(post.path, post.form, append([]string{"Accept", "application/json"}, o.headers...)...)
				wantErrorPage(t, p, http.StatusForbidden, "Request refused")
				if len(p.header.Values("Set-Cookie")) > 0 {
					t.Errorf("%s: a refused request set a cookie", post.path)
				}
				if strings.Contains(p.body, cfg.Secret) {
					t.Fatalf("%s: a refused request shows the secret", post.path)
				}
			}
		})
	}
	// Nothing changed, and the operator is still signed in.
	if got, err := e.getWebhook(id); err != nil || got.Revision != cfg.Revision || got.Secret != cfg.Secret {
		t.Errorf("webhook changed by refused requests: %+v, %v", got, err)
	}
	if got := e.loadDelivery(d); got.State != deliverylog.StateDead {
		t.Errorf("delivery %s after refused retries", got.State)
	}
	wantPage(t, op.get("/portal/"), http.StatusOK, "Integrations")
	if n := len(e.audits("session.signed_in")); n != 1 {
		t.Errorf("%d sign-ins audited, want the operator's 1", n)
	}
	for _, action := range []string{"session.signed_out", "webhook.saved", "secret.revealed", "secret.regenerated", "delivery.retried"} {
		if n := len(e.audits(action)); n != 0 {
			t.Errorf("%d %s audit lines after refused requests", n, action)
		}
	}
	if got, want := len(e.logLines("portal refused a cross-origin request")), len(origins)*len(posts); got != want {
		t.Errorf("%d refusals logged, want %d", got, want)
	}

	// What the pages themselves send passes: same-origin fetch metadata, an
	// Origin equal to the host (older browsers), or neither (not a browser).
	allowed := [][]string{
		{"Sec-Fetch-Site", "same-origin"},
		{"Sec-Fetch-Site", "", "Origin", e.ts.URL},
		{"Sec-Fetch-Site", "", "Origin", ""},
		{"Sec-Fetch-Site", "none", "Origin", ""},
	}
	for i, h := range allowed {
		u := fmt.Sprintf("https://hooks.example.com/hook-%d", i)
		wantRedirect(t, op.post(path+"/webhook", settingsForm(true, u, schemas.EventCompleted), h...), path+"?notice=saved")
		if got, _ := e.getWebhook(id); got.URL != u {
			t.Errorf("headers %q: not saved", h)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	for _, ancestors := range [][]string{nil, {"https://dashboard.blazelock.example", "https://admin.blazelock.example:8443"}} {
		t.Run(fmt.Sprintf("frame ancestors %q", ancestors), func(t *testing.T) {
			t.Parallel()
			// The browser checks every answer's headers (checkHeaders):
			// CSP with this frame-ancestors and no unsafe source,
			// Referrer-Policy no-referrer, nosniff, X-Frame-Options DENY
			// only without frame ancestors, no-store on pages, and no
			// inline script or style in any page.
			e := newEnv(t, func(d *Deps) { d.FrameAncestors = ancestors })
			id := newID()
			e.createWebhook(id, true, hookURL, schemas.EventCompleted)
			d := e.saveDelivery(newDelivery(id, 1, e.clock.Now(), deliverylog.StatePending, schemas.EventCompleted))
			anon := e.newBrowser()
			anon.get("/portal/sign-in")
			anon.get("/portal/")
			anon.get("/portal/nope")
			anon.post("/portal/sign-in", url.Values{"token": {"wrong"}})
			anon.post(Prefix+"integrations/"+id+"/secret", nil)
			anon.get("/portal/links/" + e.newLink(id))
			anon.get("/portal/links/" + e.newLink(id)[1:])

			op := e.operator()
			path := "/portal/integrations/" + id
			for _, p := range []string{"/portal/", path, path + "?notice=saved", path + "/secret/regenerate", path + "/deliveries", path + "/deliveries/" + d.ID, "/portal/integrations/nope"} {
				op.get(p)
			}
			op.post(path+"/secret", nil, "Accept", "application/json")
			op.post(path+"/secret", nil)
			op.post(path+"/webhook", settingsForm(true, "http://x.example.com"))
			op.post(path+"/webhook", settingsForm(true, hookURL), "Sec-Fetch-Site", "cross-site")
			op.post(path+"/deliveries/"+d.ID+"/retry", nil)

			for _, asset := range []struct{ path, contentType string }{
				{"/portal/static/portal.css", "text/css"},
				{"/portal/static/portal.js", "text/javascript"},
			} {
				p := anon.get(asset.path)
				if p.status != http.StatusOK || !strings.HasPrefix(p.header.Get("Content-Type"), asset.contentType) {
					t.Errorf("%s: status %d, Content-Type %q", asset.path, p.status, p.header.Get("Content-Type"))
				}
			}
			p := anon.get("/portal/static/missing.css")
			if p.status != http.StatusNotFound {
				t.Errorf("missing static file: %d", p.status)
			}
		})
	}
}

// ---- Error pages ----

func TestErrorPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := newID()
	e.createWebhook(id, true, hookURL, schemas.EventCompleted)
	pending := e.saveDelivery(newDelivery(id, 1, e.clock.Now(), deliverylog.StatePending, schemas.EventCompleted))
	gone := e.saveDelivery(newDelivery(id, 424242, e.clock.Now().Add(time.Millisecond), deliverylog.StateDead, schemas.EventCompleted))
	op := e.operator()
	anon := e.newBrowser()
	path := "/portal/integrations/" + id

	used := e.newLink(id)
	e.newBrowser().get("/portal/links/" + used)
	expired := e.newLink(id)
	e.clock.Advance(linkTTL)
	t.Cleanup(func() { e.clock.Advance(-linkTTL) })

	tests := []struct {
		name   string
		do     func() page
		status int
		title  string
	}{
		{"unknown route", func() page { return op.get("/portal/nope") }, 404, "Not found"},
		{"unknown route below an integration", func() page { return op.get(path + "/nope") }, 404, "Not found"},
		{"unknown method", func() page { return op.post(path+"/deliveries", nil) }, 404, "Not found"},
		{"unknown route without a session", func() page { return anon.get("/portal/nope/") }, 404, "Not found"},
		{"invalid integration id", func() page { return op.get("/portal/integrations/not-a-uuid") }, 404, "Not found"},
		{"integration id with braces", func() page { return op.get("/portal/integrations/%7B" + id + "%7D") }, 404, "Not found"},
		{"integration id too long", func() page { return op.get(path + "0") }, 404, "Not found"},
		{"invalid delivery id", func() page { return op.get(path + "/deliveries/not-a-uuid") }, 404, "No such delivery"},
		{"unknown delivery", func() page { return op.get(path + "/deliveries/" + newID()) }, 404, "No such delivery"},
		{"delivery id as a URN", func() page { return op.get(path + "/deliveries/urn:uuid:" + pending.ID) }, 404, "No such delivery"},
		{"delivery id in braces", func() page { return op.get(path + "/deliveries/%7B" + pending.ID + "%7D") }, 404, "No such delivery"},
		{"static directory", func() page { return op.get("/portal/static/") }, 404, "Not found"},
		{"invalid id to open", func() page { return op.get("/portal/integrations/?id=nope") }, 404, "Not an integration id"},
		{"no webhook to reveal", func() page { return op.post("/portal/integrations/"+newID()+"/secret", nil) }, 404, "No webhook yet"},
		{"altered link", func() page { return anon.get("/portal/links/" + alter(used)) }, 404, "This link is not valid"},
		{"used link", func() page { return anon.get("/portal/links/" + used) }, 410, "This link has already been used"},
		{"expired link", func() page { return anon.get("/portal/links/" + expired) }, 410, "This link has expired"},
		{"change without a session", func() page { return anon.post(path+"/webhook", settingsForm(false, hookURL)) }, 401, "Your session has ended"},
		{"cross-site change", func() page { return op.post(path+"/secret/regenerate", nil, "Sec-Fetch-Site", "cross-site") }, 403, "Request refused"},
		{"retry of a pending delivery", func() page { return op.post(path+"/deliveries/"+pending.ID+"/retry", nil) }, 409, "This delivery cannot be retried"},
		{"retry of an event no longer stored", func() page { return op.post(path+"/deliveries/"+gone.ID+"/retry", nil) }, 410, "The event is no longer stored"},
		{"unreadable form", func() page {
			return op.do(http.MethodPost, path+"/webhook", strings.NewReader("url=%zz&enabled=on"),
				[]string{"Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "same-origin"})
		}, 400, "Bad request"},
		{"oversized form", func() page {
			return op.post(path+"/webhook", url.Values{"url": {strings.Repeat("a", maxFormBytes)}})
		}, 400, "Bad request"},
		{"oversized sign-in form", func() page {
			return anon.post("/portal/sign-in", url.Values{"token": {strings.Repeat("a", maxFormBytes)}})
		}, 400, "Bad request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErrorPage(t, tt.do(), tt.status, tt.title)
		})
	}
	if got, _ := e.getWebhook(id); got.URL != hookURL {
		t.Error("a refused form changed the webhook")
	}
}

// panicStore is the real store with a listing that panics.
type panicStore struct{ *webhooks.Store }

func (panicStore) IDs(context.Context) ([]string, error) { panic("listing exploded") }

func TestPanicAnswersInternalErrorPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(d *Deps) { d.Webhooks = panicStore{d.Webhooks.(*webhooks.Store)} })
	wantErrorPage(t, e.operator().get("/portal/"), http.StatusInternalServerError, "Something went wrong")
	if len(e.logLines("panic in portal handler")) != 1 {
		t.Error("the panic was not logged")
	}
}

func TestStorageUnavailable(t *testing.T) {
	t.Parallel()
	want503 := func(t *testing.T, what string, p page) {
		t.Helper()
		if p.status != http.StatusServiceUnavailable {
			t.Fatalf("%s: status %d, want 503; body:\n%s", what, p.status, p.body)
		}
		wantErrorPage(t, p, http.StatusServiceUnavailable, "Temporarily unavailable")
		if p.header.Get("Retry-After") != "1" {
			t.Errorf("%s: Retry-After %q", what, p.header.Get("Retry-After"))
		}
		if len(p.header.Values("Set-Cookie")) > 0 {
			t.Errorf("%s: set a cookie", what)
		}
	}

	t.Run("webhooks and deliveries", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id := newID()
		cfg := e.createWebhook(id, true, hookURL, schemas.EventCompleted)
		d := e.saveDelivery(newDelivery(id, e.publishEvent(id, schemas.EventCompleted), e.clock.Now(), deliverylog.StateDead, schemas.EventCompleted))
		op := e.operator()
		path := "/portal/integrations/" + id
		e.dataNC.Close()

		for what, p := range map[string]page{
			"index":         op.get("/portal/"),
			"settings":      op.get(path),
			"regenerate":    op.get(path + "/secret/regenerate"),
			"deliveries":    op.get(path + "/deliveries"),
			"delivery":      op.get(path + "/deliveries/" + d.ID),
			"save":          op.post(path+"/webhook", settingsForm(true, hookURL, schemas.EventFailed)),
			"reveal (JSON)": op.post(path+"/secret", nil, "Accept", "application/json"),
			"regenerate it": op.post(path+"/secret/regenerate", nil),
			"retry":         op.post(path+"/deliveries/"+d.ID+"/retry", nil),
		} {
			want503(t, what, p)
			if strings.Contains(p.body, cfg.Secret) {
				t.Errorf("%s: the 503 page holds the secret", what)
			}
		}
		if got := len(e.logLines("portal storage failed")); got != 9 {
			t.Errorf("%d storage failures logged, want 9", got)
		}
		for _, action := range []string{"webhook.saved", "secret.revealed", "secret.regenerated", "delivery.retried"} {
			if n := len(e.audits(action)); n != 0 {
				t.Errorf("%d %s audit lines for failed changes", n, action)
			}
		}
	})

	t.Run("sessions and links", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id := newID()
		op := e.operator()
		link := e.newLink(id)
		e.accessNC.Close()

		want503(t, "page with a session", op.get("/portal/integrations/"+id))
		want503(t, "change with a session", op.post("/portal/integrations/"+id+"/secret/regenerate", nil))
		want503(t, "sign-out", op.post("/portal/sign-out", nil))
		anon := e.newBrowser()
		want503(t, "sign-in", anon.post("/portal/sign-in", url.Values{"token": {adminToken}}))
		want503(t, "link", anon.get("/portal/links/"+link))
		if anon.cookie() != "" {
			t.Error("a failed sign-in left a cookie")
		}
		// What needs no storage still works.
		wantPage(t, anon.get("/portal/sign-in"), http.StatusOK, "Sign in")
		wantRedirect(t, anon.get("/portal/"), "/portal/sign-in?next=%2Fportal%2F")
		wantPage(t, anon.post("/portal/sign-in", url.Values{"token": {"wrong"}}), http.StatusUnauthorized, "Sign in")
		wantErrorPage(t, anon.get("/portal/links/nope"), http.StatusNotFound, "This link is not valid")
	})
}
