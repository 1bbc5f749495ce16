package receiver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
	"github.com/blazelock/webhooks/subscriber/verify"
)

const (
	integrationA = "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01"
	integrationB = "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c02"
	secretA      = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	secretB      = "whsec_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

// start mounts a receiver on a real loopback HTTP server. Cleanups run in
// reverse: the receiver is closed (releasing hung requests) before the server.
func start(t *testing.T, cfg receiver.Config) (*receiver.Receiver, *httptest.Server) {
	t.Helper()
	if cfg.Secrets == nil {
		cfg.Secrets = map[string]string{integrationA: secretA, integrationB: secretB}
	}
	rc, err := receiver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	t.Cleanup(rc.Close)
	return rc, srv
}

// event is one webhook as a sender would post it.
type event struct {
	id            string
	integrationID string
	secret        string
	occurredAt    time.Time
	body          []byte
}

var eventSeq int

func newEvent(integrationID, secret string, occurredAt time.Time) event {
	eventSeq++
	id := fmt.Sprintf("01958a2b-0000-7000-8000-%012d", eventSeq)
	scan, _ := json.Marshal(schemas.FileScan{
		ID: fmt.Sprintf("019583d8-0000-7000-8000-%012d", eventSeq), Status: schemas.StatusProcessing,
		ExecutionMode: schemas.ModeAsync, FileName: "invoice.pdf", FileSize: 1234, SubmittedAt: schemas.At(occurredAt),
	})
	body, _ := json.Marshal(schemas.Envelope{
		Event: schemas.EventSubmitted, IntegrationID: integrationID, OccurredAt: schemas.At(occurredAt), Data: scan,
	})
	return event{id: id, integrationID: integrationID, secret: secret, occurredAt: occurredAt, body: body}
}

// request builds the signed POST for one attempt, sent now.
func (e event) request(t testing.TB, url string, attempt int) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(e.body))
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Blazelock-Webhooks/test")
	req.Header.Set(verify.HeaderTimestamp, ts)
	req.Header.Set(verify.HeaderSignature, verify.Sign(e.secret, ts, e.body))
	req.Header.Set(verify.HeaderID, e.id)
	req.Header.Set(verify.HeaderAttempt, strconv.Itoa(attempt))
	return req
}

// noRedirects is a client like the dispatcher's: 3xx is an answer, not a hop.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func do(t testing.TB, client *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func send(t testing.TB, url string, e event, attempt int) (*http.Response, string) {
	t.Helper()
	return do(t, noRedirects, e.request(t, url, attempt))
}

