package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/internal/harness"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/publisher"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testinfra.RemoveBuilds()
	os.Exit(code)
}

// Timing of every dispatcher in this suite, unless a test overrides it.
const (
	// retrySchedule: 10 attempts over about 15 s.
	retrySchedule = "1s,1s,1s,2s,2s,2s,2s,2s,2s"
	// attemptTimeout makes AckWait 2×2 s + 5 s = 9 s (dispatcher/run.go):
	// the time after which JetStream hands a crashed process's messages to
	// another one.
	attemptTimeout = 2 * time.Second
	// concurrency is DISPATCHER_CONCURRENCY: attempts in flight per lane
	// per process, and the client-side pull buffer of each lane. It bounds
	// how many messages one process can hold unacknowledged: the duplicate
	// bound of a crash.
	concurrency = 16
)

// endpoint is a reference receiver on a fixed loopback port that can be
// taken down (connections refused) and brought back.
type endpoint struct {
	*receiver.Receiver
	t       *testing.T
	port    int
	handler http.Handler
	mu      sync.Mutex
	srv     *http.Server
	// inFlight counts requests being answered right now.
	inFlight atomic.Int64
}

func newEndpoint(t *testing.T, faults receiver.Faults) *endpoint {
	t.Helper()
	rc, err := receiver.New(receiver.Config{Faults: faults, MaxHang: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := &endpoint{Receiver: rc, t: t, port: testinfra.FreePort(t)}
	e.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.inFlight.Add(1)
		defer e.inFlight.Add(-1)
		rc.ServeHTTP(w, r)
	})
	e.up()
	t.Cleanup(func() { rc.Close(); e.down() })
	return e
}

// newHandlerEndpoint serves any handler (no receiver) the same way.
func newHandlerEndpoint(t *testing.T, h http.Handler) *endpoint {
	t.Helper()
	e := &endpoint{t: t, port: testinfra.FreePort(t), handler: h}
	e.up()
	t.Cleanup(e.down)
	return e
}

func (e *endpoint) base() string { return fmt.Sprintf("http://127.0.0.1:%d", e.port) }

