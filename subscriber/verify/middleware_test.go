package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/verify"
)

// seen is what the protected handler observed.
type seen struct {
	mu     sync.Mutex
	events []*verify.Event
	bodies [][]byte
}

func (s *seen) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, ok := verify.EventFromContext(r.Context())
		if !ok {
			http.Error(w, "no event in context", http.StatusInternalServerError)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.mu.Lock()
		s.events = append(s.events, ev)
		s.bodies = append(s.bodies, body)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *seen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

type rejection struct {
	mu   sync.Mutex
	errs []error
}

func (rj *rejection) record(_ *http.Request, err error) {
	rj.mu.Lock()
	rj.errs = append(rj.errs, err)
	rj.mu.Unlock()
}

func (rj *rejection) last() error {
	rj.mu.Lock()
	defer rj.mu.Unlock()
	if len(rj.errs) == 0 {
		return nil
	}
	return rj.errs[len(rj.errs)-1]
}

func post(t *testing.T, url string, h http.Header, body []byte) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]string
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("error response Content-Type %q", ct)
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Errorf("error body %q is not a JSON object of strings: %v", raw, err)
		}
	}
	return resp.StatusCode, out
}

func signed(secret, timestamp string, body []byte) http.Header {
	h := header(timestamp, verify.Sign(secret, timestamp, body))
	h.Set(verify.HeaderID, "0195a0c1-0000-7000-8000-000000000001")
	h.Set(verify.HeaderAttempt, "3")
	return h
}