func TestAcceptsVerifiesAndDeduplicates(t *testing.T) {
	rc, srv := start(t, receiver.Config{})
	e1 := newEvent(integrationA, secretA, time.Now().Add(-20*time.Millisecond))
	e2 := newEvent(integrationB, secretB, time.Now())

	steps := []struct {
		name        string
		req         *http.Request
		wantStatus  int
		wantOutcome receiver.Outcome
	}{
		{"first attempt", e1.request(t, srv.URL+"/", 1), 200, receiver.OutcomeAccepted},
		{"same event again", e1.request(t, srv.URL+"/webhooks/a", 2), 200, receiver.OutcomeDuplicate},
		{"other integration, own secret", e2.request(t, srv.URL+"/webhooks/b/deeper", 1), 200, receiver.OutcomeAccepted},
		{"signed with the wrong integration's secret", func() *http.Request {
			bad := e2
			bad.secret = secretA
			return bad.request(t, srv.URL, 1)
		}(), 401, receiver.OutcomeRejected},
		{"tampered body", func() *http.Request {
			r := e1.request(t, srv.URL, 3)
			tampered := bytes.Replace(e1.body, []byte("1234"), []byte("4321"), 1)
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(tampered)), int64(len(tampered))
			return r
		}(), 401, receiver.OutcomeRejected},
		{"stale timestamp", func() *http.Request {
			r := e1.request(t, srv.URL, 4)
			ts := strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)
			r.Header.Set(verify.HeaderTimestamp, ts)
			r.Header.Set(verify.HeaderSignature, verify.Sign(secretA, ts, e1.body))
			return r
		}(), 401, receiver.OutcomeRejected},
	}
	for i, st := range steps {
		resp, body := do(t, noRedirects, st.req)
		if resp.StatusCode != st.wantStatus {
			t.Fatalf("%s: status %d (%s), want %d", st.name, resp.StatusCode, body, st.wantStatus)
		}
		got := rc.Deliveries()
		if len(got) != i+1 || got[i].Outcome != st.wantOutcome {
			t.Fatalf("%s: arrival %d outcome %+v, want %s", st.name, i, got[len(got)-1].Outcome, st.wantOutcome)
		}
	}

	s := rc.Stats()
	want := receiver.Stats{Received: 6, Verified: 3, Rejected: 3, Accepted: 2, Duplicates: 1,
		RejectedBy: map[string]int64{"invalid_signature": 2, "timestamp_too_old": 1}}
	if s.Received != want.Received || s.Verified != want.Verified || s.Rejected != want.Rejected ||
		s.Accepted != want.Accepted || s.Duplicates != want.Duplicates || s.Faulted != 0 || s.Abandoned != 0 ||
		fmt.Sprint(s.RejectedBy) != fmt.Sprint(want.RejectedBy) {
		t.Errorf("stats %+v, want %+v", s, want)
	}
	if s.Latency.Count != 2 || s.Latency.MinMillis <= 0 || s.Latency.MaxMillis < 20 || s.Latency.MaxMillis > 5000 {
		t.Errorf("latency %+v: want 2 samples, one of them ≥ 20 ms", s.Latency)
	}
	if rc.EventsSeen() != 2 {
		t.Errorf("EventsSeen = %d", rc.EventsSeen())
	}

	// What a test in another package reads back.
	a := rc.DeliveriesFor(e1.id)
	if len(a) != 4 {
		t.Fatalf("DeliveriesFor(e1) has %d arrivals, want 4", len(a))
	}
	first := a[0]
	if !first.Verified || first.Attempt != 1 || first.AttemptHeader != "1" || first.Path != "/" ||
		!bytes.Equal(first.Body, e1.body) || first.Envelope == nil || first.Envelope.IntegrationID != integrationA ||
		first.Header.Get("User-Agent") != "Blazelock-Webhooks/test" || first.Status != 200 ||
		first.Signature != verify.Sign(secretA, first.Timestamp, e1.body) || time.Since(first.ArrivedAt) > time.Minute {
		t.Errorf("first arrival %+v", first)
	}
	if a[1].Path != "/webhooks/a" || a[1].Attempt != 2 {
		t.Errorf("second arrival path %q attempt %d", a[1].Path, a[1].Attempt)
	}
	if a[2].Verified || a[2].Reason != "invalid_signature" || a[2].Envelope != nil || a[2].Status != 401 {
		t.Errorf("tampered arrival %+v", a[2])
	}
}

func TestRoutes(t *testing.T) {
	_, srv := start(t, receiver.Config{})
	e := newEvent(integrationA, secretA, time.Now())
	tests := []struct {
		method, path string
		signed       bool
		want         int
	}{
		{"POST", "/", true, 200},
		{"POST", "/webhooks", true, 200},
		{"POST", "/webhooks/integration-a", true, 200},
		{"POST", "/elsewhere", true, 404},
		{"GET", "/", false, 405},
		{"PUT", "/webhooks/x", false, 405},
		{"GET", "/healthz", false, 200},
		{"GET", "/stats", false, 200},
		{"GET", "/metrics", false, 200},
		{"GET", "/faults", false, 200},
		{"POST", "/", false, 401},
	}
	for _, tt := range tests {
		var req *http.Request
		if tt.signed {
			req = e.request(t, srv.URL+tt.path, 1)
		} else {
			req, _ = http.NewRequest(tt.method, srv.URL+tt.path, nil)
		}
		resp, body := do(t, noRedirects, req)
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s: %d (%s), want %d", tt.method, tt.path, resp.StatusCode, body, tt.want)
		}
	}
}

