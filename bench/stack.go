package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/internal/harness"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/schemas"
)

const (
	benchAdminToken = "bench-admin-token-0123456789abcdef0123456789"
	benchSecretKey  = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
)

// proc is a process the bench started, under the name the process table
// shows (for the bench itself, "loadgen", no process).
type proc struct {
	name string
	*harness.Process
	addr  string // what it printed as ready, or its HTTP address
	extra string // dispatcher: pprof address
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

// startNATS starts the NATS child (-nats-nodes of them as a cluster), or
// uses NATS_URL after removing what an earlier scenario provisioned there.
func (s *stack) startNATS(ctx context.Context) error {
	switch {
	case os.Getenv("NATS_URL") != "":
		s.natsURL = os.Getenv("NATS_URL")
	case s.b.natsNodes > 1:
		if err := s.startNATSCluster(ctx); err != nil {
			return err
		}
	default:
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

// startNATSCluster starts -nats-nodes JetStream servers that form a
// cluster (nats-n1, nats-n2, …). Each is this binary run as a child
// (-child nats -config), as the single server is, so that the two differ
// only in the clustering: replication is what the comparison shows.
func (s *stack) startNATSCluster(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	c, err := harness.NewNATSCluster(harness.NATSClusterOptions{
		Size: s.b.natsNodes,
		Dir:  filepath.Join(s.dir, "nats"),
		Command: func(conf string) *exec.Cmd {
			return exec.Command(self, "-child", "nats", "-config", conf)
		},
	})
	if err != nil {
		return err
	}
	for _, n := range c.Nodes {
		n.Output = s.log
	}
	err = c.Start(ctx)
	for _, n := range c.Nodes {
		if p := n.Process(); p != nil {
			s.procs = append(s.procs, &proc{name: "nats-" + n.Name, Process: p, addr: n.URL()})
		}
	}
	if err != nil {
		return fmt.Errorf("NATS cluster (see %s): %w", s.log.Name(), err)
	}
	s.natsURL = c.URLs()
	return nil
}

// startRedis starts redis-server on a free port, or uses REDIS_URL with a
// key prefix of this scenario's own.
func (s *stack) startRedis(ctx context.Context) error {
	if url := os.Getenv("REDIS_URL"); url != "" {
		s.redisURL = url
		return nil
	}
	r, err := harness.NewRedis(harness.RedisOptions{Name: "redis", Dir: filepath.Join(s.dir, "redis")})
	if err != nil {
		return fmt.Errorf("no REDIS_URL, and %w", err)
	}
	err = r.Start(ctx)
	if p := r.Process(); p != nil {
		s.procs = append(s.procs, &proc{name: "redis", Process: p, addr: r.Addr})
	}
	s.redisURL = r.URL()
	return err
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
	hp, err := harness.StartProcess(name, cmd, nil)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, Process: hp}
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
	pprofPort, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", pprofPort)
	vars := map[string]string{
		"NATS_URL":                         s.natsURL,
		"REDIS_URL":                        s.redisURL,
		"DISPATCHER_REDIS_PREFIX":          s.redisPrefix,
		"DISPATCHER_ADMIN_TOKEN":           benchAdminToken,
		"DISPATCHER_SECRET_KEY":            benchSecretKey,
		"DISPATCHER_ALLOW_PRIVATE_TARGETS": "true",
		"DISPATCHER_LOG_LEVEL":             s.b.logLevel,
		"DISPATCHER_CONCURRENCY":           strconv.Itoa(s.b.concurrency),
		"DISPATCHER_DATA_DIR":              filepath.Join(s.dir, "data"),
		"DISPATCHER_PPROF_ADDR":            pprofAddr,
	}
	maps.Copy(vars, env)
	name := fmt.Sprintf("dispatcher-%d", len(s.dispatchers)+1)
	d, err := harness.StartDispatcher(ctx, harness.DispatcherOptions{Name: name, Bin: s.b.dispatcherBin, Env: vars, Output: s.log})
	if err != nil {
		return nil, fmt.Errorf("%w (see %s)", err, s.log.Name())
	}
	p := &proc{name: name, Process: d.Process(), addr: d.Addr(), extra: pprofAddr}
	s.procs = append(s.procs, p)
	s.dispatchers = append(s.dispatchers, p)
	return p, nil
}

// configure creates n integrations through the management API of the first
// dispatcher, each with a webhook at url(i), and teaches the receiver that
// serves it the secret the dispatcher generated.
func (s *stack) configure(ctx context.Context, n int, receiverOf func(i int) *proc) ([]integration, error) {
	api := harness.NewAPI(s.dispatchers[0].addr, benchAdminToken)
	out := make([]integration, n)
	secrets := map[*proc]*bytes.Buffer{}
	for i := range out {
		id := uuid.Must(uuid.NewV7()).String()
		rp := receiverOf(i)
		url := "http://" + rp.addr + "/webhooks/" + id
		if err := api.PutWebhook(ctx, id, harness.Webhook{Enabled: true, URL: url, Events: schemas.EventNames}); err != nil {
			return nil, err
		}
		secret, err := api.Secret(ctx, id)
		if err != nil {
			return nil, err
		}
		out[i] = integration{id: id, secret: secret, url: url, receiver: rp}
		if secrets[rp] == nil {
			secrets[rp] = &bytes.Buffer{}
		}
		fmt.Fprintf(secrets[rp], "%s=%s\n", id, secret)
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

// sampleAll reads /proc for every process; the bench itself is "loadgen".
func (s *stack) sampleAll() map[string]procSample {
	out := map[string]procSample{}
	for _, p := range s.procs {
		if ps, err := readProc(p.Pid()); err == nil {
			out[p.name] = ps
		}
	}
	if ps, err := readProc(os.Getpid()); err == nil {
		out["loadgen"] = ps
	}
	return out
}

// close stops every process: dispatchers first (SIGTERM, graceful), then
// receivers, Redis and NATS.
func (s *stack) close() {
	if s.nc != nil {
		s.nc.Close()
	}
	for _, p := range s.dispatchers {
		_, _, _ = p.Terminate(30 * time.Second)
	}
	for i := len(s.procs) - 1; i >= 0; i-- {
		_, _, _ = s.procs[i].Terminate(10 * time.Second)
	}
	_ = s.log.Close()
}

// waitFor polls cond every 20 ms until it holds or the timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	return harness.Poll(ctx, timeout, 20*time.Millisecond, what, func() (bool, error) { return cond(), nil })
}
