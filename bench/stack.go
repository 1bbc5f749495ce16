package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/schemas"
)

const (
	benchAdminToken = "bench-admin-token-0123456789abcdef0123456789"
	benchSecretKey  = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
)

// proc is a process the bench started (or, for an external service, knows
// nothing about: pid 0).
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string // what it printed as ready, or its HTTP address
	extra string // dispatcher: pprof address
	pid   int
	start procSample
	end   procSample
	// exited is closed once the process has exited and been waited for.
	exited chan struct{}
}

// watch waits for the process in the background.
func (p *proc) watch() *proc {
	p.exited = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stack is one scenario's set of processes: NATS, Redis, receivers and
// dispatchers, all fresh, so that no scenario inherits another's backlog,
// caches or memory peaks.
type stack struct {
	b           *bench
	dir         string
	log         *os.File
	natsURL     string
	redisURL    string
	redisPrefix string
	procs       []*proc
	dispatchers []*proc
	nc          *nats.Conn
	js          jetstream.JetStream
}

func (b *bench) newStack(ctx context.Context, name string) (*stack, error) {
	dir, err := os.MkdirTemp(b.workDir, name+"-")
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "processes.log"))
	if err != nil {
		return nil, err
	}
	s := &stack{b: b, dir: dir, log: logFile, redisPrefix: "bench:" + name + ":" + uuid.NewString()[:8] + ":"}
	return s, nil
}

// startNATS starts the NATS child, or uses NATS_URL after removing what an
// earlier scenario provisioned there.
func (s *stack) startNATS(ctx context.Context) error {
	if url := os.Getenv("NATS_URL"); url != "" {
		s.natsURL = url
	} else {
		p, err := s.startChild(ctx, "nats", "nats", "-store", filepath.Join(s.dir, "nats"))
		if err != nil {
			return err
		}
		s.natsURL = p.addr
	}
	nc, err := nats.Connect(s.natsURL, nats.Name("bench"))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", s.natsURL, err)
	}
	s.nc = nc
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	s.js = js
	if os.Getenv("NATS_URL") != "" {
		// An external server keeps state between scenarios: start clean.
		for _, st := range []string{natsinfra.EventsStream, natsinfra.RetriesStream} {
			if err := js.DeleteStream(ctx, st); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("reset stream %s on NATS_URL: %w", st, err)
			}
		}
		for _, kv := range []string{natsinfra.WebhooksBucket, natsinfra.DeliveriesBucket} {
			if err := js.DeleteKeyValue(ctx, kv); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
				return fmt.Errorf("reset bucket %s on NATS_URL: %w", kv, err)
			}
		}
	}
	return nil
}

