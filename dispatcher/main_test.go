package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/config"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// runOnce runs the program's entry point and returns its error; the context
// is never cancelled, so only start-up failures return.
func startupError(t *testing.T, env map[string]string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		done <- runMain(nil, envOf(env), strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the dispatcher started instead of failing")
		return nil
	}
}

func externalEnv(natsURL string) map[string]string {
	return map[string]string{
		"NATS_URL":               natsURL,
		"DISPATCHER_ADMIN_TOKEN": testAdminToken,
		"DISPATCHER_SECRET_KEY":  testSecretKey,
		"DISPATCHER_HTTP_ADDR":   "127.0.0.1:0",
	}
}

func TestStartupErrorsAreOneClearLine(t *testing.T) {
	noJetStream, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go noJetStream.Start()
	if !noJetStream.ReadyForConnections(5 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(noJetStream.Shutdown)

	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unreachable NATS", externalEnv("nats://127.0.0.1:" + itoa(testinfra.FreePort(t))), "cannot reach NATS at nats://127.0.0.1:"},
		{"NATS too old", externalEnv(fakeOldNATS(t, "2.9.10")), "is version 2.9.10; the dispatcher needs nats-server 2.12.0 or newer"},
		{"JetStream disabled", externalEnv(noJetStream.ClientURL()), "does not have JetStream enabled"},
		{"missing keys with external NATS", map[string]string{"NATS_URL": "nats://127.0.0.1:4222"}, "DISPATCHER_ADMIN_TOKEN is required with NATS_URL"},
		{"busy explicit embedded listener", map[string]string{
			"DISPATCHER_DATA_DIR": t.TempDir(), "DISPATCHER_NATS_LISTEN": busyAddr(t), "DISPATCHER_HTTP_ADDR": "127.0.0.1:0",
		}, "is already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := startupError(t, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "goroutine ") {
				t.Fatalf("error carries a stack trace: %v", err)
			}
		})
	}
}

// fakeOldNATS speaks just enough of the NATS protocol to announce an old
// server version, the way Debian's nats-server 2.9 would.
func fakeOldNATS(t *testing.T, version string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				info, _ := json.Marshal(map[string]any{"server_id": "FAKE", "version": version, "proto": 1, "max_payload": 1 << 20, "headers": true})
				conn.Write([]byte("INFO " + string(info) + "\r\n"))
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(line, "PING") {
						conn.Write([]byte("PONG\r\n"))
					}
				}
			}()
		}
	}()
	return "nats://" + l.Addr().String()
}

func busyAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// TestEmbeddedDefault is the README's first command: no NATS_URL, no Redis.
// It answers /healthz and /readyz, keeps its generated keys in the data
// dir, and `dispatcher publish` with no address finds it: the event lands
// in BLAZELOCK_EVENTS.
func TestEmbeddedDefault(t *testing.T) {
	dataDir := t.TempDir()
	env := map[string]string{"DISPATCHER_DATA_DIR": dataDir, "DISPATCHER_HTTP_ADDR": "127.0.0.1:0", "DISPATCHER_NATS_LISTEN": "127.0.0.1:0"}
	cfg := config.Load(envOf(env))
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := start(context.Background(), cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.close(context.Background()) })

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + a.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	for _, name := range []string{"admin-token", "secret-key"} {
		info, err := os.Stat(filepath.Join(dataDir, name))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s not kept with mode 0600: %v", name, err)
		}
	}

	// No -nats and no NATS_URL: publish finds the embedded server (on a
	// random port here, as when 4222 is busy) through the data dir.
	var out bytes.Buffer
	err = runMain([]string{"publish", "-integration", "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01", "-event", "file_scan.completed", "-sample"},
		envOf(map[string]string{"DISPATCHER_DATA_DIR": dataDir}), strings.NewReader(""), &out, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("publish command: %v", err)
	}
	var res struct {
		EventID  string `json:"event_id"`
		Sequence uint64 `json:"stream_sequence"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Sequence == 0 {
		t.Fatalf("publish output %q: %v", out.String(), err)
	}
	nc, err := nats.Connect(a.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(context.Background(), natsinfra.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetMsg(context.Background(), res.Sequence)
	if err != nil || msg.Header.Get(jetstream.MsgIDHeader) != res.EventID {
		t.Fatalf("published event not in BLAZELOCK_EVENTS: %v", err)
	}
}
