package deliver_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/sign"
	"github.com/blazelock/webhooks/dispatcher/target"
)

const body = `{"event":"file_scan.submitted"}`

func sender(p target.Policy, timeout time.Duration) *deliver.Sender {
	return deliver.New(deliver.Options{
		DialContext:     target.NewDialer(p, time.Second).DialContext,
		IsRefusedTarget: func(err error) bool { return errors.Is(err, target.ErrRefused) },
		AttemptTimeout:  timeout,
		UserAgent:       "Blazelock-Webhooks/test",
	})
}

func TestSendSignsAndSetsHeaders(t *testing.T) {
	var got *http.Request
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		gotBody, _ = io.ReadAll(r.Body)
		io.WriteString(w, "thanks")
	}))
	defer srv.Close()
	res := sender(target.Policy{AllowPrivate: true}, time.Second).Send(context.Background(),
		deliver.Request{URL: srv.URL, Secret: "whsec_x", EventID: "ev-1", Attempt: 3, Body: []byte(body)})
	if !res.OK() || res.StatusCode != 200 || string(res.Excerpt) != "thanks" {
		t.Fatalf("unexpected result %+v", res)
	}
	ts, err := strconv.ParseInt(got.Header.Get(deliver.HeaderTimestamp), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if want := sign.Signature("whsec_x", ts, []byte(body)); got.Header.Get(deliver.HeaderSignature) != want {
		t.Fatal("signature does not match docs/contract.md, Signature, over the sent body")
	}
	for h, want := range map[string]string{
		"Content-Type": "application/json", "User-Agent": "Blazelock-Webhooks/test",
		deliver.HeaderID: "ev-1", deliver.HeaderAttempt: "3",
	} {
		if v := got.Header.Get(h); v != want {
			t.Errorf("%s = %q, want %q", h, v, want)
		}
	}
	if string(gotBody) != body || got.Method != http.MethodPost {
		t.Fatalf("sent %s %q", got.Method, gotBody)
	}
}

func TestSendClassifiesOutcomes(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.PathValue("code"))
		if code == 301 {
			w.Header().Set("Location", "/status/200")
		}
		if code == 429 || code == 503 {
			w.Header().Set("Retry-After", "120")
		}
		w.WriteHeader(code)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { time.Sleep(700 * time.Millisecond) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", deliver.MaxExcerptBytes+1000))
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	})
	var redirected atomic.Int32
	mux.HandleFunc("/status/200", func(w http.ResponseWriter, r *http.Request) { redirected.Add(1) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	s := sender(target.Policy{AllowPrivate: true}, 300*time.Millisecond)
	for _, tc := range []struct {
		url        string
		class      string
		status     int
		retryAfter time.Duration
	}{
		{srv.URL + "/status/204", deliver.ClassSuccess, 204, 0},
		{srv.URL + "/status/301", deliver.ClassRedirect, 301, 0},
		{srv.URL + "/status/404", deliver.ClassClientError, 404, 0},
		{srv.URL + "/status/429", deliver.ClassRateLimited, 429, 120 * time.Second},
		{srv.URL + "/status/503", deliver.ClassServerError, 503, 120 * time.Second},
		{srv.URL + "/status/500", deliver.ClassServerError, 500, 0},
		{srv.URL + "/slow", deliver.ClassTimeout, 0, 0},
		{srv.URL + "/reset", deliver.ClassReset, 0, 0},
		{closedURL, deliver.ClassRefused, 0, 0},
		{"https://no-such-host.invalid/", deliver.ClassDNS, 0, 0},
		{srv.URL + "/big", deliver.ClassSuccess, 200, 0},
	} {
		res := s.Send(context.Background(), deliver.Request{URL: tc.url, Secret: "whsec_x", EventID: "e", Attempt: 1, Body: []byte(body)})
		if res.Class != tc.class || res.StatusCode != tc.status || res.RetryAfter != tc.retryAfter {
			t.Errorf("%s: class %s status %d retry-after %s (err %v), want %s %d %s", tc.url, res.Class, res.StatusCode, res.RetryAfter, res.Err, tc.class, tc.status, tc.retryAfter)
		}
		if len(res.Excerpt) > deliver.MaxExcerptBytes {
			t.Errorf("%s: excerpt of %d bytes exceeds the limit", tc.url, len(res.Excerpt))
		}
		if res.Err != nil && strings.Contains(res.Err.Error(), "http://") {
			t.Errorf("%s: error repeats the URL: %v", tc.url, res.Err)
		}
	}
	if redirected.Load() != 0 {
		t.Fatal("a redirect was followed")
	}
}

func TestSendRefusesPrivateTargetsAtConnectTime(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	for _, url := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		res := sender(target.Policy{}, time.Second).Send(context.Background(), deliver.Request{URL: url, Secret: "s", Body: []byte(body)})
		if res.Class != deliver.ClassSSRF {
			t.Fatalf("%s: class %s (%v), want %s", url, res.Class, res.Err, deliver.ClassSSRF)
		}
	}
	if hits.Load() != 0 {
		t.Fatal("the private endpoint was reached")
	}
}

// TestConnectRetries: a connection that could not be made is tried again
// within the same attempt (an endpoint restarting answers the retry), up to
// connectRetries times; an address the SSRF rule refuses is not.
func TestConnectRetries(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // refused until the server below starts
	refusedTarget := errors.New("refused by policy")
	var dials atomic.Int32
	var refuse atomic.Bool
	// A sender per case: none reuses another's pooled connection.
	send := func() deliver.Result {
		s := deliver.New(deliver.Options{
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				dials.Add(1)
				if refuse.Load() {
					return nil, &net.OpError{Op: "dial", Net: network, Err: refusedTarget}
				}
				return (&net.Dialer{}).DialContext(ctx, network, a)
			},
			IsRefusedTarget: func(err error) bool { return errors.Is(err, refusedTarget) },
			AttemptTimeout:  5 * time.Second,
		})
		return s.Send(context.Background(), deliver.Request{URL: "http://" + addr + "/hook", Secret: "whsec_x", EventID: "e", Attempt: 1, Body: []byte(body)})
	}

	if res := send(); res.Class != deliver.ClassRefused || dials.Load() != 3 {
		t.Errorf("nothing listening: class %s after %d dials, want %s after 3", res.Class, dials.Load(), deliver.ClassRefused)
	}

	dials.Store(0)
	started := make(chan *http.Server, 1)
	go func() {
		time.Sleep(150 * time.Millisecond) // the endpoint comes back between the first try and a retry
		l, err := net.Listen("tcp", addr)
		if err != nil {
			started <- nil
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
		started <- srv
		_ = srv.Serve(l)
	}()
	res := send()
	if srv := <-started; srv != nil {
		defer srv.Close()
	} else {
		t.Fatalf("could not listen on %s again: another process took the port", addr)
	}
	if !res.OK() || dials.Load() < 2 {
		t.Errorf("restarting endpoint: class %s after %d dials, want success after a retry", res.Class, dials.Load())
	}

	dials.Store(0)
	refuse.Store(true)
	if res := send(); res.Class != deliver.ClassSSRF || dials.Load() != 1 {
		t.Errorf("refused target: class %s after %d dials, want %s after 1", res.Class, dials.Load(), deliver.ClassSSRF)
	}
}