// startRedis starts redis-server on a free port, or uses REDIS_URL with a
// key prefix of this scenario's own.
func (s *stack) startRedis(ctx context.Context) error {
	if url := os.Getenv("REDIS_URL"); url != "" {
		s.redisURL = url
		return nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return errors.New("no REDIS_URL and no redis-server on PATH (apt-get install -y redis-server)")
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(s.dir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	p := (&proc{name: "redis", cmd: cmd, pid: cmd.Process.Pid, addr: fmt.Sprintf("127.0.0.1:%d", port)}).watch()
	s.procs = append(s.procs, p)
	s.redisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	return waitFor(ctx, 10*time.Second, "redis-server to accept connections", func() bool {
		c, err := net.DialTimeout("tcp", p.addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte("PING\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(line, "+PONG")
	})
}

// startChild runs this binary as a child and waits for its "ready" line.
func (s *stack) startChild(ctx context.Context, name, kind string, args ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{"-child", kind}, args...)...)
	cmd.Stderr = s.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := (&proc{name: name, cmd: cmd, stdin: stdin, pid: cmd.Process.Pid}).watch()
	s.procs = append(s.procs, p)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(line, "ready ")
		if !ok {
			return nil, fmt.Errorf("%s: unexpected first line %q", name, line)
		}
		p.addr = addr
		return p, nil
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%s not ready within 30s (see %s)", name, s.log.Name())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startDispatcher runs one dispatcher process built from ./dispatcher.
func (s *stack) startDispatcher(ctx context.Context, env map[string]string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pprofPort, err := freePort()
	if err != nil {
		return nil, err
	}
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", pprofPort)
	vars := map[string]string{
		"NATS_URL":                         s.natsURL,
		"REDIS_URL":                        s.redisURL,
		"DISPATCHER_REDIS_PREFIX":          s.redisPrefix,
		"DISPATCHER_HTTP_ADDR":             addr,
		"DISPATCHER_ADMIN_TOKEN":           benchAdminToken,
		"DISPATCHER_SECRET_KEY":            benchSecretKey,
		"DISPATCHER_ALLOW_PRIVATE_TARGETS": "true",
		"DISPATCHER_LOG_LEVEL":             s.b.logLevel,
		"DISPATCHER_CONCURRENCY":           strconv.Itoa(s.b.concurrency),
		"DISPATCHER_DATA_DIR":              filepath.Join(s.dir, "data"),
		"DISPATCHER_PPROF_ADDR":            pprofAddr,
	}
	for k, v := range env {
		vars[k] = v
	}
	cmd := exec.Command(s.b.dispatcherBin)
	cmd.Env = os.Environ()
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dispatcher: %w", err)
	}
	p := (&proc{name: fmt.Sprintf("dispatcher-%d", len(s.dispatchers)+1), cmd: cmd, pid: cmd.Process.Pid, addr: addr, extra: pprofAddr}).watch()
	s.procs = append(s.procs, p)
	s.dispatchers = append(s.dispatchers, p)
	err = waitFor(ctx, 30*time.Second, p.name+" ready (see "+s.log.Name()+")", func() bool {
		if !p.running() {
			return true // reported below
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if err == nil && !p.running() {
		err = fmt.Errorf("%s exited at start (see %s)", p.name, s.log.Name())
	}
	return p, err
}

// configure creates n integrations through the management API of the first
// dispatcher, each with a webhook at url(i), and teaches the receiver that
// serves it the secret the dispatcher generated.
func (s *stack) configure(ctx context.Context, n int, receiverOf func(i int) *proc) ([]integration, error) {
	api := s.dispatchers[0]
	out := make([]integration, n)
	secrets := map[*proc]*bytes.Buffer{}
	for i := range out {
		id := uuid.Must(uuid.NewV7()).String()
		rp := receiverOf(i)
		url := "http://" + rp.addr + "/webhooks/" + id
		body, _ := json.Marshal(map[string]any{"enabled": true, "url": url, "events": schemas.EventNames})
		if err := apiCall(ctx, api.addr, http.MethodPut, "/v1/integrations/"+id+"/webhook", body, nil); err != nil {
			return nil, err
		}
		var sec struct{ Secret string }
		if err := apiCall(ctx, api.addr, http.MethodGet, "/v1/integrations/"+id+"/webhook/secret", nil, &sec); err != nil {
			return nil, err
		}
		out[i] = integration{id: id, secret: sec.Secret, url: url, receiver: rp}
		if secrets[rp] == nil {
			secrets[rp] = &bytes.Buffer{}
		}
		fmt.Fprintf(secrets[rp], "%s=%s\n", id, sec.Secret)
	}
	for rp, buf := range secrets {
		if err := teachSecrets(ctx, rp.addr, buf.Bytes()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func teachSecrets(ctx context.Context, addr string, lines []byte) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/bench/secrets", bytes.NewReader(lines))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("teach receiver secrets: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("teach receiver secrets: HTTP %d", resp.StatusCode)
	}
	return nil
}

func apiCall(ctx context.Context, addr, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	req.Header.Set("Authorization", "Bearer "+benchAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// sampleAll reads /proc for every process; the bench itself is "loadgen".
func (s *stack) sampleAll() map[string]procSample {
	out := map[string]procSample{}
	for _, p := range s.procs {
		if ps, err := readProc(p.pid); err == nil {
			out[p.name] = ps
		}
	}
	if ps, err := readProc(os.Getpid()); err == nil {
		out["loadgen"] = ps
	}
	return out
}

// close stops every process: dispatchers first (SIGTERM, graceful), then
// receivers, NATS and Redis.
func (s *stack) close() {
	if s.nc != nil {
		s.nc.Close()
	}
	stop := func(p *proc, grace time.Duration) {
		if !p.running() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if p.stdin != nil {
			_ = p.stdin.Close()
		}
	}
	for _, p := range s.dispatchers {
		stop(p, 30*time.Second)
	}
	for i := len(s.procs) - 1; i >= 0; i-- {
		stop(s.procs[i], 10*time.Second)
	}
	_ = s.log.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls cond every 20 ms until it holds or the timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
