package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbe(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"not ready"}`))
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(ok.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()

	// An address nothing listens on: take a port, then free it.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	_ = closed.Close()

	tests := []struct {
		name    string
		args    []string
		wantErr string // "" means success
	}{
		{"http 200", []string{ok.URL + "/healthz"}, ""},
		{"http 503 names the status and body", []string{ok.URL + "/readyz"}, "503 Service Unavailable {\"status\":\"not ready\"}"},
		{"http refused", []string{"http://" + closedAddr + "/"}, "connection refused"},
		{"tcp open", []string{"tcp://" + ln.Addr().String()}, ""},
		{"tcp refused", []string{"tcp://" + closedAddr}, "connection refused"},
		{"unknown scheme", []string{"udp://127.0.0.1:1"}, "not supported"},
		{"no host", []string{"/readyz"}, "want http://"},
		{"no target", nil, "exactly one target"},
		{"two targets", []string{ok.URL, ok.URL}, "exactly one target"},
		{"bad timeout", []string{"-timeout", "soon", ok.URL}, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(tt.args, &stderr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("run(%q) = %v, want success", tt.args, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("run(%q) succeeded, want an error containing %q", tt.args, tt.wantErr)
			}
			if msg := err.Error() + stderr.String(); !strings.Contains(msg, tt.wantErr) {
				t.Fatalf("run(%q) = %q, want it to contain %q", tt.args, msg, tt.wantErr)
			}
		})
	}
}