func TestStatusFaults(t *testing.T) {
	rc, srv := start(t, receiver.Config{})
	tests := []struct {
		name           string
		faults         receiver.Faults
		wantStatus     int
		wantRetryAfter string
		wantLocation   string
		wantOutcome    receiver.Outcome
	}{
		{"5xx", receiver.Faults{Status: 503}, 503, "", "", receiver.OutcomeFaultStatus},
		{"4xx", receiver.Faults{Status: 410}, 410, "", "", receiver.OutcomeFaultStatus},
		{"3xx with a Location to catch followers", receiver.Faults{Status: 302}, 302, "", "/webhooks/redirected", receiver.OutcomeFaultStatus},
		{"429 with Retry-After", receiver.Faults{RetryAfter: 120}, 429, "120", "", receiver.OutcomeFaultStatus},
		{"503 with Retry-After", receiver.Faults{Status: 503, RetryAfter: 7}, 503, "7", "", receiver.OutcomeFaultStatus},
		{"2xx status is success", receiver.Faults{Status: 202}, 202, "", "", receiver.OutcomeAccepted},
		{"healthy", receiver.Faults{}, 200, "", "", receiver.OutcomeAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := rc.SetFaults(tt.faults); err != nil {
				t.Fatal(err)
			}
			e := newEvent(integrationA, secretA, time.Now())
			resp, body := send(t, srv.URL, e, 1)
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Retry-After") != tt.wantRetryAfter ||
				resp.Header.Get("Location") != tt.wantLocation {
				t.Fatalf("got %d Retry-After %q Location %q (%s)", resp.StatusCode, resp.Header.Get("Retry-After"),
					resp.Header.Get("Location"), body)
			}
			if got := rc.DeliveriesFor(e.id); len(got) != 1 || got[0].Outcome != tt.wantOutcome || got[0].Status != tt.wantStatus {
				t.Fatalf("arrivals %+v", got)
			}
		})
	}
	if s := rc.Stats(); s.Faulted != 5 || s.Accepted != 2 {
		t.Errorf("stats %+v: want 5 faulted, 2 accepted", s)
	}
}

// A sender that follows redirects shows up on /webhooks/redirected.
func TestRedirectFaultExposesFollowers(t *testing.T) {
	rc, srv := start(t, receiver.Config{Faults: receiver.Faults{Status: 307, FailFirst: 1}})
	e := newEvent(integrationA, secretA, time.Now())
	resp, _ := do(t, http.DefaultClient, e.request(t, srv.URL, 1)) // follows: 307 keeps method and body
	if resp.StatusCode != 200 {
		t.Fatalf("followed redirect ended with %d", resp.StatusCode)
	}
	got := rc.DeliveriesFor(e.id)
	if len(got) != 2 || got[0].Status != 307 || got[1].Path != "/webhooks/redirected" || got[1].Outcome != receiver.OutcomeAccepted {
		t.Fatalf("arrivals %+v", got)
	}
}

func TestFailFirst(t *testing.T) {
	rc, srv := start(t, receiver.Config{Faults: receiver.Faults{FailFirst: 2}})
	e1 := newEvent(integrationA, secretA, time.Now())
	e2 := newEvent(integrationB, secretB, time.Now())
	sequence := []struct {
		e    event
		want int
	}{{e1, 500}, {e2, 500}, {e1, 500}, {e1, 200}, {e2, 500}, {e1, 200}, {e2, 200}}
	var statuses []int
	for i, s := range sequence {
		resp, _ := send(t, srv.URL, s.e, i+1)
		statuses = append(statuses, resp.StatusCode)
	}
	for i, s := range sequence {
		if statuses[i] != s.want {
			t.Fatalf("statuses %v, want the first 2 attempts of each event to fail", statuses)
		}
	}
	if s := rc.Stats(); s.Faulted != 4 || s.Accepted != 2 || s.Duplicates != 1 {
		t.Errorf("stats %+v", s)
	}

	// Combined with Retry-After: the first attempt is rate limited.
	if err := rc.SetFaults(receiver.Faults{FailFirst: 1, RetryAfter: 3}); err != nil {
		t.Fatal(err)
	}
	e3 := newEvent(integrationA, secretA, time.Now())
	if resp, _ := send(t, srv.URL, e3, 1); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
		t.Errorf("first attempt: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp, _ := send(t, srv.URL, e3, 2); resp.StatusCode != 200 {
		t.Errorf("second attempt: %d", resp.StatusCode)
	}
}