func TestMiddleware(t *testing.T) {
	const otherIntegration = "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c02"
	secrets := map[string]string{vectorIntegrate: vectorSecret, otherIntegration: "whsec_other_secret"}
	lookupDown := errors.New("secret store down")

	var rejected rejection
	var got seen
	var lookupErr error // set by the "lookup fails" case; tests run sequentially
	auth := &verify.Authenticator{
		Secrets: func(ctx context.Context, id string) (string, error) {
			if lookupErr != nil {
				return "", lookupErr
			}
			return verify.StaticSecrets(secrets)(ctx, id)
		},
		Verifier:     verify.Verifier{Now: fixedClock(vectorTime)},
		MaxBodyBytes: 4096,
		OnReject:     rejected.record,
	}
	srv := httptest.NewServer(auth.Middleware(got.handler()))
	t.Cleanup(srv.Close)

	body := []byte(vectorBody)
	otherBody := []byte(strings.Replace(vectorBody, vectorIntegrate, otherIntegration, 1))
	notJSON := []byte("not json at all")
	noOccurredAt := []byte(`{"event":"file_scan.submitted","integration_id":"` + vectorIntegrate + `","data":{}}`)
	big := []byte(`{"integration_id":"` + vectorIntegrate + `","pad":"` + strings.Repeat("x", 5000) + `"}`)

	tests := []struct {
		name       string
		header     http.Header
		body       []byte
		lookupErr  error
		wantStatus int
		wantCode   string
		wantReject error // detailed error OnReject must see
	}{
		{"spec vector", signed(vectorSecret, vectorTimestamp, body), body, nil, http.StatusNoContent, "", nil},
		{"second integration with its own secret", signed("whsec_other_secret", vectorTimestamp, otherBody), otherBody, nil, http.StatusNoContent, "", nil},
		{"uppercase signature", header(vectorTimestamp, strings.ToUpper(vectorSignature)), body, nil, http.StatusNoContent, "", nil},
		{"signed with the other integration's secret", signed("whsec_other_secret", vectorTimestamp, body), body, nil, http.StatusUnauthorized, verify.CodeInvalidSignature, verify.ErrBadSignature},
		{"tampered body", signed(vectorSecret, vectorTimestamp, body), bytes.Replace(body, []byte("245761"), []byte("245762"), 1), nil, http.StatusUnauthorized, verify.CodeInvalidSignature, verify.ErrBadSignature},
		{"unknown integration", signed(vectorSecret, vectorTimestamp, []byte(strings.Replace(vectorBody, vectorIntegrate, "nope", 1))), []byte(strings.Replace(vectorBody, vectorIntegrate, "nope", 1)), nil, http.StatusUnauthorized, verify.CodeInvalidSignature, verify.ErrUnknownIntegration},
		{"body is not JSON: no integration to look up", signed(vectorSecret, vectorTimestamp, notJSON), notJSON, nil, http.StatusUnauthorized, verify.CodeInvalidSignature, verify.ErrUnknownIntegration},
		{"missing signature", header(vectorTimestamp, ""), body, nil, http.StatusUnauthorized, verify.CodeMissingHeader, verify.ErrMissingHeader},
		{"missing timestamp", header("", vectorSignature), body, nil, http.StatusUnauthorized, verify.CodeMissingHeader, verify.ErrMissingHeader},
		{"malformed timestamp", header("yesterday", vectorSignature), body, nil, http.StatusUnauthorized, verify.CodeMalformedTimestamp, verify.ErrMalformedTimestamp},
		{"stale", signed(vectorSecret, "1773059000", body), body, nil, http.StatusUnauthorized, verify.CodeTimestampTooOld, verify.ErrTimestampTooOld},
		{"future", signed(vectorSecret, "1773060000", body), body, nil, http.StatusUnauthorized, verify.CodeTimestampInFuture, verify.ErrTimestampInFuture},
		{"over the size limit", signed(vectorSecret, vectorTimestamp, big), big, nil, http.StatusRequestEntityTooLarge, verify.CodeBodyTooLarge, verify.ErrBodyTooLarge},
		{"verified but not an envelope", signed(vectorSecret, vectorTimestamp, noOccurredAt), noOccurredAt, nil, http.StatusBadRequest, verify.CodeMalformedEnvelope, verify.ErrMalformedEnvelope},
		{"secret lookup fails: retryable", signed(vectorSecret, vectorTimestamp, body), body, lookupDown, http.StatusServiceUnavailable, verify.CodeUnavailable, lookupDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookupErr = tt.lookupErr
			before := got.count()
			status, errBody := post(t, srv.URL, tt.header, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %v, rejection %v)", status, tt.wantStatus, errBody, rejected.last())
			}
			if tt.wantCode == "" {
				if got.count() != before+1 {
					t.Fatal("handler not called for a verified request")
				}
				return
			}
			if got.count() != before {
				t.Fatal("handler called for a refused request")
			}
			if errBody["code"] != tt.wantCode || errBody["message"] == "" {
				t.Errorf("error body %v, want code %q and a message", errBody, tt.wantCode)
			}
			if !errors.Is(rejected.last(), tt.wantReject) {
				t.Errorf("OnReject saw %v, want %v", rejected.last(), tt.wantReject)
			}
			// The client learns the class, not the internals.
			for _, secretish := range []string{vectorSecret, "whsec_other_secret", "secret store down", "nope", vectorIntegrate} {
				if strings.Contains(errBody["message"], secretish) {
					t.Errorf("error message %q leaks %q", errBody["message"], secretish)
				}
			}
		})
	}

	// What the next handler received for the test vector.
	got.mu.Lock()
	defer got.mu.Unlock()
	ev, raw := got.events[0], got.bodies[0]
	if string(raw) != vectorBody || string(ev.Body) != vectorBody {
		t.Errorf("raw body not passed through unchanged: %q", raw)
	}
	want := schemas.Envelope{
		Event:         schemas.EventSubmitted,
		IntegrationID: vectorIntegrate,
		OccurredAt:    schemas.At(time.Date(2026, 3, 9, 12, 34, 56, 0, time.UTC)),
	}
	if ev.Envelope.Event != want.Event || ev.Envelope.IntegrationID != want.IntegrationID || !ev.Envelope.OccurredAt.Equal(want.OccurredAt.Time) {
		t.Errorf("envelope %+v, want %+v", ev.Envelope, want)
	}
	var scan schemas.FileScan
	if err := json.Unmarshal(ev.Envelope.Data, &scan); err != nil || scan.ID != "019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1" || scan.FileSize != 245761 {
		t.Errorf("data decodes to %+v (%v)", scan, err)
	}
	if ev.WebhookID != "0195a0c1-0000-7000-8000-000000000001" || ev.Attempt != 3 || !ev.SentAt.Equal(vectorTime) {
		t.Errorf("event headers: id %q attempt %d sentAt %s", ev.WebhookID, ev.Attempt, ev.SentAt)
	}
	if got.events[2].Attempt != 0 || got.events[2].WebhookID != "" {
		t.Errorf("absent id/attempt headers: got %q/%d", got.events[2].WebhookID, got.events[2].Attempt)
	}
}

