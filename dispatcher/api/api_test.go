package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/api"
	"github.com/blazelock/webhooks/dispatcher/sign"
	"github.com/blazelock/webhooks/dispatcher/target"
	"github.com/blazelock/webhooks/dispatcher/webhooks"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
)

const adminToken = "test-admin-token-0123456789abcdef"

// testResolver stands in for DNS: nothing in these tests reaches the network.
var testResolver = testinfra.Resolver{
	"hooks.example.com":    {"93.184.215.14"},
	"other.example.com":    {"93.184.215.15"},
	"internal.example.com": {"10.20.30.40"},
	"mixed.example.com":    {"93.184.215.14", "127.0.0.1"},
	"rebind.example.com":   {"169.254.169.254"},
}

type apiEnv struct {
	t       *testing.T
	base    string
	client  *http.Client
	logs    *testinfra.LogBuffer
	kv      jetstream.KeyValue
	mu      sync.Mutex
	secrets []string // every secret an answer revealed
}

// newAPI serves the API over a real JetStream and Redis. At cleanup it
// checks that no secret and not the admin token ever reached the log.
func newAPI(t *testing.T, options ...func(*api.Deps, jetstream.JetStream)) *apiEnv {
	t.Helper()
	ctx := context.Background()
	js := testinfra.ProvisionedJetStream(t)
	kv, err := js.KeyValue(ctx, natsinfra.WebhooksBucket)
	if err != nil {
		t.Fatal(err)
	}
	rdb := testinfra.StartRedis(t).Client(t)
	logs := &testinfra.LogBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	key := make([]byte, webhooks.SecretKeyLen)
	_, _ = rand.Read(key)
	store, err := webhooks.New(kv, rdb, webhooks.Options{SecretKey: key, RedisKeyPrefix: testinfra.KeyPrefix(t), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	deps := api.Deps{Webhooks: store, AdminToken: adminToken, URLPolicy: target.Policy{}, Resolver: testResolver, Logger: logger}
	for _, o := range options {
		o(&deps, js)
	}
	srv := api.New(deps)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	e := &apiEnv{t: t, base: ts.URL, client: ts.Client(), logs: logs, kv: kv}
	t.Cleanup(func() {
		out := logs.String()
		if strings.Contains(out, adminToken) {
			t.Error("the admin token was logged")
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, s := range e.secrets {
			if strings.Contains(out, s) {
				t.Error("a webhook secret was logged")
			}
		}
	})
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) errorBody(t *testing.T) (code, message string, validation map[string][]string) {
	t.Helper()
	var b struct {
		Code       string              `json:"code"`
		Message    string              `json:"message"`
		Validation map[string][]string `json:"validation"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.Code == "" || b.Message == "" {
		t.Fatalf("status %d: not a JSON error body: %q", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error with Content-Type %q", ct)
	}
	if (b.Validation != nil) != (r.status == http.StatusUnprocessableEntity) {
		t.Fatalf("status %d with validation %v: validation belongs to 422 only", r.status, b.Validation)
	}
	return b.Code, b.Message, b.Validation
}

// request sends method path with body (JSON unless a Content-Type header
// is given) and the admin token unless an Authorization header is given.
// headers alternate name, value.
func (e *apiEnv) request(method, path, body string, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	secretRoute := strings.HasSuffix(path, "/secret") || strings.HasSuffix(path, "/secret/rotate")
	e.mu.Lock()
	defer e.mu.Unlock()
	if secretRoute && r.status == http.StatusOK {
		var s api.SecretBody
		if err := json.Unmarshal(b, &s); err == nil {
			e.secrets = append(e.secrets, s.Secret)
		}
	} else {
		for _, s := range e.secrets {
			if bytes.Contains(b, []byte(s)) {
				e.t.Fatalf("%s %s answered with a secret in its body", method, path)
			}
		}
	}
	return r
}

func (e *apiEnv) webhook(r response, wantStatus int) api.Webhook {
	e.t.Helper()
	if r.status != wantStatus {
		e.t.Fatalf("status %d, want %d: %s", r.status, wantStatus, r.body)
	}
	var w api.Webhook
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		e.t.Fatalf("decode webhook %s: %v", r.body, err)
	}
	return w
}

func (e *apiEnv) secret(r response) string {
	e.t.Helper()
	if r.status != http.StatusOK {
		e.t.Fatalf("secret route: status %d: %s", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		e.t.Fatalf("secret answered with Cache-Control %q, want no-store", cc)
	}
	var s api.SecretBody
	if err := json.Unmarshal(r.body, &s); err != nil || !sign.ValidSecret(s.Secret) {
		e.t.Fatalf("secret body %s: %v", r.body, err)
	}
	return s.Secret
}

func path(id string, suffix ...string) string {
	return "/v1/integrations/" + id + "/webhook" + strings.Join(suffix, "")
}

const goodBody = `{"enabled": true, "url": "https://hooks.example.com/blazelock", "events": ["file_scan.completed", "file_scan.submitted"]}`

func TestWebhookLifecycle(t *testing.T) {
	e := newAPI(t)
	id := uuid.NewString()

	if r := e.request("GET", path(id), ""); r.status != http.StatusNotFound {
		t.Fatalf("get before create: %d", r.status)
	}
	created := e.webhook(e.request("PUT", path(id), goodBody), http.StatusCreated)
	if created.IntegrationID != id || !created.Enabled || created.URL != "https://hooks.example.com/blazelock" ||
		strings.Join(created.Events, ",") != "file_scan.submitted,file_scan.completed" {
		t.Fatalf("created %+v", created)
	}
	if !strings.HasPrefix(created.Secret, "whsec_…") || len(created.Secret) != len("whsec_…")+4 {
		t.Fatalf("secret not masked as whsec_…<last 4>: %q", created.Secret)
	}
	got := e.webhook(e.request("GET", path(id), ""), http.StatusOK)
	if got.URL != created.URL || got.Secret != created.Secret || !got.CreatedAt.Equal(created.CreatedAt.Time) {
		t.Fatalf("get %+v, created %+v", got, created)
	}
	secret := e.secret(e.request("GET", path(id, "/secret"), ""))
	if !strings.HasSuffix(secret, strings.TrimPrefix(created.Secret, "whsec_…")) {
		t.Fatal("the mask does not show the secret's last characters")
	}

	replaced := e.webhook(e.request("PUT", path(id), `{"enabled": false, "url": "https://other.example.com/x"}`), http.StatusOK)
	if replaced.Enabled || replaced.URL != "https://other.example.com/x" || len(replaced.Events) != 0 || replaced.Events == nil ||
		replaced.Secret != created.Secret || !replaced.CreatedAt.Equal(created.CreatedAt.Time) {
		t.Fatalf("replaced %+v", replaced)
	}
	if e.secret(e.request("GET", path(id, "/secret"), "")) != secret {
		t.Fatal("replacing the config changed the secret")
	}
	// Upper-case ids name the same integration.
	if r := e.request("GET", path(strings.ToUpper(id)), ""); r.status != http.StatusOK {
		t.Fatalf("upper-case id: %d", r.status)
	}

	if r := e.request("DELETE", path(id), ""); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("delete: %d %q", r.status, r.body)
	}
	for _, probe := range []struct{ method, path string }{
		{"GET", path(id)}, {"DELETE", path(id)}, {"GET", path(id, "/secret")}, {"POST", path(id, "/secret/rotate")},
	} {
		r := e.request(probe.method, probe.path, "")
		if code, _, _ := r.errorBody(t); r.status != http.StatusNotFound || code != "not_found" {
			t.Fatalf("%s %s after delete: %d %s", probe.method, probe.path, r.status, code)
		}
	}
	again := e.webhook(e.request("PUT", path(id), goodBody), http.StatusCreated)
	if e.secret(e.request("GET", path(id, "/secret"), "")) == secret {
		t.Fatalf("re-created webhook kept the deleted one's secret (%+v)", again)
	}
}

func TestRotateSecret(t *testing.T) {
	e := newAPI(t)
	id := uuid.NewString()
	e.webhook(e.request("PUT", path(id), goodBody), http.StatusCreated)
	old := e.secret(e.request("GET", path(id, "/secret"), ""))
	rotated := e.secret(e.request("POST", path(id, "/secret/rotate"), ""))
	if rotated == old {
		t.Fatal("rotation returned the old secret")
	}
	if now := e.secret(e.request("GET", path(id, "/secret"), "")); now != rotated {
		t.Fatal("after rotation the secret route still shows another secret")
	}
	if got := e.webhook(e.request("GET", path(id), ""), http.StatusOK); !strings.HasSuffix(rotated, strings.TrimPrefix(got.Secret, "whsec_…")) {
		t.Fatal("the masked secret is not the rotated one")
	}
}

func TestValidation(t *testing.T) {
	e := newAPI(t)
	id := uuid.NewString()
	tests := []struct {
		name        string
		body        string
		contentType string
		status      int
		// want maps a field to substrings its messages must contain.
		want map[string][]string
	}{
		{name: "unknown events, each listed",
			body:   `{"enabled": true, "url": "https://hooks.example.com/", "events": ["file_scan.deleted", "file_scan.completed", "scan.done"]}`,
			status: 422, want: map[string][]string{"events": {`"file_scan.deleted" is not an event`, `"scan.done" is not an event`}}},
		{name: "empty events while enabled",
			body:   `{"enabled": true, "url": "https://hooks.example.com/", "events": []}`,
			status: 422, want: map[string][]string{"events": {"must not be empty while enabled"}}},
		{name: "missing events while enabled",
			body:   `{"enabled": true, "url": "https://hooks.example.com/"}`,
			status: 422, want: map[string][]string{"events": {"is required while enabled"}}},
		{name: "duplicate events",
			body:   `{"enabled": true, "url": "https://hooks.example.com/", "events": ["file_scan.failed", "file_scan.failed"]}`,
			status: 422, want: map[string][]string{"events": {`"file_scan.failed" is listed more than once`}}},
		{name: "missing enabled and url",
			body:   `{"events": ["file_scan.failed"]}`,
			status: 422, want: map[string][]string{"enabled": {"is required"}, "url": {"is required"}}},
		{name: "empty url",
			body:   `{"enabled": false, "url": ""}`,
			status: 422, want: map[string][]string{"url": {"must not be empty"}}},
		{name: "bad url, message from the URL policy",
			body:   `{"enabled": true, "url": "ftp://hooks.example.com/", "events": ["file_scan.failed"]}`,
			status: 422, want: map[string][]string{"url": {"must use https"}}},
		{name: "unknown fields, each listed",
			body:   `{"enabled": true, "url": "https://hooks.example.com/", "events": ["file_scan.failed"], "secret": "x", "retries": 3}`,
			status: 422, want: map[string][]string{"secret": {"is not a known field"}, "retries": {"is not a known field"}}},
		{name: "repeated field",
			body:   `{"enabled": true, "enabled": false, "url": "https://hooks.example.com/", "events": ["file_scan.failed"]}`,
			status: 422, want: map[string][]string{"enabled": {"appears more than once"}}},
		{name: "wrong types, by field",
			body:   `{"enabled": "yes", "url": 42, "events": "file_scan.failed"}`,
			status: 422, want: map[string][]string{"enabled": {"must be a boolean, got string"}, "url": {"must be a string, got number"}, "events": {"must be an array of event names, got string"}}},
		{name: "null values",
			body:   `{"enabled": null, "url": null, "events": null}`,
			status: 422, want: map[string][]string{"enabled": {"got null"}, "url": {"got null"}, "events": {"got null"}}},
		{name: "non-string event",
			body:   `{"enabled": true, "url": "https://hooks.example.com/", "events": ["file_scan.failed", 7]}`,
			status: 422, want: map[string][]string{"events": {"item 1 must be a string, got number"}}},
		{name: "malformed JSON, with its position",
			body:   "{\n  \"enabled\": true,\n  \"url\": \"https://hooks.example.com/\",,\n}",
			status: 422, want: map[string][]string{"body": {"is not valid JSON", "line 3"}}},
		{name: "truncated JSON",
			body:   `{"enabled": true, "url": "https://hoo`,
			status: 422, want: map[string][]string{"body": {"is not valid JSON", "ends early"}}},
		{name: "not an object",
			body:   `["enabled"]`,
			status: 422, want: map[string][]string{"body": {"must be a JSON object, got array"}}},
		{name: "data after the object",
			body:   `{"enabled": false, "url": "https://hooks.example.com/"} {}`,
			status: 422, want: map[string][]string{"body": {"has data after the JSON object"}}},
		{name: "empty body", body: " ", status: 422, want: map[string][]string{"body": {"is empty"}}},
		{name: "body over 64 KiB",
			body:   `{"enabled": false, "url": "https://hooks.example.com/` + strings.Repeat("a", 64<<10) + `"}`,
			status: 413},
		{name: "wrong content type", body: goodBody, contentType: "text/plain", status: 415},
		{name: "form content type", body: goodBody, contentType: "application/x-www-form-urlencoded", status: 415},
		{name: "json with charset is fine", body: goodBody, contentType: "application/json; charset=utf-8", status: 201},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.contentType != "" {
				hdr = []string{"Content-Type", tc.contentType}
			}
			r := e.request("PUT", path(id), tc.body, hdr...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == http.StatusCreated {
				if r := e.request("DELETE", path(id), ""); r.status != http.StatusNoContent {
					t.Fatalf("cleanup delete: %d", r.status)
				}
				return
			}
			_, _, validation := r.errorBody(t)
			for field, substrs := range tc.want {
				msgs := strings.Join(validation[field], " | ")
				for _, sub := range substrs {
					if !strings.Contains(msgs, sub) {
						t.Errorf("validation[%q] = %q, want it to mention %q", field, msgs, sub)
					}
				}
			}
			if tc.want != nil && len(validation) != len(tc.want) {
				t.Errorf("validation has fields %v, want exactly %v", validation, tc.want)
			}
			if r := e.request("GET", path(id), ""); r.status != http.StatusNotFound {
				t.Fatalf("a refused PUT stored something: %d", r.status)
			}
		})
	}
}

func TestMissingContentType(t *testing.T) {
	e := newAPI(t)
	r := e.request("PUT", path(uuid.NewString()), goodBody, "Content-Type", "")
	if code, _, _ := r.errorBody(t); r.status != http.StatusUnsupportedMediaType || code != "unsupported_media_type" {
		t.Fatalf("no Content-Type: %d %s", r.status, code)
	}
}

func TestAuth(t *testing.T) {
	e := newAPI(t)
	id := uuid.NewString()
	e.webhook(e.request("PUT", path(id), goodBody), http.StatusCreated)
	cases := []struct {
		name  string
		auth  []string // Authorization header values
		valid bool
	}{
		{name: "missing header"},
		{name: "basic scheme", auth: []string{"Basic " + adminToken}},
		{name: "token without scheme", auth: []string{adminToken}},
		{name: "empty bearer", auth: []string{"Bearer "}},
		{name: "wrong token", auth: []string{"Bearer not-the-token"}},
		{name: "prefix of the token", auth: []string{"Bearer " + adminToken[:len(adminToken)-1]}},
		{name: "token with a suffix", auth: []string{"Bearer " + adminToken + "x"}},
		{name: "two headers", auth: []string{"Bearer " + adminToken, "Bearer " + adminToken}},
		{name: "right token", auth: []string{"Bearer " + adminToken}, valid: true},
		{name: "scheme is case-insensitive", auth: []string{"bearer " + adminToken}, valid: true},
	}
	routes := []struct{ method, path string }{
		{"GET", path(id)}, {"PUT", path(id)}, {"DELETE", path(uuid.NewString())},
		{"GET", path(id, "/secret")}, {"POST", path(uuid.NewString(), "/secret/rotate")},
		{"GET", "/v1/unknown"}, {"POST", path(id)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, rt := range routes {
				req, err := http.NewRequest(rt.method, e.base+rt.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range tc.auth {
					req.Header.Add("Authorization", v)
				}
				resp, err := e.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if tc.valid {
					if resp.StatusCode == http.StatusUnauthorized {
						t.Fatalf("%s %s: refused a valid token", rt.method, rt.path)
					}
					continue
				}
				if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("%s %s: %d, WWW-Authenticate %q", rt.method, rt.path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
				}
				if code, _, _ := (response{status: resp.StatusCode, header: resp.Header, body: body}).errorBody(t); code != "unauthorized" {
					t.Fatalf("code %q", code)
				}
				if bytes.Contains(body, []byte("whsec_")) {
					t.Fatal("an unauthorized answer mentions a secret")
				}
			}
		})
	}
}

func TestEmptyAdminTokenRefusesEverything(t *testing.T) {
	srv := api.New(api.Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, auth := range []string{"", "Bearer ", "Bearer x"} {
		req := httptest.NewRequest("GET", path(uuid.NewString()), nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("auth %q: %d", auth, rec.Code)
		}
	}
}

func TestRouting(t *testing.T) {
	e := newAPI(t)
	id := uuid.NewString()
	cases := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/v1/nothing", 404, "not_found", ""},
		{"GET", "/", 404, "not_found", ""},
		{"POST", path(id), 405, "method_not_allowed", "DELETE, GET, HEAD, PUT"},
		{"PATCH", path(id), 405, "method_not_allowed", "DELETE, GET, HEAD, PUT"},
		{"POST", path(id, "/secret"), 405, "method_not_allowed", "GET, HEAD"},
		{"GET", path(id, "/secret/rotate"), 405, "method_not_allowed", "POST"},
		{"GET", path("not-a-uuid"), 400, "invalid_integration_id", ""},
		{"GET", path("0195a0c17e2f7a108c3d2b4e6f8a9c01"), 400, "invalid_integration_id", ""},
		{"GET", path("{0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01}"), 400, "invalid_integration_id", ""},
		{"POST", path("x", "/secret/rotate"), 400, "invalid_integration_id", ""},
	}
	for _, tc := range cases {
		r := e.request(tc.method, tc.path, "")
		code, _, _ := r.errorBody(t)
		if r.status != tc.status || code != tc.code || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d %s Allow=%q, want %d %s Allow=%q", tc.method, tc.path, r.status, code, r.header.Get("Allow"), tc.status, tc.code, tc.allow)
		}
	}
}

// TestURLPolicy: the API refuses webhook URLs that point into the
// dispatcher's network (docs/contract.md, URL rules), including names that
// resolve there.
func TestURLPolicy(t *testing.T) {
	e := newAPI(t)
	refused := []struct{ url, reason string }{
		{"http://hooks.example.com/hook", "must use https"},
		{"https://127.0.0.1/hook", "loopback"},
		{"https://127.1/hook", "four decimal numbers"},
		{"https://2130706433/hook", "four decimal numbers"},
		{"https://[::1]/hook", "loopback"},
		{"https://[::ffff:127.0.0.1]/hook", ""},
		{"https://localhost/hook", "localhost"},
		{"https://api.localhost/hook", "localhost"},
		{"https://10.1.2.3/hook", "private"},
		{"https://192.168.0.10/hook", "private"},
		{"https://172.16.5.4/hook", "private"},
		{"https://[fd00::1]/hook", ""},
		{"https://100.64.0.1/hook", ""},
		{"https://169.254.169.254/latest/meta-data/", ""},
		{"https://[fe80::1]/hook", ""},
		{"https://0.0.0.0/hook", ""},
		{"https://224.0.0.1/hook", ""},
		{"https://user:pass@hooks.example.com/hook", "credentials"},
		{"https://internal.example.com/hook", "must not resolve to"},
		{"https://mixed.example.com/hook", "must not resolve to"},
		{"https://rebind.example.com/hook", "must not resolve to"},
		{"https://nxdomain.example.com/hook", "does not exist"},
		{"https:///hook", "host"},
	}
	for _, tc := range refused {
		t.Run(tc.url, func(t *testing.T) {
			id := uuid.NewString()
			body, _ := json.Marshal(map[string]any{"enabled": true, "url": tc.url, "events": []string{"file_scan.completed"}})
			r := e.request("PUT", path(id), string(body))
			if r.status != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422: %s", r.status, r.body)
			}
			_, _, v := r.errorBody(t)
			if len(v["url"]) != 1 || !strings.Contains(v["url"][0], tc.reason) || len(v) != 1 {
				t.Fatalf("validation %v, want one url message mentioning %q", v, tc.reason)
			}
			if strings.Contains(v["url"][0], "pass") {
				t.Fatal("the message repeats the URL's credentials")
			}
			if r := e.request("GET", path(id), ""); r.status != http.StatusNotFound {
				t.Fatalf("a refused URL was stored: %d", r.status)
			}
		})
	}
	e.webhook(e.request("PUT", path(uuid.NewString()), `{"enabled": true, "url": "https://hooks.example.com:8443/in?x=1", "events": ["file_scan.failed"]}`), http.StatusCreated)
}

