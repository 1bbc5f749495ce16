package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/subscriber/receiver"
	"github.com/blazelock/webhooks/subscriber/verify"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseOptions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secrets")
	if err := os.WriteFile(file, []byte("# integration secrets\n\nfile-only = whsec_file\nshared=whsec_from_file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "bad")
	if err := os.WriteFile(badFile, []byte("ok=whsec_ok\nnot a pair\n=whsec_noid\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		args        []string
		env         map[string]string
		wantAddr    string
		wantSecrets map[string]string
		wantFaults  receiver.Faults
		wantErr     []string // substrings, all must appear
	}{
		{
			name:        "flags",
			args:        []string{"-secret", "a=whsec_a", "-secret", "b=whsec_b=with=equals"},
			wantAddr:    "127.0.0.1:9000",
			wantSecrets: map[string]string{"a": "whsec_a", "b": "whsec_b=with=equals"},
		},
		{
			name:        "env",
			env:         map[string]string{"SUBSCRIBER_ADDR": "127.0.0.1:9100", "SUBSCRIBER_SECRETS": "a=whsec_a, b = whsec_b"},
			wantAddr:    "127.0.0.1:9100",
			wantSecrets: map[string]string{"a": "whsec_a", "b": "whsec_b"},
		},
		{
			name:        "file, env and flags merge; flags win, then env",
			args:        []string{"-secrets-file", file, "-secret", "shared=whsec_from_flag", "-addr", "127.0.0.1:0"},
			env:         map[string]string{"SUBSCRIBER_ADDR": "ignored:1", "SUBSCRIBER_SECRETS": "shared=whsec_from_env,env-only=whsec_env"},
			wantAddr:    "127.0.0.1:0",
			wantSecrets: map[string]string{"file-only": "whsec_file", "shared": "whsec_from_flag", "env-only": "whsec_env"},
		},
		{
			name:        "secrets file from env",
			env:         map[string]string{"SUBSCRIBER_SECRETS_FILE": file},
			wantAddr:    "127.0.0.1:9000",
			wantSecrets: map[string]string{"file-only": "whsec_file", "shared": "whsec_from_file"},
		},
		{
			name:        "fault flags",
			args:        []string{"-secret", "a=whsec_a", "-status", "503", "-retry-after", "30", "-fail-first", "2", "-delay", "250ms"},
			wantAddr:    "127.0.0.1:9000",
			wantSecrets: map[string]string{"a": "whsec_a"},
			wantFaults:  receiver.Faults{Status: 503, RetryAfter: 30, FailFirst: 2, Delay: receiver.Duration(250 * time.Millisecond)},
		},
		{name: "no secrets", wantErr: []string{"no secrets"}},
		{
			name:    "every problem at once, secrets never echoed",
			args:    []string{"-secrets-file", badFile, "-secret", "x", "-hang", "-reset", "-status", "42", "-log-format", "xml"},
			env:     map[string]string{"SUBSCRIBER_SECRETS": "y=whsec_y,=whsec_leak"},
			wantErr: []string{"line 2", "line 3", "-secret", "SUBSCRIBER_SECRETS entry 2", "hang and reset", "status 42", "-log-format"},
		},
		{name: "missing secrets file", args: []string{"-secrets-file", filepath.Join(dir, "absent")}, wantErr: []string{"read secrets file"}},
		{name: "stray argument", args: []string{"-secret", "a=whsec_a", "extra"}, wantErr: []string{"unexpected arguments"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args, env(tt.env), io.Discard)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("want an error, got options %+v", o)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				for _, leak := range []string{"whsec_noid", "whsec_leak", "whsec_ok"} {
					if strings.Contains(err.Error(), leak) {
						t.Errorf("error %q repeats a secret", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.addr != tt.wantAddr || !maps.Equal(o.secrets, tt.wantSecrets) || o.cfg.Faults != tt.wantFaults {
				t.Errorf("got addr %q secrets %v faults %+v", o.addr, o.secrets, o.cfg.Faults)
			}
			if o.cfg.Tolerance != verify.DefaultTolerance || o.cfg.MaxBodyBytes != verify.DefaultMaxBodyBytes {
				t.Errorf("defaults: tolerance %s max body %d", o.cfg.Tolerance, o.cfg.MaxBodyBytes)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := parseOptions([]string{"-h"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "-fail-first") || !strings.Contains(out.String(), "SUBSCRIBER_SECRETS") {
		t.Fatalf("help: %v\n%s", err, out.String())
	}
}

// The program end to end: listens, verifies, logs one JSON line per webhook,
// serves /stats and PUT /faults, and stops cleanly on cancellation.
func TestRunServesAndStops(t *testing.T) {
	const id, secret = "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01", "whsec_test_fixture_secret"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testinfra.LogBuffer
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-log-format", "json", "-secret", id + "=" + secret},
			env(nil), &logs, func(addr string) { addrs <- addr })
	}()
	var base string
	select {
	case addr := <-addrs:
		base = "http://" + addr
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not start listening")
	}

	body := []byte(`{"event":"file_scan.submitted","integration_id":"` + id + `","occurred_at":"` +
		time.Now().UTC().Format("2006-01-02T15:04:05.000Z") + `","data":{"id":"x"}}`)
	post := func(sig string) int {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		if sig == "" {
			sig = verify.Sign(secret, ts, body)
		}
		req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/demo", bytes.NewReader(body))
		req.Header.Set(verify.HeaderTimestamp, ts)
		req.Header.Set(verify.HeaderSignature, sig)
		req.Header.Set(verify.HeaderID, "01958a2b-0000-7000-8000-000000000001")
		req.Header.Set(verify.HeaderAttempt, "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(""); code != 200 {
		t.Fatalf("signed webhook: %d", code)
	}
	if code := post(strings.Repeat("0", 64)); code != 401 {
		t.Fatalf("forged webhook: %d", code)
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/faults", strings.NewReader(`{"status":503}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT /faults: %v %v", resp, err)
	}
	if code := post(""); code != 503 {
		t.Fatalf("after PUT /faults: %d", code)
	}
	resp, err := http.Get(base + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var s receiver.Stats
	err = json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	if err != nil || s.Received != 3 || s.Accepted != 1 || s.Rejected != 1 || s.Faulted != 1 {
		t.Fatalf("stats %+v (%v)", s, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}

	// One JSON log line per webhook, with the fields an operator greps for,
	// and never the secret.
	var webhookLines int
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["msg"] == "webhook" {
			webhookLines++
			if rec["event_id"] != "01958a2b-0000-7000-8000-000000000001" || rec["outcome"] == nil || rec["status"] == nil {
				t.Errorf("webhook log line lacks fields: %s", line)
			}
		}
	}
	if webhookLines != 3 {
		t.Errorf("%d webhook log lines, want 3:\n%s", webhookLines, logs.String())
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("the secret was logged")
	}
}

func TestRunReportsBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = run(context.Background(), []string{"-addr", ln.Addr().String(), "-secret", "a=whsec_a"}, env(nil), io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("busy address: %v", err)
	}
}
