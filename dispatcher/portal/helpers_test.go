package portal

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/replay"
	"github.com/blazelock/webhooks/dispatcher/retrylane"
	"github.com/blazelock/webhooks/dispatcher/target"
	"github.com/blazelock/webhooks/dispatcher/webhooks"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/schemas"
)

const (
	adminToken = "portal-test-admin-token-5f0c2a9e7d41b36a"
	sessionTTL = 8 * time.Hour
	linkTTL    = 15 * time.Minute
)

// testResolver stands in for DNS: nothing in these tests reaches the network.
var testResolver = testinfra.Resolver{
	"example.com":          {"93.184.216.34"},
	"hooks.example.com":    {"93.184.216.34"},
	"other.example.com":    {"93.184.216.35"},
	"internal.example.com": {"10.20.30.40"},
}

// clock is the time Access sees; tests move it forward.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one dispatcher's pages over a private embedded nats-server:
// sessions and links on one connection, webhooks and deliveries on
// another, so a test can break either storage on its own.
type env struct {
	t        *testing.T
	deps     Deps
	srv      *Server
	ts       *httptest.Server
	logs     *testinfra.LogBuffer
	clock    *clock
	access   *Access
	store    *webhooks.Store
	dlog     *deliverylog.Log
	js       jetstream.JetStream // data connection
	portalKV jetstream.KeyValue
	accessNC *nats.Conn
	dataNC   *nats.Conn

	mu        sync.Mutex
	sensitive []string // values that must never reach the log
}