func TestDelay(t *testing.T) {
	rc, srv := start(t, receiver.Config{Faults: receiver.Faults{Delay: receiver.Duration(150 * time.Millisecond)}})
	e := newEvent(integrationA, secretA, time.Now())
	began := time.Now()
	if resp, _ := send(t, srv.URL, e, 1); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if took := time.Since(began); took < 150*time.Millisecond {
		t.Fatalf("answered after %s, want ≥ 150ms", took)
	}

	// A client that gives up first is counted as abandoned, not accepted.
	if err := rc.SetFaults(receiver.Faults{Delay: receiver.Duration(10 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	e2 := newEvent(integrationA, secretA, time.Now())
	impatient := &http.Client{Timeout: 100 * time.Millisecond}
	_, err := impatient.Do(e2.request(t, srv.URL, 1))
	var netErr interface{ Timeout() bool }
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("want a client timeout, got %v", err)
	}
	testinfra.WaitFor(t, 5*time.Second, "the abandoned request to be counted", func() bool {
		return rc.Stats().Abandoned == 1
	})
	if got := rc.DeliveriesFor(e2.id); len(got) != 1 || got[0].Outcome != receiver.OutcomeAbandoned {
		t.Fatalf("arrivals %+v", got)
	}
	if s := rc.Stats(); s.Accepted != 1 {
		t.Errorf("accepted %d, want 1", s.Accepted)
	}
}

func TestHang(t *testing.T) {
	rc, srv := start(t, receiver.Config{Faults: receiver.Faults{Hang: true}, MaxHang: 300 * time.Millisecond})

	t.Run("client times out", func(t *testing.T) {
		e := newEvent(integrationA, secretA, time.Now())
		client := &http.Client{Timeout: 100 * time.Millisecond}
		began := time.Now()
		_, err := client.Do(e.request(t, srv.URL, 1))
		var netErr interface{ Timeout() bool }
		if !errors.As(err, &netErr) || !netErr.Timeout() {
			t.Fatalf("want a client timeout, got %v", err)
		}
		if took := time.Since(began); took > 250*time.Millisecond {
			t.Errorf("client gave up after %s", took)
		}
		if got := rc.DeliveriesFor(e.id); len(got) != 1 || got[0].Outcome != receiver.OutcomeFaultHang || got[0].Status != 0 {
			t.Fatalf("arrivals %+v", got)
		}
	})

	t.Run("dropped after MaxHang", func(t *testing.T) {
		e := newEvent(integrationA, secretA, time.Now())
		began := time.Now()
		resp, err := http.DefaultClient.Do(e.request(t, srv.URL, 1))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got an answer %d, want the connection dropped", resp.StatusCode)
		}
		if took := time.Since(began); took < 300*time.Millisecond || took > 5*time.Second {
			t.Errorf("dropped after %s, want about MaxHang (300ms)", took)
		}
	})

	t.Run("Close releases hung requests", func(t *testing.T) {
		rc2, srv2 := start(t, receiver.Config{Faults: receiver.Faults{Hang: true}, MaxHang: time.Hour})
		e := newEvent(integrationA, secretA, time.Now())
		done := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(e.request(t, srv2.URL, 1))
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		testinfra.WaitFor(t, 5*time.Second, "the request to arrive", func() bool { return len(rc2.Deliveries()) == 1 })
		rc2.Close()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("hung request got an answer")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not release the hung request")
		}
	})
}

