package reliability

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// otlpSink records every OTLP/HTTP export (traces, metrics, logs).
type otlpSink struct {
	mu     sync.Mutex
	bodies map[string][][]byte // by path
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rd = zr
	}
	body, err := io.ReadAll(rd)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.bodies[r.URL.Path] = append(s.bodies[r.URL.Path], body)
	s.mu.Unlock()
	w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
	w.WriteHeader(http.StatusOK) // an empty Export*ServiceResponse
}

func (s *otlpSink) all(path string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Join(s.bodies[path], []byte("\n"))
}

// needle is a secret in one of the forms it could leak in.
type needle struct{ what, form, value string }

// forms returns a secret as text, base64 (standard and URL, padded or
// not), and hex (lower and upper case).
func forms(what string, raw []byte) []needle {
	out := []needle{{what, "plain", string(raw)}}
	for _, f := range []struct {
		name string
		enc  func([]byte) string
	}{
		{"base64", base64.StdEncoding.EncodeToString},
		{"base64 unpadded", base64.RawStdEncoding.EncodeToString},
		{"base64url", base64.URLEncoding.EncodeToString},
		{"base64url unpadded", base64.RawURLEncoding.EncodeToString},
		{"hex", hex.EncodeToString},
		{"HEX", func(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }},
	} {
		// Trim padding: a leaked value inside a longer encoded string keeps
		// its prefix, not its padding.
		out = append(out, needle{what, f.name, strings.TrimRight(f.enc(raw), "=")})
	}
	return out
}

// webhookSecretNeedles: the whole secret and its random part alone, in
// every form, plus a 16-character piece of the random part in plain text
// (a truncated log line).
func webhookSecretNeedles(what, secret string) []needle {
	body := strings.TrimPrefix(secret, "whsec_")
	out := append(forms(what, []byte(secret)), forms(what+" (without whsec_)", []byte(body))...)
	return append(out, needle{what, "16-character piece", body[8:24]})
}