// newEnv serves the pages with real stores. opts adjust Deps before New.
// At cleanup it checks that no secret, cookie, link token or the admin
// token ever reached the log.
func newEnv(t *testing.T, opts ...func(*Deps)) *env {
	t.Helper()
	ctx := context.Background()
	n := testinfra.StartNATS(t)
	dataNC, accessNC := n.Connect(t), n.Connect(t)
	js, err := jetstream.New(dataNC)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsinfra.Provision(ctx, js, natsinfra.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	accessJS, err := jetstream.New(accessNC)
	if err != nil {
		t.Fatal(err)
	}
	portalKV, err := accessJS.KeyValue(ctx, natsinfra.PortalBucket)
	if err != nil {
		t.Fatal(err)
	}
	webhooksKV, err := js.KeyValue(ctx, natsinfra.WebhooksBucket)
	if err != nil {
		t.Fatal(err)
	}
	deliveriesKV, err := js.KeyValue(ctx, natsinfra.DeliveriesBucket)
	if err != nil {
		t.Fatal(err)
	}

	logs := &testinfra.LogBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	key := make([]byte, webhooks.SecretKeyLen)
	_, _ = rand.Read(key)
	store, err := webhooks.New(webhooksKV, nil, webhooks.Options{SecretKey: key, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	dlog := deliverylog.New(deliveriesKV)

	clk := &clock{t: time.Now()}
	access := NewAccess(portalKV, AccessOptions{SessionTTL: sessionTTL, LinkTTL: linkTTL})
	access.now = clk.Now

	deps := Deps{
		Webhooks:   store,
		Deliveries: replay.New(dlog, retrylane.New(js), js),
		Access:     access,
		AdminToken: adminToken,
		URLPolicy:  target.Policy{},
		Resolver:   testResolver,
		Logger:     logger,
	}
	for _, o := range opts {
		o(&deps)
	}
	srv := New(deps)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	e := &env{
		t: t, deps: deps, srv: srv, ts: ts, logs: logs, clock: clk, access: access, store: store,
		dlog: dlog, js: js, portalKV: portalKV, accessNC: accessNC, dataNC: dataNC,
		sensitive: []string{adminToken},
	}
	t.Cleanup(e.checkLogs)
	return e
}

// remember adds values that must never be logged.
func (e *env) remember(values ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, v := range values {
		if v != "" {
			e.sensitive = append(e.sensitive, v)
		}
	}
}

func (e *env) checkLogs() {
	// The current secrets too, when the store can still be read.
	if e.dataNC.IsConnected() {
		ids, _ := e.store.IDs(context.Background())
		for _, id := range ids {
			if cfg, err := e.store.Get(context.Background(), id); err == nil {
				e.remember(cfg.Secret)
			}
		}
	}
	out := e.logs.String()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.sensitive {
		if strings.Contains(out, s) {
			e.t.Errorf("a secret value (%.6s…) reached the log", s)
		}
	}
}

// logLines returns the JSON log lines with message msg.
func (e *env) logLines(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(e.logs.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatalf("log line is not JSON: %q", line)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// audits returns the "portal audit" lines of action.
func (e *env) audits(action string) []map[string]any {
	var out []map[string]any
	for _, m := range e.logLines("portal audit") {
		if m["action"] == action {
			out = append(out, m)
		}
	}
	return out
}

// requireAudit fails unless exactly one audit line of action names the
// integration and an actor of the given kind ("operator session" or
// "portal session"), and returns it.
func (e *env) requireAudit(action, integrationID, actorKind string) map[string]any {
	e.t.Helper()
	lines := e.audits(action)
	if len(lines) != 1 {
		e.t.Fatalf("%d audit lines %q, want 1; log:\n%s", len(lines), action, e.logs.String())
	}
	m := lines[0]
	if m["integration_id"] != integrationID {
		e.t.Errorf("audit %s: integration_id %v, want %q", action, m["integration_id"], integrationID)
	}
	actor, _ := m["actor"].(string)
	if ref, ok := strings.CutPrefix(actor, actorKind+" "); !ok || !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(ref) {
		e.t.Errorf("audit %s: actor %q, want %q and a 12-hex reference", action, actor, actorKind)
	}
	if m["component"] != "portal" {
		e.t.Errorf("audit %s: component %v", action, m["component"])
	}
	return m
}

// ---- Stored state ----

func newID() string { return uuid.NewString() }

// createWebhook stores settings directly and returns the config.
func (e *env) createWebhook(id string, enabled bool, rawURL string, events ...string) webhooks.Webhook {
	e.t.Helper()
	cfg, _, err := e.store.Put(context.Background(), id, webhooks.Settings{Enabled: enabled, URL: rawURL, Events: events})
	if err != nil {
		e.t.Fatalf("put webhook: %v", err)
	}
	e.remember(cfg.Secret)
	return cfg
}

func (e *env) getWebhook(id string) (webhooks.Webhook, error) {
	cfg, err := e.store.Get(context.Background(), id)
	if err == nil {
		e.remember(cfg.Secret)
	}
	return cfg, err
}

// newDelivery is a delivery record of integrationID for the event stored
// at seq at time at.
func newDelivery(integrationID string, seq uint64, at time.Time, state, event string) *deliverylog.Delivery {
	at = at.UTC().Truncate(time.Millisecond)
	eventID := uuid.NewString()
	d := &deliverylog.Delivery{
		ID: deliverylog.DeliveryID(natsinfra.EventsStream, seq, at), EventID: &eventID, Event: &event,
		IntegrationID: integrationID, State: state, CreatedAt: at, UpdatedAt: at,
		EventSequence: seq, Series: 1,
	}
	if state != deliverylog.StatePending && state != deliverylog.StateRejected {
		code := 500
		d.AttemptCount, d.SeriesAttempts, d.LastStatusCode = 1, 1, &code
		d.Attempts = []deliverylog.Attempt{{Number: 1, StartedAt: at, DurationMillis: 12, StatusCode: &code}}
	}
	if state == deliverylog.StatePending {
		next := at.Add(time.Minute)
		d.NextAttemptAt = &next
	}
	return d
}

func (e *env) saveDelivery(d *deliverylog.Delivery) *deliverylog.Delivery {
	e.t.Helper()
	if err := e.dlog.Save(context.Background(), d); err != nil {
		e.t.Fatalf("save delivery: %v", err)
	}
	return d
}

// publishEvent stores an event in the events stream (nothing consumes it)
// and returns its sequence, so a delivery of it can be retried.
func (e *env) publishEvent(integrationID, event string) uint64 {
	e.t.Helper()
	ack, err := e.js.Publish(context.Background(), natsinfra.EventSubject(integrationID, event),
		fmt.Appendf(nil, `{"event":%q,"integration_id":%q}`, event, integrationID))
	if err != nil {
		e.t.Fatalf("publish event: %v", err)
	}
	return ack.Sequence
}

func (e *env) loadDelivery(d *deliverylog.Delivery) *deliverylog.Delivery {
	e.t.Helper()
	got, err := e.dlog.Load(context.Background(), d.IntegrationID, d.ID)
	if err != nil {
		e.t.Fatalf("load delivery %s: %v", d.ID, err)
	}
	return got
}

// portalKeys lists the portal bucket's keys.
func (e *env) portalKeys() []string {
	e.t.Helper()
	lister, err := e.portalKV.ListKeys(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys
}

// newLink creates a portal link token for integrationID ("" for an
// operator link).
func (e *env) newLink(integrationID string) string {
	e.t.Helper()
	token, _, err := e.access.NewLink(context.Background(), integrationID)
	if err != nil {
		e.t.Fatalf("new link: %v", err)
	}
	e.remember(token)
	return token
}

// ---- Browser ----

// page is an answer as a browser got it.
type page struct {
	status int
	header http.Header
	body   string
}

func (p page) location() string { return p.header.Get("Location") }

// title is the text of the page's <title>, before " · Blazelock webhooks".
func (p page) title() string {
	m := regexp.MustCompile(`<title>(.*?) · Blazelock webhooks</title>`).FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return m[1]
}

// h1 is the text of the page's first <h1>.
func (p page) h1() string {
	m := regexp.MustCompile(`<h1>(.*?)</h1>`).FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return m[1]
}

// browser is a client with a cookie jar that does not follow redirects and
// sends POSTs as a browser on the pages would (same-origin).
type browser struct {
	e   *env
	c   *http.Client
	jar *cookiejar.Jar
}

func (e *env) newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, jar: jar, c: &http.Client{
		Jar:           jar,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// cookie is the browser's session cookie value, or "".
func (b *browser) cookie() string {
	u, _ := url.Parse(b.e.ts.URL + "/portal/")
	for _, c := range b.jar.Cookies(u) {
		if c.Name == cookieName {
			return c.Value
		}
	}
	return ""
}

// setCookie puts a session cookie value in the jar.
func (b *browser) setCookie(value string) {
	u, _ := url.Parse(b.e.ts.URL + "/")
	b.jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: value, Path: "/"}})
}

// get sends GET path; headers alternate name, value.
func (b *browser) get(path string, headers ...string) page {
	b.e.t.Helper()
	return b.do(http.MethodGet, path, nil, headers)
}

// post sends a form as a same-origin browser request (Sec-Fetch-Site and
// Origin); headers alternate name, value and override those (an empty
// value removes the header).
func (b *browser) post(path string, form url.Values, headers ...string) page {
	b.e.t.Helper()
	h := append([]string{
		"Content-Type", "application/x-www-form-urlencoded",
		"Sec-Fetch-Site", "same-origin",
		"Origin", b.e.ts.URL,
	}, headers...)
	return b.do(http.MethodPost, path, strings.NewReader(form.Encode()), h)
}

func (b *browser) do(method, path string, body io.Reader, headers []string) page {
	b.e.t.Helper()
	req, err := http.NewRequest(method, b.e.ts.URL+path, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	p := page{status: resp.StatusCode, header: resp.Header, body: string(raw)}
	for _, c := range resp.Cookies() {
		b.e.remember(c.Value)
	}
	b.e.checkHeaders(path, p)
	return p
}

// checkHeaders checks the security headers every answer carries, and that
// no HTML page needs inline script or style (the CSP forbids them).
func (e *env) checkHeaders(path string, p page) {
	e.t.Helper()
	h := p.header
	policy := h.Get("Content-Security-Policy")
	wantAncestors := "frame-ancestors 'none'"
	if len(e.deps.FrameAncestors) > 0 {
		wantAncestors = "frame-ancestors " + strings.Join(e.deps.FrameAncestors, " ")
	}
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "form-action 'self'", "base-uri 'none'", wantAncestors} {
		if !strings.Contains(policy, want) {
			e.t.Errorf("%s: CSP %q lacks %q", path, policy, want)
		}
	}
	if !strings.HasSuffix(policy, wantAncestors) {
		e.t.Errorf("%s: CSP %q does not end with %q", path, policy, wantAncestors)
	}
	if strings.Contains(policy, "unsafe-") || strings.Contains(policy, "*") {
		e.t.Errorf("%s: CSP %q allows unsafe or wildcard sources", path, policy)
	}
	if got := h.Get("Referrer-Policy"); got != "no-referrer" {
		e.t.Errorf("%s: Referrer-Policy %q", path, got)
	}
	if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
		e.t.Errorf("%s: X-Content-Type-Options %q", path, got)
	}
	wantXFO := "DENY"
	if len(e.deps.FrameAncestors) > 0 {
		wantXFO = ""
	}
	if got := h.Get("X-Frame-Options"); got != wantXFO {
		e.t.Errorf("%s: X-Frame-Options %q, want %q", path, got, wantXFO)
	}
	cc := h.Get("Cache-Control")
	if strings.HasPrefix(path, "/portal/static/") {
		if cc == "no-store" {
			e.t.Errorf("%s: static file answered no-store", path)
		}
	} else if cc != "no-store" {
		e.t.Errorf("%s: Cache-Control %q, want no-store", path, cc)
	}
	if strings.HasPrefix(h.Get("Content-Type"), "text/html") && p.status != http.StatusSeeOther {
		if m := inlineCode(p.body); m != "" {
			e.t.Errorf("%s: page has inline script or style %q, which the CSP blocks", path, m)
		}
	}
}

var (
	scriptTag   = regexp.MustCompile(`(?i)<script[^>]*>`)
	inlineStyle = regexp.MustCompile(`(?i)<style|<[a-z][^>]*(?:\sstyle=|\son[a-z]+=|javascript:)[^>]*>`)
)

// inlineCode returns the first inline script or style of an HTML page, or "".
func inlineCode(body string) string {
	for _, tag := range scriptTag.FindAllString(body, -1) {
		if !strings.Contains(tag, " src=") {
			return tag
		}
	}
	return inlineStyle.FindString(body)
}

// signIn signs the browser in as an operator.
func (b *browser) signIn() {
	b.e.t.Helper()
	p := b.post("/portal/sign-in", url.Values{"token": {adminToken}})
	if p.status != http.StatusSeeOther || b.cookie() == "" {
		b.e.t.Fatalf("sign-in: status %d, cookie %t", p.status, b.cookie() != "")
	}
}

// operator returns a signed-in operator browser.
func (e *env) operator() *browser {
	e.t.Helper()
	b := e.newBrowser()
	b.signIn()
	return b
}

// portal returns a browser signed in with a portal link for integrationID.
func (e *env) portal(integrationID string) *browser {
	e.t.Helper()
	b := e.newBrowser()
	p := b.get("/portal/links/" + e.newLink(integrationID))
	if p.status != http.StatusOK || b.cookie() == "" {
		e.t.Fatalf("redeem link: status %d, cookie %t: %s", p.status, b.cookie() != "", p.body)
	}
	return b
}

// wantPage fails unless p has the status and its title and h1 both say
// title.
func wantPage(t *testing.T, p page, status int, title string) {
	t.Helper()
	if p.status != status {
		t.Fatalf("status %d, want %d; body:\n%s", p.status, status, p.body)
	}
	if got := p.title(); got != title {
		t.Errorf("title %q, want %q", got, title)
	}
	if !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
		t.Errorf("Content-Type %q", p.header.Get("Content-Type"))
	}
}

// wantRedirect fails unless p is a 303 to location.
func wantRedirect(t *testing.T, p page, location string) {
	t.Helper()
	if p.status != http.StatusSeeOther || p.location() != location {
		t.Fatalf("status %d to %q, want 303 to %q; body:\n%s", p.status, p.location(), location, p.body)
	}
}

// settingsForm is the settings form as a browser sends it.
func settingsForm(enabled bool, rawURL string, events ...string) url.Values {
	f := url.Values{"url": {rawURL}}
	if enabled {
		f.Set("enabled", "on")
	}
	for _, ev := range events {
		f.Add("events", ev)
	}
	return f
}

var allEvents = schemas.EventNames

// wantErrorPage fails unless p is an error page with the status whose
// title and heading both say title, with a way back and no session menu.
func wantErrorPage(t *testing.T, p page, status int, title string) {
	t.Helper()
	wantPage(t, p, status, title)
	if got := p.h1(); got != title {
		t.Errorf("heading %q, want %q", got, title)
	}
	if !strings.Contains(p.body, `href="/portal/"`) {
		t.Error("error page without a link back to the Webhook section")
	}
	if strings.Contains(p.body, "/portal/sign-out") {
		t.Error("error page shows the session menu")
	}
}

// serve runs req through the pages' handler without a network, for
// requests a test client cannot make (TLS, other hosts).
func (e *env) serve(req *http.Request) page {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	res := rec.Result()
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	p := page{status: res.StatusCode, header: res.Header, body: string(body)}
	for _, c := range res.Cookies() {
		e.remember(c.Value)
	}
	e.checkHeaders(req.URL.Path, p)
	return p
}

// setCookie parses the answer's one Set-Cookie header.
func setCookie(t *testing.T, p page) *http.Cookie {
	t.Helper()
	values := p.header.Values("Set-Cookie")
	if len(values) != 1 {
		t.Fatalf("%d Set-Cookie headers, want 1: %q", len(values), values)
	}
	c, err := http.ParseSetCookie(values[0])
	if err != nil {
		t.Fatalf("Set-Cookie %q: %v", values[0], err)
	}
	return c
}

// inputTag returns the <input> tag with the given id attribute.
func inputTag(t *testing.T, body, id string) string {
	t.Helper()
	m := regexp.MustCompile(`<input[^>]*\sid="` + regexp.QuoteMeta(id) + `"[^>]*>`).FindString(body)
	if m == "" {
		t.Fatalf("no input with id %q in:\n%s", id, body)
	}
	return m
}

func checked(tag string) bool { return regexp.MustCompile(`\schecked[\s>]`).MatchString(tag) }

// fieldError returns the text of the error message of a settings field
// ("url" or "events"), and whether there is one.
func fieldError(body, field string) (string, bool) {
	m := regexp.MustCompile(`(?s)<p class="error" id="` + field + `-error">(.*?)</p>`).FindStringSubmatch(body)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// alert returns the text of the page's alert, or "".
func alert(body string) string {
	m := regexp.MustCompile(`(?s)<div class="alert" role="alert">(.*?)</div>`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// notice returns the text of the page's live region.
func notice(body string) string {
	m := regexp.MustCompile(`(?s)<div id="announce"[^>]*>(.*?)</div>`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

var deliveryLink = regexp.MustCompile(`/deliveries/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"`)

// listedDeliveries returns the delivery ids a deliveries page links to, in
// page order.
func listedDeliveries(body string) []string {
	var ids []string
	for _, m := range deliveryLink.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// alter changes a token's first character.
func alter(token string) string {
	if strings.HasPrefix(token, "A") {
		return "B" + token[1:]
	}
	return "A" + token[1:]
}
