package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/blazelock/webhooks/dispatcher/api"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
	"github.com/blazelock/webhooks/subscriber/verify"
)

// The Webhook section driven in a real headless Chromium against real
// dispatchers, JetStream, Redis and receivers. Set
// BLAZELOCK_SCREENSHOTS=<dir> to save the README's screenshots.

// browserTimeout bounds each browser step list.
const browserTimeout = 30 * time.Second

// publicTarget is a public IP literal: it passes the production URL rules,
// and no test ever delivers to it (its webhooks stay disabled).
const publicTarget = "https://93.184.216.34/hooks/blazelock"

type portalSuite struct {
	t      *testing.T
	s      *stack
	a      *app // allows loopback targets, so deliveries reach test receivers
	strict *app // production URL rules and 1-second portal links
	chrome context.Context
}

func TestWebhookSectionInBrowser(t *testing.T) {
	chrome := testinfra.Browser(t)
	s := newStack(t, nil)
	// The strict dispatcher has a stack of its own: on a shared one it
	// would also take the other integrations' attempts, and refuse their
	// loopback targets.
	strict := newStack(t, map[string]string{
		"DISPATCHER_ALLOW_PRIVATE_TARGETS": "false",
		"DISPATCHER_PORTAL_LINK_TTL":       "1s",
	})
	p := &portalSuite{t: t, s: s, strict: strict.dispatcher(), a: s.dispatcher(), chrome: chrome}

	t.Run("sign in", p.testSignIn)
	t.Run("create through the form, read back through the API", p.testCreate)
	t.Run("refused URLs show field errors and change nothing", p.testURLErrors)
	t.Run("reveal and copy give the API's secret", p.testRevealCopy)
	t.Run("regenerate: new secret verifies, old fails", p.testRegenerate)
	t.Run("disable stops deliveries", p.testDisable)
	t.Run("dead delivery: attempts, escaped excerpt, retry", p.testDeadDelivery)
	t.Run("portal link: one integration, once, not expired or altered", p.testPortalLink)
	t.Run("cross-site form post is refused", p.testCrossSite)
	t.Run("readable at 375 px, every control labelled", p.testSmallScreen)
}

// with returns the suite for subtest t, so failures stop t.
func (p *portalSuite) with(t *testing.T) *portalSuite {
	c := *p
	c.t = t
	return &c
}

// base is the portal's origin as the browser reaches it. "localhost",
// not 127.0.0.1, so pages served by test servers on 127.0.0.1 are another
// site, as an attacker's page would be.
func base(a *app) string {
	return "http://localhost:" + a.httpAddr[strings.LastIndexByte(a.httpAddr, ':')+1:]
}

// do runs steps in tab, failing the test with the page's state.
func (p *portalSuite) do(tab context.Context, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("browser: %v\n%s", err, pageState(tab))
	}
}

// get runs one action that returns a value.
func get[T any](p *portalSuite, tab context.Context, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.t.Fatalf("browser: %v\n%s", err, pageState(tab))
	}
	return v
}

