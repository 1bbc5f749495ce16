package target

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestDialControl(t *testing.T) {
	tests := []struct {
		network, address string
		wantDefault      bool // allowed
		wantPrivate      bool
	}{
		{"tcp4", "93.184.216.34:443", true, true},
		{"tcp6", "[2606:4700::1111]:443", true, true},
		{"tcp4", "127.0.0.1:8080", false, true},
		{"tcp6", "[::1]:8080", false, true},
		{"tcp6", "[::ffff:127.0.0.1]:80", false, true},
		{"tcp4", "10.0.0.1:443", false, true},
		{"tcp4", "169.254.169.254:80", false, false},
		{"tcp6", "[fd00:ec2::254]:80", false, false},
		{"tcp6", "[fe80::1%eth0]:80", false, false},
		{"tcp6", "[64:ff9b::a9fe:a9fe]:80", false, false},
		{"tcp4", "0.0.0.0:80", false, false},
		{"unix", "/var/run/docker.sock", false, false},
		{"tcp", "example.com:443", false, false}, // unresolved names never reach Control; fail closed
	}
	for _, tt := range tests {
		for _, mode := range []struct {
			p    Policy
			want bool
		}{{Policy{}, tt.wantDefault}, {Policy{AllowPrivate: true}, tt.wantPrivate}} {
			err := mode.p.DialControl(tt.network, tt.address, nil)
			if (err == nil) != mode.want {
				t.Errorf("%+v DialControl(%s, %s) = %v, want allowed=%v", mode.p, tt.network, tt.address, err, mode.want)
			}
			if err != nil && !errors.Is(err, ErrRefused) {
				t.Errorf("%+v DialControl(%s, %s) = %v, want it to match ErrRefused", mode.p, tt.network, tt.address, err)
			}
		}
	}
}

// TestDialerAgainstRealServer connects an http.Client whose transport uses
// NewDialer to a real server on 127.0.0.1: refused at connect time by
// default (no request reaches the server), delivered with AllowPrivate.
func TestDialerAgainstRealServer(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	srvURL, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// The same server by name: the dialer resolves localhost itself (from
	// /etc/hosts) and Control sees the resulting loopback addresses, as it
	// would a rebound DNS name.
	byName := "http://localhost:" + srvURL.Port() + "/"
	if _, err := net.DefaultResolver.LookupHost(t.Context(), "localhost"); err != nil {
		t.Fatalf("this test needs localhost to resolve: %v", err)
	}

	client := func(p Policy) *http.Client {
		tr := &http.Transport{Proxy: nil, DialContext: NewDialer(p, 2*time.Second).DialContext}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}
	}

	for _, u := range []string{srv.URL, byName} {
		resp, err := client(Policy{}).Get(u)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("default policy: GET %s succeeded with %s, want refused at connect", u, resp.Status)
		}
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("default policy: GET %s error %v does not match ErrRefused", u, err)
		}
		addrErr, ok := errors.AsType[*AddrError](err)
		if !ok || !addrErr.Addr.IsLoopback() || !strings.Contains(addrErr.Class, "loopback") {
			t.Fatalf("default policy: GET %s error %v, want an *AddrError for a loopback address", u, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("server received %d requests under the default policy, want 0", n)
	}

	for _, u := range []string{srv.URL, byName} {
		resp, err := client(Policy{AllowPrivate: true}).Get(u)
		if err != nil {
			t.Fatalf("private policy: GET %s: %v", u, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("private policy: GET %s = %s, want 204", u, resp.Status)
		}
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("server received %d requests under the private policy, want 2", n)
	}
}

func TestNewDialer(t *testing.T) {
	d := NewDialer(Policy{}, 3*time.Second)
	if d.Timeout != 3*time.Second || d.Control == nil {
		t.Fatalf("NewDialer = %+v, want timeout 3s and a Control hook", d)
	}
}