func TestMiddlewareUnknownLengthBodyOverLimit(t *testing.T) {
	var got seen
	auth := &verify.Authenticator{Secrets: verify.FixedSecret(vectorSecret), MaxBodyBytes: 100}
	srv := httptest.NewServer(auth.Middleware(got.handler()))
	t.Cleanup(srv.Close)

	for _, size := range []int{100, 101, 5000} {
		body := bytes.Repeat([]byte("x"), size)
		// A pipe hides the length, so the request is sent chunked and the
		// limit must be enforced while reading, not from Content-Length.
		pr, pw := io.Pipe()
		go func() { _, _ = pw.Write(body); _ = pw.Close() }()
		req, _ := http.NewRequest(http.MethodPost, srv.URL, pr)
		ts := unixNow()
		req.Header = signed(vectorSecret, ts, body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusRequestEntityTooLarge
		if size <= 100 {
			want = http.StatusBadRequest // within the limit, verified, but not an envelope
		}
		if resp.StatusCode != want {
			t.Errorf("%d-byte chunked body: status %d, want %d", size, resp.StatusCode, want)
		}
	}
	if got.count() != 0 {
		t.Fatal("handler called")
	}
}

func TestAuthenticatorWithoutSecrets(t *testing.T) {
	auth := &verify.Authenticator{Verifier: verify.Verifier{Now: fixedClock(vectorTime)}}
	_, err := auth.Authenticate(context.Background(), header(vectorTimestamp, vectorSignature), []byte(vectorBody))
	if !errors.Is(err, verify.ErrNoSecret) {
		t.Fatalf("got %v, want ErrNoSecret", err)
	}
	// An empty secret from the lookup must not let an HMAC keyed with "" through.
	auth.Secrets = verify.FixedSecret("")
	empty := verify.Sign("", vectorTimestamp, []byte(vectorBody))
	if _, err := auth.Authenticate(context.Background(), header(vectorTimestamp, empty), []byte(vectorBody)); !errors.Is(err, verify.ErrNoSecret) {
		t.Fatalf("empty secret: got %v, want ErrNoSecret", err)
	}
}

func TestStaticSecretsCopiesTheMap(t *testing.T) {
	m := map[string]string{"a": "whsec_a"}
	lookup := verify.StaticSecrets(m)
	m["a"] = "whsec_changed"
	m["b"] = "whsec_b"
	if s, err := lookup(context.Background(), "a"); err != nil || s != "whsec_a" {
		t.Errorf("lookup a = %q, %v", s, err)
	}
	if _, err := lookup(context.Background(), "b"); !errors.Is(err, verify.ErrUnknownIntegration) {
		t.Errorf("lookup b: %v", err)
	}
}

func TestReasonDistinguishesUnknownIntegration(t *testing.T) {
	tests := map[error]string{
		verify.ErrBadSignature:                  verify.CodeInvalidSignature,
		verify.ErrUnknownIntegration:            "unknown_integration",
		verify.ErrNoSecret:                      "no_secret",
		&verify.MissingHeaderError{Header: "X"}: verify.CodeMissingHeader,
		verify.ErrTimestampTooOld:               verify.CodeTimestampTooOld,
		errors.New("redis: connection refused"): verify.CodeUnavailable,
		verify.ErrBodyTooLarge:                  verify.CodeBodyTooLarge,
		verify.ErrMalformedEnvelope:             verify.CodeMalformedEnvelope,
		verify.ErrTimestampInFuture:             verify.CodeTimestampInFuture,
		verify.ErrMalformedTimestamp:            verify.CodeMalformedTimestamp,
	}
	for err, want := range tests {
		if got := verify.Reason(err); got != want {
			t.Errorf("Reason(%v) = %q, want %q", err, got, want)
		}
	}
}

func unixNow() string { return strconv.FormatInt(time.Now().Unix(), 10) }