// pageState is where the tab is and what its main element says, for
// failure messages.
func pageState(tab context.Context) string {
	ctx, cancel := context.WithTimeout(tab, 2*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main")?.outerHTML ?? document.body.outerHTML`))
	return "at " + loc + "\n" + html
}

// text returns the text content of the first element matching sel, once
// it exists.
func (p *portalSuite) text(tab context.Context, sel string) string {
	p.t.Helper()
	p.do(tab, chromedp.WaitReady(chromedp.CSS(sel)))
	return get(p, tab, chromedp.TextContent(chromedp.CSS(sel)))
}

// notice waits for the live region's announcement and returns it.
func (p *portalSuite) notice(ctx context.Context) string {
	p.t.Helper()
	return p.text(ctx, "#announce:not(.empty)")
}

// announced waits for the script to announce want in the live region.
func (p *portalSuite) announced(tab context.Context, want string) {
	p.t.Helper()
	testinfra.WaitFor(p.t, 10*time.Second, "the announcement "+want, func() bool {
		n, _ := chromedp.Run(tab, chromedp.TextContent(chromedp.CSS("#announce")))
		return n == want
	})
}

func (p *portalSuite) screenshot(ctx context.Context, name string) {
	p.t.Helper()
	dir := os.Getenv("BLAZELOCK_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := get(p, ctx, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// operator returns a tab signed in as the operator on a's portal.
func (p *portalSuite) operator(a *app) context.Context {
	p.t.Helper()
	tab := testinfra.BrowserTab(p.t, p.chrome)
	p.do(tab,
		chromedp.Navigate(base(a)+"/portal/sign-in"),
		chromedp.SendKeys(chromedp.CSS("#token"), testAdminToken),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("form.signout")),
	)
	return tab
}

func (p *portalSuite) webhook(a *app, id string) (api.Webhook, int) {
	p.t.Helper()
	var w api.Webhook
	code := a.api(p.t, "GET", "/v1/integrations/"+id+"/webhook", nil, &w)
	return w, code
}

func (p *portalSuite) testSignIn(t *testing.T) {
	p = p.with(t)
	tab := testinfra.BrowserTab(t, p.chrome)
	p.do(tab, chromedp.Navigate(base(p.a)+"/portal/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	loc := get(p, tab, chromedp.Location())
	if !strings.Contains(loc, "/portal/sign-in") {
		t.Fatalf("an anonymous visit landed on %s, want the sign-in page", loc)
	}
	p.screenshot(tab, "sign-in")
	p.do(tab, chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"), chromedp.Submit(chromedp.CSS("#token")))
	if msg := p.text(tab, "#token-error"); !strings.Contains(msg, "not the admin token") {
		t.Fatalf("wrong token: %q", msg)
	}
	p.do(tab, chromedp.Clear(chromedp.CSS("#token")), chromedp.SendKeys(chromedp.CSS("#token"), testAdminToken),
		chromedp.Submit(chromedp.CSS("#token")), chromedp.WaitVisible(chromedp.CSS("form.signout")))
	if h := p.text(tab, "h1"); h != "Integrations with a webhook" {
		t.Fatalf("after sign-in: heading %q", h)
	}
	p.do(tab, chromedp.Click(chromedp.CSS("form.signout button")))
	if n := p.notice(tab); !strings.Contains(n, "signed out") {
		t.Fatalf("after sign-out: %q", n)
	}
	p.do(tab, chromedp.Navigate(base(p.a)+"/portal/"), chromedp.WaitVisible(chromedp.CSS("#token")))
}

// fillSettings sets the form as given, clicking only what must change, and
// saves.
func (p *portalSuite) fillSettings(tab context.Context, enabled bool, url string, events ...string) {
	p.t.Helper()
	p.do(tab, chromedp.WaitReady(chromedp.CSS("#enabled")))
	if get(p, tab, chromedp.Evaluate[bool](`document.getElementById("enabled").checked`)) != enabled {
		p.do(tab, chromedp.Click(chromedp.CSS("#enabled")))
	}
	p.do(tab, chromedp.Clear(chromedp.CSS("#url")), chromedp.SendKeys(chromedp.CSS("#url"), url))
	for _, e := range schemas.EventNames {
		sel := `input[name="events"][value="` + e + `"]`
		checked := get(p, tab, chromedp.Evaluate[bool](`document.querySelector('`+sel+`').checked`))
		want := false
		for _, w := range events {
			want = want || w == e
		}
		if checked != want {
			p.do(tab, chromedp.Click(chromedp.CSS(sel)))
		}
	}
	// The form posts and its answer is a new page. Wait for it, so that
	// what the caller reads next comes from that page and not from the
	// one it left, whose nodes vanish under a query ("No node with given
	// id found", seen once in CI).
	get(p, tab, chromedp.Evaluate[bool](`window.leaving = true`))
	p.do(tab, chromedp.Click(chromedp.CSS(`form[action$="/webhook"] button[type=submit]`)))
	testinfra.WaitFor(p.t, browserTimeout, "the page the settings form's answer loads", func() bool {
		ctx, cancel := context.WithTimeout(tab, time.Second)
		defer cancel()
		loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.leaving === undefined && document.readyState === "complete"`))
		return err == nil && loaded
	})
}

func (p *portalSuite) testCreate(t *testing.T) {
	p = p.with(t)
	ep := newEndpoint(t, receiver.Faults{})
	id := uuid.Must(uuid.NewV7()).String()
	tab := p.operator(p.a)
	// Open by id from the index, as an operator would for a new integration.
	p.do(tab, chromedp.SendKeys(chromedp.CSS("#open-id"), id), chromedp.Submit(chromedp.CSS("#open-id")),
		chromedp.WaitVisible(chromedp.CSS("#url")))
	p.fillSettings(tab, true, ep.URL, schemas.EventCompleted, schemas.EventFailed)
	if n := p.notice(tab); !strings.Contains(n, "Webhook saved") {
		t.Fatalf("notice after creating: %q", n)
	}
	w, code := p.webhook(p.a, id)
	if code != 200 || !w.Enabled || w.URL != ep.URL || strings.Join(w.Events, ",") != schemas.EventCompleted+","+schemas.EventFailed {
		t.Fatalf("API reads %d %+v", code, w)
	}
	if masked := p.text(tab, "#secret-value"); masked != w.Secret {
		t.Fatalf("the page shows the secret as %q, the API masks it as %q", masked, w.Secret)
	}
	p.screenshot(tab, "settings")
}

func (p *portalSuite) testURLErrors(t *testing.T) {
	p = p.with(t)
	id := uuid.Must(uuid.NewV7()).String()
	p.s.setWebhook(p.strict, id, map[string]any{"enabled": false, "url": publicTarget, "events": []string{}})
	before, _ := p.webhook(p.strict, id)
	tab := p.operator(p.strict)
	for _, c := range []struct{ url, want string }{
		{"http://93.184.216.34/hooks", "URL must use https."},
		{"https://localhost/hooks", "URL must not point at localhost."},
	} {
		p.do(tab, chromedp.Navigate(base(p.strict)+"/portal/integrations/"+id))
		p.fillSettings(tab, true, c.url, schemas.EventCompleted)
		if msg := p.text(tab, "#url-error"); strings.TrimSpace(msg) != c.want {
			t.Errorf("%s: field error %q, want %q", c.url, msg, c.want)
		}
		invalid := get(p, tab, chromedp.AttributeValue(chromedp.CSS("#url"), "aria-invalid")).Value
		kept := get(p, tab, chromedp.Value(chromedp.CSS("#url")))
		if invalid != "true" || kept != c.url {
			t.Errorf("%s: aria-invalid=%q, the field keeps %q", c.url, invalid, kept)
		}
		if alert := p.text(tab, ".alert"); !strings.Contains(alert, "Nothing was saved") {
			t.Errorf("%s: alert %q", c.url, alert)
		}
		if c.url == "http://93.184.216.34/hooks" {
			p.screenshot(tab, "field-errors")
		}
	}
	after, _ := p.webhook(p.strict, id)
	if after.URL != before.URL || after.Enabled || after.UpdatedAt != before.UpdatedAt {
		t.Fatalf("refused saves changed the webhook: before %+v after %+v", before, after)
	}
}

func (p *portalSuite) testRevealCopy(t *testing.T) {
	p = p.with(t)
	ep := newEndpoint(t, receiver.Faults{})
	id := p.s.configure(p.a, ep)
	secret := p.s.secret(p.a, id)
	tab := p.operator(p.a)
	p.do(tab, chromedp.Navigate(base(p.a)+"/portal/integrations/"+id), chromedp.WaitVisible(chromedp.CSS("#reveal")))
	if html := get(p, tab, chromedp.OuterHTML(chromedp.CSS("html"))); strings.Contains(html, secret) {
		t.Fatal("the page's initial HTML contains the secret")
	}
	p.do(tab, chromedp.Click(chromedp.CSS("#reveal")))
	testinfra.WaitFor(t, 10*time.Second, "the revealed secret", func() bool {
		shown, _ := chromedp.Run(tab, chromedp.TextContent(chromedp.CSS("#secret-value")))
		return shown == secret
	})
	p.announced(tab, "Secret revealed.")
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(tab, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name}, Setting: browser.PermissionSettingGranted,
			Origin: base(p.a), BrowserContextID: chromedp.FromContext(tab).BrowserContextID,
		}); err != nil {
			t.Fatalf("grant %s: %v", name, err)
		}
	}
	p.do(tab, chromedp.Click(chromedp.CSS("#copy")))
	p.announced(tab, "Secret copied to the clipboard.")
	copied := get(p, tab, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if copied != secret {
		t.Fatalf("the clipboard holds %q, the API's secret is %q", copied, secret)
	}
}

func (p *portalSuite) testRegenerate(t *testing.T) {
	p = p.with(t)
	ep := newEndpoint(t, receiver.Faults{})
	id := p.s.configure(p.a, ep)
	old := p.s.secret(p.a, id)
	tab := p.operator(p.a)
	p.do(tab, chromedp.Navigate(base(p.a)+"/portal/integrations/"+id),
		chromedp.Click(chromedp.CSS(`a[href$="/secret/regenerate"]`)), chromedp.WaitVisible(chromedp.CSS("button.danger")))
	if warning := p.text(tab, ".card.warn"); !strings.Contains(warning, "stops working immediately") {
		t.Fatalf("the confirmation says %q", warning)
	}
	p.screenshot(tab, "regenerate")
	p.do(tab, chromedp.Click(chromedp.CSS("button.danger")))
	if n := p.notice(tab); !strings.Contains(n, "Secret regenerated") {
		t.Fatalf("after regenerating: %q", n)
	}
	fresh := p.s.secret(p.a, id)
	if fresh == old {
		t.Fatal("the secret did not change")
	}
	ep.SetSecret(id, fresh)
	eventID := p.s.publish(id, schemas.EventCompleted)
	testinfra.WaitFor(t, 20*time.Second, "the delivery after regenerating", func() bool { return len(ep.DeliveriesFor(eventID)) > 0 })
	got := ep.DeliveriesFor(eventID)[0]
	if !got.Verified {
		t.Fatalf("the receiver refused the delivery signed after regenerating: %s", got.Reason)
	}
	if err := verify.Verify(fresh, got.Header, got.Body); err != nil {
		t.Fatalf("does not verify with the new secret: %v", err)
	}
	if err := verify.Verify(old, got.Header, got.Body); err == nil {
		t.Fatal("still verifies with the old secret")
	}
}

func (p *portalSuite) testDisable(t *testing.T) {
	p = p.with(t)
	ep := newEndpoint(t, receiver.Faults{})
	id := p.s.configure(p.a, ep)
	tab := p.operator(p.a)
	p.do(tab, chromedp.Navigate(base(p.a)+"/portal/integrations/"+id))
	p.fillSettings(tab, false, ep.URL, schemas.EventNames...)
	if n := p.notice(tab); !strings.Contains(n, "Deliveries have stopped") {
		t.Fatalf("after disabling: %q", n)
	}
	eventID := p.s.publish(id, schemas.EventCompleted)
	var page api.DeliveryPage
	testinfra.WaitFor(t, 20*time.Second, "the disabled webhook's delivery record", func() bool {
		p.a.api(t, "GET", "/v1/integrations/"+id+"/deliveries", nil, &page)
		return len(page.Deliveries) == 1 && page.Deliveries[0].State != "pending"
	})
	if d := page.Deliveries[0]; d.State != "skipped" || *d.EventID != eventID {
		t.Fatalf("delivery after disabling: %+v", d)
	}
	if n := len(ep.DeliveriesFor(eventID)); n != 0 {
		t.Fatalf("the endpoint received %d requests after the webhook was disabled", n)
	}
}

// markupEndpoint fails with markup in its body until healed, then accepts
// and counts.
type markupEndpoint struct {
	mu       sync.Mutex
	healed   bool
	received []string // X-Blazelock-Webhook-Id of accepted requests
}

const hostileExcerpt = `<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>`

func (m *markupEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.healed {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, hostileExcerpt)
		return
	}
	m.received = append(m.received, r.Header.Get("X-Blazelock-Webhook-Id"))
}

func (p *portalSuite) testDeadDelivery(t *testing.T) {
	p = p.with(t)
	m := &markupEndpoint{}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	id := uuid.Must(uuid.NewV7()).String()
	p.s.setWebhook(p.a, id, map[string]any{"enabled": true, "url": srv.URL + "/hooks", "events": schemas.EventNames})
	eventID := p.s.publish(id, schemas.EventFailed)
	var page api.DeliveryPage
	testinfra.WaitFor(t, 60*time.Second, "the delivery to die", func() bool {
		p.a.api(t, "GET", "/v1/integrations/"+id+"/deliveries", nil, &page)
		return len(page.Deliveries) == 1 && page.Deliveries[0].State == "dead"
	})
	d := page.Deliveries[0]

	tab := p.operator(p.a)
	p.do(tab, chromedp.Navigate(base(p.a)+"/portal/integrations/"+id+"/deliveries"),
		chromedp.WaitVisible(chromedp.CSS(`a[href$="/deliveries/`+d.ID+`"]`)))
	if row := p.text(tab, "tbody tr"); !strings.Contains(row, eventID) || !strings.Contains(row, "dead") || !strings.Contains(row, "500") {
		t.Fatalf("the deliveries row reads %q", row)
	}
	p.screenshot(tab, "deliveries")
	p.do(tab, chromedp.Click(chromedp.CSS(`a[href$="/deliveries/`+d.ID+`"]`)), chromedp.WaitVisible(chromedp.CSS("pre.excerpt")))
	rows := get(p, tab, chromedp.Evaluate[int](`document.querySelectorAll('table tbody tr').length`))
	injected := get(p, tab, chromedp.Evaluate[int](`document.querySelectorAll('pre.excerpt *').length`))
	title := get(p, tab, chromedp.Title())
	excerpt := get(p, tab, chromedp.TextContent(chromedp.CSS("pre.excerpt")))
	if rows != d.AttemptCount || rows != 4 {
		t.Errorf("the page lists %d attempts; the delivery has %d, the schedule allows 4", rows, d.AttemptCount)
	}
	if excerpt != hostileExcerpt || injected != 0 || strings.Contains(title, "pwned") {
		t.Fatalf("the excerpt was not shown as text: text %q, %d elements inside, title %q", excerpt, injected, title)
	}
	p.screenshot(tab, "delivery")

	m.mu.Lock()
	m.healed = true
	m.mu.Unlock()
	p.do(tab, chromedp.Click(chromedp.CSS(`form[action$="/retry"] button`)))
	if n := p.notice(tab); !strings.Contains(n, "Retry started") {
		t.Fatalf("after Retry: %q", n)
	}
	testinfra.WaitFor(t, 20*time.Second, "the retried delivery to succeed", func() bool {
		var got api.DeliveryWithAttempts
		p.a.api(t, "GET", "/v1/deliveries/"+d.ID, nil, &got)
		return got.State == "succeeded"
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.received) != 1 || m.received[0] != eventID {
		t.Fatalf("after Retry the endpoint accepted %v, want [%s]", m.received, eventID)
	}
}

// portalLink asks a's API for a link into integration id.
func (p *portalSuite) portalLink(a *app, id string) api.PortalLink {
	p.t.Helper()
	var link api.PortalLink
	if code := a.api(p.t, "POST", "/v1/integrations/"+id+"/portal-links", nil, &link); code != http.StatusCreated {
		p.t.Fatalf("POST portal-links: %d", code)
	}
	return link
}

// onLocalhost moves a link from the API's host (127.0.0.1) to base(a).
func onLocalhost(a *app, link string) string {
	return base(a) + link[strings.Index(link, "/portal/"):]
}

func (p *portalSuite) testPortalLink(t *testing.T) {
	p = p.with(t)
	ep := newEndpoint(t, receiver.Faults{})
	id := p.s.configure(p.a, ep)
	other := p.s.configure(p.a, ep)
	link := p.portalLink(p.a, id)

	// The customer arrives by clicking the link on another site (their
	// dashboard), which a SameSite=Strict cookie must survive.
	from := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><a id="go" href="%s">Manage webhooks</a>`, onLocalhost(p.a, link.URL))
	}))
	t.Cleanup(from.Close)
	tab := testinfra.BrowserTab(t, p.chrome)
	p.do(tab, chromedp.Navigate(from.URL), chromedp.Click(chromedp.CSS("#go")), chromedp.WaitVisible(chromedp.CSS("#url")))
	loc := get(p, tab, chromedp.Location())
	if loc != base(p.a)+"/portal/integrations/"+id {
		t.Fatalf("the link led to %s", loc)
	}
	if who := p.text(tab, ".who"); !strings.Contains(who, id) {
		t.Fatalf("the session is %q", who)
	}
	for _, path := range []string{"/portal/integrations/" + other, "/portal/integrations/" + other + "/deliveries"} {
		p.do(tab, chromedp.Navigate(base(p.a)+path))
		if h := p.text(tab, "h1"); h != "Not found" {
			t.Errorf("%s from a session of another integration: %q", path, h)
		}
	}
	p.do(tab, chromedp.Navigate(base(p.a)+"/portal/"), chromedp.WaitVisible(chromedp.CSS("#url")))
	loc = get(p, tab, chromedp.Location())
	if !strings.HasSuffix(loc, "/portal/integrations/"+id) {
		t.Errorf("the index sent a portal session to %s", loc)
	}

	expect := func(url, heading string) {
		t.Helper()
		tab := testinfra.BrowserTab(t, p.chrome)
		p.do(tab, chromedp.Navigate(url))
		if h := p.text(tab, "h1"); h != heading {
			t.Errorf("%s: heading %q, want %q", url, h, heading)
		}
	}
	expect(onLocalhost(p.a, link.URL), "This link has already been used")
	altered := p.portalLink(p.a, id).URL
	altered = altered[:len(altered)-1] + map[bool]string{true: "B", false: "A"}[strings.HasSuffix(altered, "A")]
	expect(onLocalhost(p.a, altered), "This link is not valid")
	short := p.portalLink(p.strict, id)
	time.Sleep(time.Until(short.ExpiresAt.Time) + 50*time.Millisecond) // its expiry, a fixed deadline
	expect(onLocalhost(p.strict, short.URL), "This link has expired")
}

func (p *portalSuite) testCrossSite(t *testing.T) {
	p = p.with(t)
	ep := newEndpoint(t, receiver.Faults{})
	id := p.s.configure(p.a, ep)
	before, _ := p.webhook(p.a, id)
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/portal/integrations/%s/webhook">
<input name="url" value="%s"><button id="go">Win a prize</button></form>`, base(p.a), id, publicTarget)
	}))
	t.Cleanup(attacker.Close)
	tab := p.operator(p.a)
	p.do(tab, chromedp.Navigate(attacker.URL), chromedp.Click(chromedp.CSS("#go")))
	if h := p.text(tab, "h1"); h != "Request refused" {
		t.Fatalf("a cross-site post answered %q", h)
	}
	after, _ := p.webhook(p.a, id)
	if after.URL != before.URL || !after.Enabled || after.UpdatedAt != before.UpdatedAt {
		t.Fatalf("the cross-site post changed the webhook: %+v", after)
	}
}

func (p *portalSuite) testSmallScreen(t *testing.T) {
	p = p.with(t)
	ep := newEndpoint(t, receiver.Faults{})
	id := p.s.configure(p.a, ep)
	p.s.publish(id, schemas.EventSubmitted)
	tab := p.operator(p.a)
	p.do(tab, chromedp.EmulateViewport(375, 812))
	for _, path := range []string{"/portal/", "/portal/integrations/" + id, "/portal/integrations/" + id + "/deliveries", "/portal/integrations/" + id + "/secret/regenerate"} {
		p.do(tab, chromedp.Navigate(base(p.a)+path), chromedp.WaitVisible(chromedp.CSS("h1")))
		overflow := get(p, tab, chromedp.Evaluate[int](`document.documentElement.scrollWidth - document.documentElement.clientWidth`))
		unlabelled := get(p, tab, chromedp.Evaluate[[]string](`[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
				.filter(el => el.labels.length === 0 && !el.getAttribute('aria-label')).map(el => el.id || el.name)`))
		if overflow > 0 {
			t.Errorf("%s is %d px wider than a 375 px screen", path, overflow)
		}
		if len(unlabelled) > 0 {
			t.Errorf("%s has controls without a label: %v", path, unlabelled)
		}
		if path == "/portal/integrations/"+id {
			p.screenshot(tab, "settings-375px")
		}
	}
}