func TestReset(t *testing.T) {
	rc, srv := start(t, receiver.Config{Faults: receiver.Faults{Reset: true, FailFirst: 1}})
	e := newEvent(integrationA, secretA, time.Now())
	_, err := http.DefaultClient.Do(e.request(t, srv.URL, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("want connection reset by peer, got %v", err)
	}
	if resp, _ := send(t, srv.URL, e, 2); resp.StatusCode != 200 {
		t.Fatalf("second attempt %d, want 200 (FailFirst 1)", resp.StatusCode)
	}
	got := rc.DeliveriesFor(e.id)
	if len(got) != 2 || got[0].Outcome != receiver.OutcomeFaultReset || got[1].Outcome != receiver.OutcomeAccepted {
		t.Fatalf("arrivals %+v", got)
	}
}

// Faults never mask a verification failure.
func TestFaultsDoNotApplyToRefusedRequests(t *testing.T) {
	_, srv := start(t, receiver.Config{Faults: receiver.Faults{Reset: true}})
	e := newEvent(integrationA, secretA, time.Now())
	e.secret = "whsec_wrong"
	if resp, _ := send(t, srv.URL, e, 1); resp.StatusCode != 401 {
		t.Fatalf("status %d, want 401", resp.StatusCode)
	}
}

func TestPutFaults(t *testing.T) {
	rc, srv := start(t, receiver.Config{})
	put := func(body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/faults", strings.NewReader(body))
		resp, out := do(t, http.DefaultClient, req)
		return resp.StatusCode, out
	}
	if code, out := put(`{"status":503,"retry_after":30,"fail_first":2,"delay":"5ms"}`); code != 200 {
		t.Fatalf("valid PUT: %d %s", code, out)
	}
	want := receiver.Faults{Status: 503, RetryAfter: 30, FailFirst: 2, Delay: receiver.Duration(5 * time.Millisecond)}
	if rc.Faults() != want {
		t.Fatalf("faults %+v, want %+v", rc.Faults(), want)
	}
	resp, out := do(t, http.DefaultClient, mustRequest(t, http.MethodGet, srv.URL+"/faults"))
	if resp.StatusCode != 200 || strings.TrimSpace(out) != `{"status":503,"retry_after":30,"fail_first":2,"delay":"5ms"}` {
		t.Fatalf("GET /faults: %d %s", resp.StatusCode, out)
	}
	e := newEvent(integrationA, secretA, time.Now())
	if resp, _ := send(t, srv.URL, e, 1); resp.StatusCode != 503 {
		t.Fatalf("the PUT faults are not in effect: %d", resp.StatusCode)
	}

	for _, bad := range []string{
		`{"status":42}`, `{"status":600}`, `{"hang":true,"reset":true}`, `{"delay":5}`, `{"delay":"soon"}`,
		`{"retry_after":-1}`, `{"fail_first":-2}`, `{"statsu":500}`, `not json`, `{"status":500}{"status":502}`,
	} {
		if code, out := put(bad); code != 400 || !strings.Contains(out, "invalid_faults") {
			t.Errorf("PUT %s: %d %s, want 400 invalid_faults", bad, code, out)
		}
	}
	if rc.Faults() != want {
		t.Fatalf("a refused PUT changed the faults to %+v", rc.Faults())
	}
	if code, _ := put(`{}`); code != 200 || rc.Faults() != (receiver.Faults{}) {
		t.Fatalf("PUT {} did not clear the faults: %+v", rc.Faults())
	}
}

func TestStatsAndMetricsEndpoints(t *testing.T) {
	_, srv := start(t, receiver.Config{})
	for range 3 {
		send(t, srv.URL, newEvent(integrationA, secretA, time.Now()), 1)
	}
	e := newEvent(integrationA, secretA, time.Now())
	send(t, srv.URL, e, 1)
	send(t, srv.URL, e, 2)
	e.secret = secretB
	send(t, srv.URL, e, 3)
	unknown := newEvent("0195a0c1-ffff-7000-8000-000000000000", secretA, time.Now())
	send(t, srv.URL, unknown, 1)

	resp, out := do(t, http.DefaultClient, mustRequest(t, http.MethodGet, srv.URL+"/stats"))
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("/stats Content-Type %q", resp.Header.Get("Content-Type"))
	}
	var s receiver.Stats
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("/stats: %v: %s", err, out)
	}
	if s.Received != 7 || s.Verified != 5 || s.Accepted != 4 || s.Duplicates != 1 || s.Rejected != 2 ||
		s.RejectedBy["invalid_signature"] != 1 || s.RejectedBy["unknown_integration"] != 1 || s.Latency.Count != 4 {
		t.Errorf("/stats %s", out)
	}

	_, metrics := do(t, http.DefaultClient, mustRequest(t, http.MethodGet, srv.URL+"/metrics"))
	for _, line := range []string{
		"blazelock_receiver_received_total 7",
		"blazelock_receiver_verified_total 5",
		"blazelock_receiver_accepted_total 4",
		"blazelock_receiver_duplicates_total 1",
		"blazelock_receiver_faulted_total 0",
		`blazelock_receiver_rejected_total{reason="invalid_signature"} 1`,
		`blazelock_receiver_rejected_total{reason="unknown_integration"} 1`,
		`blazelock_receiver_rejected_total{reason="timestamp_too_old"} 0`,
		"blazelock_receiver_receive_latency_seconds_count 4",
		`blazelock_receiver_receive_latency_seconds_bucket{le="+Inf"} 4`,
		"go_goroutines ",
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

func TestSecretRotation(t *testing.T) {
	rc, srv := start(t, receiver.Config{})
	const rotated = "whsec_CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
	rc.SetSecret(integrationA, rotated)
	old := newEvent(integrationA, secretA, time.Now())
	if resp, _ := send(t, srv.URL, old, 1); resp.StatusCode != 401 {
		t.Errorf("old secret after rotation: %d", resp.StatusCode)
	}
	fresh := newEvent(integrationA, rotated, time.Now())
	if resp, _ := send(t, srv.URL, fresh, 1); resp.StatusCode != 200 {
		t.Errorf("new secret: %d", resp.StatusCode)
	}
	rc.RemoveSecret(integrationA)
	if resp, _ := send(t, srv.URL, newEvent(integrationA, rotated, time.Now()), 1); resp.StatusCode != 401 {
		t.Errorf("removed integration: %d", resp.StatusCode)
	}
	if got := rc.Deliveries(); got[len(got)-1].Reason != "unknown_integration" {
		t.Errorf("reason %q", got[len(got)-1].Reason)
	}
}

func TestBodyLimit(t *testing.T) {
	rc, srv := start(t, receiver.Config{MaxBodyBytes: 2048})
	e := newEvent(integrationA, secretA, time.Now())
	e.body = append(e.body[:len(e.body)-1], []byte(`,"pad":"`+strings.Repeat("x", 4096)+`"}`)...)
	if resp, body := send(t, srv.URL, e, 1); resp.StatusCode != 413 || !strings.Contains(body, "body_too_large") {
		t.Fatalf("status %d %s, want 413", resp.StatusCode, body)
	}
	if s := rc.Stats(); s.RejectedBy["body_too_large"] != 1 {
		t.Errorf("stats %+v", s)
	}
}

// Without the id header the body (byte-identical across attempts) is the key.
func TestDeduplicatesWithoutIDHeader(t *testing.T) {
	rc, srv := start(t, receiver.Config{})
	e := newEvent(integrationA, secretA, time.Now())
	for attempt := 1; attempt <= 2; attempt++ {
		req := e.request(t, srv.URL, attempt)
		req.Header.Del(verify.HeaderID)
		do(t, noRedirects, req)
	}
	if s := rc.Stats(); s.Accepted != 1 || s.Duplicates != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestInjectedClockGivesExactLatency(t *testing.T) {
	occurred := time.Now().Truncate(time.Millisecond)
	clock := occurred.Add(1500 * time.Millisecond)
	rc, srv := start(t, receiver.Config{Now: func() time.Time { return clock }})
	send(t, srv.URL, newEvent(integrationA, secretA, occurred), 1)
	l := rc.Stats().Latency
	if l.Count != 1 || l.MinMillis != 1500 || l.MaxMillis != 1500 || l.P50Millis != 1500 {
		t.Errorf("latency %+v, want exactly 1500ms", l)
	}
	if got := rc.Deliveries(); !got[0].ArrivedAt.Equal(clock) {
		t.Errorf("ArrivedAt %s, want the injected clock", got[0].ArrivedAt)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := receiver.New(receiver.Config{Secrets: map[string]string{integrationA: ""}}); err == nil {
		t.Error("empty secret accepted")
	}
	if _, err := receiver.New(receiver.Config{Faults: receiver.Faults{Status: 99}}); err == nil {
		t.Error("invalid faults accepted")
	}
}

// Many senders at once, with duplicates and failures mixed in: the counts add
// up (and -race checks the hot path).
func TestConcurrentSendersCountsAddUp(t *testing.T) {
	rc, srv := start(t, receiver.Config{Faults: receiver.Faults{FailFirst: 1}})
	const senders, eventsPerSender = 8, 40
	events := make([][]event, senders)
	for i := range events {
		for range eventsPerSender {
			events[i] = append(events[i], newEvent(integrationA, secretA, time.Now()))
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	t.Cleanup(client.CloseIdleConnections)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for _, e := range events[i] {
				for attempt := 1; attempt <= 3; attempt++ { // 1 fails, 2 accepted, 3 duplicate
					resp, err := client.Do(e.request(t, srv.URL, attempt))
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	const n = senders * eventsPerSender
	s := rc.Stats()
	if s.Received != 3*n || s.Verified != 3*n || s.Faulted != n || s.Accepted != n || s.Duplicates != n || s.Latency.Count != n {
		t.Errorf("stats %+v, want %d events each failed, accepted and duplicated once", s, n)
	}
	if len(rc.Deliveries()) != 3*n || rc.EventsSeen() != n {
		t.Errorf("%d arrivals, %d events", len(rc.Deliveries()), rc.EventsSeen())
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