func TestRequestLog(t *testing.T) {
	e := newAPI(t)
	id := uuid.NewString()
	e.webhook(e.request("PUT", path(id), goodBody), http.StatusCreated)
	e.secret(e.request("GET", path(id, "/secret"), ""))
	e.request("GET", path(id), "", "Authorization", "Bearer wrong-token")

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "api request" {
			lines = append(lines, m)
		}
	}
	want := []struct {
		method, route string
		status        float64
	}{
		{"PUT", "PUT /v1/integrations/{id}/webhook", 201},
		{"GET", "GET /v1/integrations/{id}/webhook/secret", 200},
		{"GET", "GET /v1/integrations/{id}/webhook", 401},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d request lines, want %d: %v", len(lines), len(want), lines)
	}
	for i, w := range want {
		l := lines[i]
		if l["method"] != w.method || l["route"] != w.route || l["status"] != w.status || l["duration_ms"] == nil {
			t.Errorf("line %d = %v, want method %s route %s status %v and a duration", i, l, w.method, w.route, w.status)
		}
	}
	if out := e.logs.String(); strings.Contains(out, id) || strings.Contains(out, "hooks.example.com") || strings.Contains(out, "wrong-token") {
		t.Fatalf("the request log holds request data:\n%s", out)
	}
}