func (e *endpoint) up() {
	e.t.Helper()
	var l net.Listener
	testinfra.WaitFor(e.t, 10*time.Second, fmt.Sprintf("port %d to be free", e.port), func() bool {
		var err error
		l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", e.port))
		return err == nil
	})
	srv := &http.Server{Handler: e.handler, ReadHeaderTimeout: 10 * time.Second}
	e.mu.Lock()
	e.srv = srv
	e.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// down closes the listener and every connection: attempts now see
// "connection refused".
func (e *endpoint) down() {
	e.mu.Lock()
	srv := e.srv
	e.srv = nil
	e.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// arrivals indexes what the receiver saw by event id.
func (e *endpoint) arrivals() map[string][]receiver.Arrival {
	out := map[string][]receiver.Arrival{}
	for _, a := range e.Deliveries() {
		out[a.EventID] = append(out[a.EventID], a)
	}
	return out
}

// cluster is one test's world: NATS, Redis, a publisher and dispatchers.
type cluster struct {
	t *testing.T
	// nats is the single server of most tests; natsCluster, the
	// three-node cluster of the cluster fault tests. One of them is nil.
	nats        *testinfra.NATS
	natsCluster *testinfra.NATSCluster
	redis       *testinfra.Redis
	adminToken  string
	secretKey   string
	env         map[string]string
	js          jetstream.JetStream
	pub         *publisher.Publisher
	mu          sync.Mutex
	procs       []*dispatcher
}

// newCluster starts NATS and Redis for the test. env overrides the
// dispatchers' environment; with a REDIS_URL in env no Redis is started.
//
// NATS is a server in the test process that a test can shut down and
// start again on the same port and store; Redis is a redis-server child
// with an append-only file fsynced on every write, so a kill and restart
// brings back exactly what it held: the harder case for the cache
// (entries from before an outage come back).
func newCluster(t *testing.T, env map[string]string) *cluster {
	t.Helper()
	c := &cluster{t: t}
	redisURL := env["REDIS_URL"] // a test may bring its own Redis
	if redisURL == "" {
		c.redis = testinfra.StartRedisServer(t, true)
		redisURL = c.redis.URL
	}
	c.nats = testinfra.StartEmbeddedNATS(t)
	nc, err := nats.Connect(c.nats.URL, nats.Name("reliability-publisher"),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c.init(c.nats.URL, redisURL, nc, env)
	return c
}

// newClusterOnNATSCluster is newCluster with a three-node NATS cluster
// (testinfra.StartNATSCluster) instead of one server: every stream and
// bucket has three replicas, the dispatchers get every node's URL, and
// the publisher connects to every node.
func newClusterOnNATSCluster(t *testing.T, env map[string]string) *cluster {
	t.Helper()
	c := &cluster{t: t}
	c.redis = testinfra.StartRedisServer(t, true)
	c.natsCluster = testinfra.StartNATSCluster(t)
	all := map[string]string{"DISPATCHER_NATS_REPLICAS": "3"}
	for k, v := range env {
		all[k] = v
	}
	c.init(c.natsCluster.URLs(), c.redis.URL, c.natsCluster.Connect(), all)
	return c
}

// init sets the dispatchers' environment and the publisher.
func (c *cluster) init(natsURL, redisURL string, nc *nats.Conn, env map[string]string) {
	t := c.t
	t.Helper()
	c.adminToken, c.secretKey = randomText(32), base64.StdEncoding.EncodeToString(randomBytes(32))
	c.env = map[string]string{
		"NATS_URL":                         natsURL,
		"REDIS_URL":                        redisURL,
		"DISPATCHER_ADMIN_TOKEN":           c.adminToken,
		"DISPATCHER_SECRET_KEY":            c.secretKey,
		"DISPATCHER_ALLOW_PRIVATE_TARGETS": "true",
		"DISPATCHER_RETRY_SCHEDULE":        retrySchedule,
		"DISPATCHER_ATTEMPT_TIMEOUT":       attemptTimeout.String(),
		"DISPATCHER_SHUTDOWN_TIMEOUT":      "5s",
		"DISPATCHER_CONCURRENCY":           strconv.Itoa(concurrency),
		"DISPATCHER_LOG_LEVEL":             "info",
	}
	for k, v := range env {
		c.env[k] = v
	}
	c.usePublisher(nc)
	// Registered first, so it runs after every dispatcher has exited.
	t.Cleanup(c.report)
}

// usePublisher makes the test publish through nc.
func (c *cluster) usePublisher(nc *nats.Conn) {
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.js, c.pub = js, publisher.New(js)
	c.mu.Unlock()
}

// report shows the dispatchers' logs when the test failed (and writes
// them to RELIABILITY_LOG_DIR when set).
func (c *cluster) report() {
	c.mu.Lock()
	procs := slices.Clone(c.procs)
	c.mu.Unlock()
	dir := os.Getenv("RELIABILITY_LOG_DIR")
	for _, d := range procs {
		logs := d.Log.String()
		if dir != "" {
			name := strings.NewReplacer("/", "_", " ", "_").Replace(c.t.Name()) + "." + d.Name() + ".log"
			_ = os.WriteFile(filepath.Join(dir, name), []byte(logs), 0o644)
		}
		if c.t.Failed() {
			c.t.Logf("dispatcher %s log, warnings and errors:\n%s", d.Name(), problems(logs, 60))
			if len(logs) > 12000 {
				logs = "…" + logs[len(logs)-12000:]
			}
			c.t.Logf("dispatcher %s log (tail):\n%s", d.Name(), logs)
		}
	}
}

// problems returns the first max warning and error lines of a log: the
// tail alone is often busy with the test's own polling when the cause
// happened minutes earlier.
func problems(logs string, max int) string {
	var out []string
	for line := range strings.Lines(logs) {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			if len(out) == max {
				out = append(out, "…\n")
				break
			}
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randomText(n int) string { return base64.RawURLEncoding.EncodeToString(randomBytes(n)) }

// dispatcher is one dispatcher child process of the cluster
// (restartable, see testinfra.Dispatcher).
type dispatcher struct {
	*testinfra.Dispatcher
	c *cluster
}

// startDispatcher starts a dispatcher with the cluster's environment plus
// env, and waits until it is ready.
func (c *cluster) startDispatcher(name string, env map[string]string) *dispatcher {
	c.t.Helper()
	all := maps.Clone(c.env)
	maps.Copy(all, env)
	d := &dispatcher{Dispatcher: testinfra.StartDispatcher(c.t, name, all), c: c}
	c.mu.Lock()
	c.procs = append(c.procs, d)
	c.mu.Unlock()
	return d
}

// request sends one HTTP request to the dispatcher's listener with
// exactly the given headers.
func (d *dispatcher) request(method, path string, body []byte, header http.Header) (int, http.Header, []byte) {
	t := d.c.t
	t.Helper()
	resp, err := d.API(d.c.adminToken).Request(context.Background(), method, path, body, header)
	if err != nil {
		t.Fatalf("on %s: %v", d.Name(), err)
	}
	return resp.Status, resp.Header, resp.Body
}

// api calls the management API with the admin token; in is marshalled to
// JSON (nil: no body), the answer is decoded into out when out is not nil.
func (d *dispatcher) api(method, path string, in, out any) int {
	t := d.c.t
	t.Helper()
	code, err := d.API(d.c.adminToken).Call(context.Background(), method, path, in, out)
	if err != nil {
		t.Fatalf("on %s: %v", d.Name(), err)
	}
	return code
}

// configure gives a new integration a webhook to ep (through d's API) and
// teaches ep its secret. It returns the integration id.
func (c *cluster) configure(d *dispatcher, ep *endpoint, events ...string) string {
	c.t.Helper()
	return c.configureID(d, ep, uuid.Must(uuid.NewV7()).String(), events...)
}

// configureID is configure for an integration id chosen by the test.
func (c *cluster) configureID(d *dispatcher, ep *endpoint, id string, events ...string) string {
	c.t.Helper()
	if len(events) == 0 {
		events = schemas.EventNames
	}
	c.putWebhook(d, id, true, ep.base()+"/webhooks/"+id, events)
	if ep.Receiver != nil {
		ep.SetSecret(id, c.secret(d, id))
	}
	return id
}

func (c *cluster) putWebhook(d *dispatcher, id string, enabled bool, url string, events []string) {
	c.t.Helper()
	if err := d.API(c.adminToken).PutWebhook(context.Background(), id, harness.Webhook{Enabled: enabled, URL: url, Events: events}); err != nil {
		c.t.Fatalf("on %s: %v", d.Name(), err)
	}
}

func (c *cluster) secret(d *dispatcher, id string) string {
	c.t.Helper()
	secret, err := d.API(c.adminToken).Secret(context.Background(), id)
	if err != nil {
		c.t.Fatalf("on %s: %v", d.Name(), err)
	}
	return secret
}

// sentEvent is an event JetStream accepted (acknowledged the publish of).
type sentEvent struct {
	ID, Integration, Event string
	Published              time.Time
}

// tryPublish publishes one sample event, retrying with the same event id
// (so JetStream drops a copy whose first acknowledgement was lost) until
// it is acknowledged or ctx ends.
func (c *cluster) tryPublish(ctx context.Context, integration, event string) (sentEvent, error) {
	at := schemas.At(time.Now())
	ev := publisher.Event{
		ID: uuid.Must(uuid.NewV7()).String(), Name: event, IntegrationID: integration,
		OccurredAt: at, Data: publisher.SampleScan(event, at),
	}
	for {
		c.mu.Lock()
		pub := c.pub
		c.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := pub.Publish(pctx, ev)
		cancel()
		if err == nil {
			return sentEvent{ID: ev.ID, Integration: integration, Event: event, Published: time.Now()}, nil
		}
		select {
		case <-ctx.Done():
			return sentEvent{}, fmt.Errorf("publish %s: %w (last error: %v)", ev.ID, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *cluster) publish(integration, event string) sentEvent {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev, err := c.tryPublish(ctx, integration, event)
	if err != nil {
		c.t.Fatal(err)
	}
	return ev
}

// load publishes events in the background.
type load struct {
	done   chan struct{}
	stop   context.CancelFunc
	halted atomic.Bool
	mu     sync.Mutex
	events []sentEvent
	err    error
}

// startLoad publishes n events round-robin over the integrations (and over
// the three event types), one every interval, until n are acknowledged.
func (c *cluster) startLoad(integrations []string, n int, interval time.Duration) *load {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	l := &load{done: make(chan struct{}), stop: cancel}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := range n {
			if l.halted.Load() {
				return
			}
			ev, err := c.tryPublish(ctx, integrations[i%len(integrations)], schemas.EventNames[(i/len(integrations))%3])
			l.mu.Lock()
			if err != nil {
				l.err = err
				l.mu.Unlock()
				return
			}
			l.events = append(l.events, ev)
			l.mu.Unlock()
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
	}()
	c.t.Cleanup(func() { cancel(); <-l.done })
	return l
}

// halt ends the load after the event being published, without error: for
// tests whose load must last as long as a procedure of unknown length.
func (l *load) halt() { l.halted.Store(true) }

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

func (l *load) sent() []sentEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// wait returns every event the load published, once it is done.
func (l *load) wait(t *testing.T) []sentEvent {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(5 * time.Minute):
		t.Fatal("load did not finish")
	}
	if l.err != nil {
		t.Fatalf("load: %v", l.err)
	}
	return l.sent()
}

// delivery is a delivery as the API answers it.
type delivery struct {
	ID            string    `json:"id"`
	EventID       *string   `json:"event_id"`
	Event         *string   `json:"event"`
	IntegrationID string    `json:"integration_id"`
	State         string    `json:"state"`
	AttemptCount  int       `json:"attempt_count"`
	LastStatus    *int      `json:"last_status_code"`
	LastError     *string   `json:"last_error"`
	NextAttemptAt *string   `json:"next_attempt_at"`
	Attempts      []attempt `json:"attempts"`
}

type attempt struct {
	Number         int     `json:"number"`
	StartedAt      string  `json:"started_at"`
	DurationMillis int64   `json:"duration_ms"`
	StatusCode     *int    `json:"status_code"`
	Error          *string `json:"error"`
}

func (x delivery) eventID() string { return deref(x.EventID) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// deliveries lists every delivery of the integration (all pages).
func (d *dispatcher) deliveries(integration string) []delivery {
	t := d.c.t
	t.Helper()
	all, err := harness.Deliveries[delivery](context.Background(), d.API(d.c.adminToken), integration)
	if err != nil {
		t.Fatalf("on %s: %v", d.Name(), err)
	}
	return all
}

// deliveryWithAttempts reads one delivery with its attempts.
func (d *dispatcher) deliveryWithAttempts(id string) delivery {
	d.c.t.Helper()
	var out delivery
	if code := d.api("GET", "/v1/deliveries/"+id, nil, &out); code != http.StatusOK {
		d.c.t.Fatalf("GET delivery %s: %d", id, code)
	}
	return out
}

// outcome is the end an event must reach: a final delivery state and, for
// anything but succeeded, a piece of the recorded reason.
type outcome struct {
	State  string
	Reason string
}

var succeeded = outcome{State: deliverylog.StateSucceeded}

// awaitOutcomes waits until every event in want has reached a final state
// in the delivery log (read through d's API), then checks that each has
// exactly one delivery, in the state wanted, and that the integrations
// have no delivery for an event that is not in want. It returns the
// deliveries by event id.
func (c *cluster) awaitOutcomes(d *dispatcher, want map[string]outcome, byIntegration map[string][]string, timeout time.Duration) map[string]delivery {
	c.t.Helper()
	var got map[string][]delivery
	var lastMissing []string
	deadline := time.Now().Add(timeout)
	for {
		got = map[string][]delivery{}
		for integration := range byIntegration {
			for _, x := range d.deliveries(integration) {
				got[x.eventID()] = append(got[x.eventID()], x)
			}
		}
		lastMissing = lastMissing[:0]
		for id := range want {
			list := got[id]
			if len(list) == 0 || list[0].State == deliverylog.StatePending {
				lastMissing = append(lastMissing, id)
			}
		}
		if len(lastMissing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			slices.Sort(lastMissing)
			var detail []string
			for _, id := range lastMissing[:min(10, len(lastMissing))] {
				if list := got[id]; len(list) > 0 {
					detail = append(detail, fmt.Sprintf("%s: %s after %d attempts (%s)", id, list[0].State, list[0].AttemptCount, deref(list[0].LastError)))
				} else {
					detail = append(detail, id+": no delivery recorded")
				}
			}
			c.t.Fatalf("after %s, %d of %d events have not reached a final state:\n  %s", timeout, len(lastMissing), len(want), strings.Join(detail, "\n  "))
		}
		time.Sleep(300 * time.Millisecond)
	}
	out := map[string]delivery{}
	for id, list := range got {
		w, expected := want[id]
		switch {
		case !expected:
			c.t.Errorf("delivery %s for event %q that the test did not expect (state %s)", list[0].ID, id, list[0].State)
		case len(list) != 1:
			c.t.Errorf("event %s has %d deliveries, want 1", id, len(list))
		case list[0].State != w.State:
			c.t.Errorf("event %s ended %s (%s), want %s", id, list[0].State, deref(list[0].LastError), w.State)
		case w.Reason != "" && !strings.Contains(deref(list[0].LastError), w.Reason):
			c.t.Errorf("event %s ended %s with reason %q, want it to mention %q", id, list[0].State, deref(list[0].LastError), w.Reason)
		}
		out[id] = list[0]
	}
	return out
}

// expectAll returns want for events that must all end the same way, and
// the events grouped by integration.
func expectAll(events []sentEvent, o outcome) (map[string]outcome, map[string][]string) {
	want := map[string]outcome{}
	by := map[string][]string{}
	for _, ev := range events {
		want[ev.ID] = o
		by[ev.Integration] = append(by[ev.Integration], ev.ID)
	}
	return want, by
}

// checkArrivals checks what one endpoint received: every event in
// delivered arrived and was accepted exactly once (later 2xx arrivals are
// duplicates, counted and returned), every arrival of an event carried the
// same body, addressed to the right integration; no event outside
// delivered was accepted; and no request failed verification (wrong
// secret, stale timestamp).
func checkArrivals(t *testing.T, ep *endpoint, delivered []sentEvent) (duplicates int) {
	t.Helper()
	byID := ep.arrivals()
	for _, ev := range delivered {
		arr := byID[ev.ID]
		accepted := 0
		for _, a := range arr {
			switch a.Outcome {
			case receiver.OutcomeAccepted:
				accepted++
			case receiver.OutcomeDuplicate:
				duplicates++
			}
			if !bytes.Equal(a.Body, arr[0].Body) {
				t.Errorf("event %s: attempts carried different bodies", ev.ID)
			}
			if a.Envelope != nil && (a.Envelope.IntegrationID != ev.Integration || a.Envelope.Event != ev.Event) {
				t.Errorf("event %s arrived as %s for %s, want %s for %s", ev.ID, a.Envelope.Event, a.Envelope.IntegrationID, ev.Event, ev.Integration)
			}
		}
		if accepted != 1 {
			t.Errorf("event %s: accepted %d times (of %d arrivals), want 1", ev.ID, accepted, len(arr))
		}
	}
	st := ep.Stats()
	if st.Accepted != int64(len(delivered)) {
		t.Errorf("endpoint accepted %d events, want exactly the %d delivered ones", st.Accepted, len(delivered))
	}
	if st.Rejected != 0 {
		t.Errorf("endpoint refused %d requests (%v): signed with a wrong secret or stale", st.Rejected, st.RejectedBy)
	}
	return duplicates
}

// ofIntegration filters events.
func ofIntegration(events []sentEvent, integrations ...string) []sentEvent {
	var out []sentEvent
	for _, ev := range events {
		if slices.Contains(integrations, ev.Integration) {
			out = append(out, ev)
		}
	}
	return out
}

// long reports whether the long variants run (RELIABILITY_LONG=1, the
// reliability-long task): more events, longer outages.
func long() bool { return os.Getenv("RELIABILITY_LONG") != "" }

// scaled picks the default or the long variant of a number or duration.
func scaled[T any](normal, longer T) T {
	if long() {
		return longer
	}
	return normal
}