// TestSecretsNeverLeak runs a full scenario on two dispatchers at debug
// level with OTLP export on — configure, deliver, fail, retry, rotate the
// secret, a dead delivery replayed, API errors with secrets in the
// request — then searches everything an operator or attacker could read
// for the webhook secrets, the admin token and DISPATCHER_SECRET_KEY, in
// plain, base64 and hex forms: the dispatchers' logs, the exported spans,
// metrics (and logs, if any) as the OTLP receiver got them, /metrics,
// every API answer other than the two secret routes, every request the
// endpoints received, and the JetStream and Redis files on disk (secrets
// are encrypted at rest).
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	sink := &otlpSink{bodies: map[string][][]byte{}}
	otlp := newHandlerEndpoint(t, sink)
	c := newCluster(t, map[string]string{
		"DISPATCHER_LOG_LEVEL":        "debug",
		"DISPATCHER_RETRY_SCHEDULE":   "1s,1s",
		"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.base(),
		"OTEL_METRIC_EXPORT_INTERVAL": "500",
		"OTEL_BSP_SCHEDULE_DELAY":     "200",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
	})
	a := c.startDispatcher("a", nil)
	b := c.startDispatcher("b", nil)

	var answers bytes.Buffer // every API answer that must not hold a secret
	record := func(status int, body []byte) { fmt.Fprintf(&answers, "%d %s\n", status, body) }
	call := func(d *dispatcher, method, path, contentType, body string, token string) (int, []byte) {
		h := http.Header{}
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		status, _, raw := d.request(method, path, []byte(body), h)
		return status, raw
	}

	flakyEp := newEndpoint(t, receiver.Faults{FailFirst: 1, Status: 503, Delay: receiver.Duration(100 * time.Millisecond)})
	deadEp := newEndpoint(t, receiver.Faults{Status: 500})
	flaky := c.configure(a, flakyEp)
	dead := c.configure(b, deadEp)
	secrets := map[string]string{"flaky": c.secret(a, flaky), "dead": c.secret(b, dead)}

	var events []sentEvent
	for i := range 6 {
		events = append(events, c.publish(flaky, schemas.EventNames[i%3]))
	}
	testinfra.WaitFor(t, 30*time.Second, "the flaky integration's events delivered after a retry", func() bool {
		return flakyEp.Stats().Accepted == int64(len(events))
	})

	// Rotate; the old secret must leak nowhere either.
	status, raw := call(b, "POST", "/v1/integrations/"+flaky+"/webhook/secret/rotate", "", "", c.adminToken)
	rotated := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(string(raw)), `{"secret":"`), `"}`)
	if status != http.StatusOK || !strings.HasPrefix(rotated, "whsec_") || rotated == secrets["flaky"] {
		t.Fatalf("rotate: %d %s", status, raw)
	}
	secrets["flaky (rotated)"] = rotated
	flakyEp.SetSecret(flaky, rotated)
	for i := range 6 {
		events = append(events, c.publish(flaky, schemas.EventNames[i%3]))
	}
	deadEv := c.publish(dead, schemas.EventFailed)
	want, by := expectAll(events, succeeded)
	want[deadEv.ID] = outcome{State: deliverylog.StateDead, Reason: "http_5xx"}
	by[dead] = []string{deadEv.ID}
	got := c.awaitOutcomes(a, want, by, time.Minute)
	checkArrivals(t, flakyEp, events)
	// Replay the dead delivery (it fails again: three more attempts).
	status, raw = call(a, "POST", "/v1/deliveries/"+got[deadEv.ID].ID+"/retry", "", "", c.adminToken)
	record(status, raw)
	if status != http.StatusAccepted {
		t.Fatalf("replay: %d %s", status, raw)
	}
	testinfra.WaitFor(t, 30*time.Second, "the replayed delivery to die again", func() bool {
		return len(deadEp.Deliveries()) == 6
	})

	// API answers and errors, some with secrets in the request.
	for _, r := range []struct {
		d                                *dispatcher
		method, path, ctype, body, token string
	}{
		{a, "GET", "/v1/integrations/" + flaky + "/webhook", "", "", c.adminToken},
		{b, "GET", "/v1/integrations/" + flaky + "/deliveries?limit=100", "", "", c.adminToken},
		{a, "GET", "/v1/deliveries/" + got[deadEv.ID].ID, "", "", c.adminToken},
		{a, "GET", "/v1/integrations/" + flaky + "/webhook", "", "", c.adminToken[:len(c.adminToken)-1] + "x"},
		{b, "GET", "/v1/integrations/" + flaky + "/webhook/secret", "", "", secrets["flaky (rotated)"]},
		{a, "GET", "/v1/integrations/" + flaky + "/webhook/secret", "", "", c.secretKey},
		{a, "PUT", "/v1/integrations/" + flaky + "/webhook", "application/json",
			`{"enabled": true, "url": "https://user:` + rotated + `@example.com/", "events": ["file_scan.completed"], "secret": "` + rotated + `"}`, c.adminToken},
		{b, "PUT", "/v1/integrations/" + flaky + "/webhook", "application/json", `{"enabled": "` + c.adminToken + `"}`, c.adminToken},
		{a, "PUT", "/v1/integrations/" + flaky + "/webhook", "application/json", `{"secret": "` + rotated, c.adminToken},
		{b, "PUT", "/v1/integrations/" + flaky + "/webhook", "text/plain", rotated, c.adminToken},
		{a, "POST", "/v1/integrations/" + flaky + "/webhook/secret/rotate", "", "", ""},
		{b, "DELETE", "/v1/integrations/" + rotated + "/webhook", "", "", c.adminToken},
		{a, "GET", "/v1/deliveries/" + rotated, "", "", c.adminToken},
	} {
		status, raw := call(r.d, r.method, r.path, r.ctype, r.body, r.token)
		record(status, raw)
	}
	var metrics bytes.Buffer
	for _, d := range []*dispatcher{a, b} {
		_, _, raw := d.request("GET", "/metrics", nil, nil)
		metrics.Write(raw)
	}
	// Stop both: telemetry is flushed at shutdown.
	for _, d := range []*dispatcher{a, b} {
		if code, _ := d.Terminate(30 * time.Second); code != 0 {
			t.Errorf("dispatcher %s exited %d", d.Name(), code)
		}
	}

	var endpointTraffic bytes.Buffer
	for _, ep := range []*endpoint{flakyEp, deadEp} {
		for _, x := range ep.Deliveries() {
			fmt.Fprintf(&endpointTraffic, "%v %s\n", x.Header, x.Body)
		}
	}
	haystacks := []struct {
		name string
		data []byte
	}{
		{"dispatcher logs", []byte(a.Log.String() + b.Log.String())},
		{"OTLP traces", sink.all("/v1/traces")},
		{"OTLP metrics", sink.all("/v1/metrics")},
		{"OTLP logs", sink.all("/v1/logs")},
		{"/metrics", metrics.Bytes()},
		{"API answers", answers.Bytes()},
		{"requests to the endpoints", endpointTraffic.Bytes()},
		{"JetStream store files", readTree(t, c.nats.StoreDir)},
		{"Redis files", readTree(t, c.redis.Dir)},
	}
	// The scan must be able to find something: check what it reads.
	for _, h := range []struct{ name, mustContain string }{
		{"dispatcher logs", "level=DEBUG"},
		{"dispatcher logs", "msg=delivery.attempted"},
		{"dispatcher logs", `msg="api request"`},
		{"OTLP traces", "process dispatcher"},
		{"OTLP traces", "blazelock.delivery.id"},
		{"OTLP metrics", "webhook.attempts"},
		{"/metrics", "webhook_attempts"},
		{"API answers", "unauthorized"},
		{"JetStream store files", flaky},
	} {
		for _, hs := range haystacks {
			if hs.name == h.name && !bytes.Contains(hs.data, []byte(h.mustContain)) {
				t.Errorf("%s does not contain %q: the scan would look at the wrong data", h.name, h.mustContain)
			}
		}
	}

	var needles []needle
	for what, s := range secrets {
		needles = append(needles, webhookSecretNeedles("webhook secret "+what, s)...)
	}
	needles = append(needles, forms("admin token", []byte(c.adminToken))...)
	key, err := base64.StdEncoding.DecodeString(c.secretKey)
	if err != nil {
		t.Fatal(err)
	}
	needles = append(needles, forms("DISPATCHER_SECRET_KEY (raw bytes)", key)...)
	needles = append(needles, forms("DISPATCHER_SECRET_KEY (as configured)", []byte(c.secretKey))...)
	scanned := 0
	for _, h := range haystacks {
		scanned += len(h.data)
		for _, n := range needles {
			if i := bytes.Index(h.data, []byte(n.value)); i >= 0 {
				from, to := max(0, i-120), min(len(h.data), i+len(n.value)+40)
				t.Errorf("%s (%s) found in %s: …%q…", n.what, n.form, h.name, h.data[from:to])
			}
		}
	}
	t.Logf("searched %d bytes in %d places for %d secret forms; OTLP exports: %d trace, %d metric bodies",
		scanned, len(haystacks), len(needles), len(sink.bodies["/v1/traces"]), len(sink.bodies["/v1/metrics"]))
}

// readTree concatenates every regular file below dir.
func readTree(t *testing.T, dir string) []byte {
	t.Helper()
	var out bytes.Buffer
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out.Write(b)
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	return out.Bytes()
}
