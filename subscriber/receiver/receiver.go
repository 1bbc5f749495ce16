// Package receiver is the reference Blazelock webhook receiver: an
// http.Handler that verifies webhooks with subscriber/verify, de-duplicates
// them by X-Blazelock-Webhook-Id, counts and times them, and can be told to
// misbehave (fail, delay, hang, reset, rate-limit) for tests and demos.
//
// The same type backs the `go run ./subscriber` binary and tests in other
// packages, which mount it on an httptest.Server and read back what arrived
// with Deliveries and Stats.
//
// Routes:
//
//	POST /                    webhook
//	POST /webhooks/{path...}  webhook (any path below /webhooks/, so several
//	                          integrations can get distinct URLs; the secret
//	                          is chosen by the body's integration_id, not
//	                          the path)
//	GET  /stats               Stats as JSON
//	GET  /metrics             Prometheus metrics (the receiver's own registry)
//	GET  /faults              the current Faults as JSON
//	PUT  /faults              replace the Faults (JSON body, see Faults)
//	GET  /healthz             200 "ok"
//
// The control routes are unauthenticated: this is a test tool, listening on
// loopback by default.
package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/verify"
)

// DefaultMaxHang bounds how long the Hang fault holds a connection when
// Config.MaxHang is zero: longer than the dispatcher's 15 s attempt timeout,
// short enough that a forgotten hang does not pin connections for ever.
const DefaultMaxHang = 60 * time.Second

// Config configures a Receiver. Only Secrets is usually set; every other
// field has a working zero value.
type Config struct {
	// Secrets maps integration ids to webhook secrets ("whsec_…"). It is
	// copied; change secrets later with SetSecret and RemoveSecret.
	Secrets map[string]string
	// Tolerance of the timestamp check; zero means verify.DefaultTolerance.
	Tolerance time.Duration
	// MaxBodyBytes caps request bodies (413 above); zero means
	// verify.DefaultMaxBodyBytes (1 MiB).
	MaxBodyBytes int64
	// Faults in effect from the start.
	Faults Faults
	// MaxHang bounds the Hang fault; zero means DefaultMaxHang.
	MaxHang time.Duration
	// DiscardArrivals keeps only counts, the de-duplication table and the
	// latency histogram, not every request: for benchmarks and the
	// long-running binary. Deliveries then returns nothing.
	DiscardArrivals bool
	// Logger receives one line per webhook request ("webhook" at Info when
	// verified, Warn when refused). Nil means no per-request logging.
	Logger *slog.Logger
	// Now is the clock for arrival times and the timestamp check; nil means
	// time.Now.
	Now func() time.Time
}

// Outcome says how the receiver answered a webhook request.
type Outcome string

// Outcomes of a webhook request.
const (
	OutcomeAccepted    Outcome = "accepted"     // verified, first 2xx for this event id
	OutcomeDuplicate   Outcome = "duplicate"    // verified, event id already accepted; answered 2xx
	OutcomeRejected    Outcome = "rejected"     // refused by verification (401, 413, 400, 503)
	OutcomeFaultStatus Outcome = "fault_status" // injected failing status (5xx, 4xx, 3xx, 429)
	OutcomeFaultReset  Outcome = "fault_reset"  // connection reset
	OutcomeFaultHang   Outcome = "fault_hang"   // held without an answer, then dropped
	OutcomeAbandoned   Outcome = "abandoned"    // the client gave up during the injected delay
)

// Arrival is one webhook request as the receiver saw it. Body and Header
// belong to the receiver: read them, do not modify them.
type Arrival struct {
	ArrivedAt time.Time
	Path      string
	// EventID, AttemptHeader, Timestamp and Signature are the raw
	// X-Blazelock-Webhook-{Id,Attempt,Timestamp,Signature} headers; Attempt is
	// AttemptHeader parsed (0 when absent or not a positive number).
	EventID       string
	AttemptHeader string
	Attempt       int
	Timestamp     string
	Signature     string
	Body          []byte
	Header        http.Header
	// Verified reports whether signature and timestamp checked out; when not,
	// Reason says why (verify.Reason).
	Verified bool
	Reason   string
	// Envelope is the decoded body of a verified request, else nil.
	Envelope *schemas.Envelope
	// Outcome and Status say how the request was answered; Status is 0 when
	// no HTTP answer was sent (reset, hang, abandoned).
	Outcome Outcome
	Status  int
}

// Receiver is the reference webhook receiver. It is an http.Handler, safe for
// concurrent use. Create it with New.
type Receiver struct {
	auth            verify.Authenticator
	now             func() time.Time
	logger          *slog.Logger
	maxHang         time.Duration
	discardArrivals bool

	secrets   atomic.Pointer[map[string]string] // copy-on-write: lookups take no lock
	secretsMu sync.Mutex                        // serialises writers

	faults   atomic.Pointer[Faults]
	events   eventTable
	counters counters
	registry *prometheus.Registry
	mux      *http.ServeMux

	arrivalsMu sync.Mutex
	arrivals   []Arrival

	closeOnce sync.Once
	closed    chan struct{}
}

// New returns a Receiver. It fails on an empty secret or invalid Faults.
func New(cfg Config) (*Receiver, error) {
	if err := cfg.Faults.Validate(); err != nil {
		return nil, fmt.Errorf("create receiver: faults: %w", err)
	}
	secrets := make(map[string]string, len(cfg.Secrets))
	for id, secret := range cfg.Secrets {
		if id == "" || secret == "" {
			return nil, fmt.Errorf("create receiver: integration %q: empty integration id or secret", id)
		}
		secrets[id] = secret
	}
	rc := &Receiver{
		now:             cfg.Now,
		logger:          cfg.Logger,
		maxHang:         cfg.MaxHang,
		discardArrivals: cfg.DiscardArrivals,
		registry:        prometheus.NewRegistry(),
		mux:             http.NewServeMux(),
		closed:          make(chan struct{}),
	}
	if rc.now == nil {
		rc.now = time.Now
	}
	if rc.maxHang <= 0 {
		rc.maxHang = DefaultMaxHang
	}
	rc.secrets.Store(&secrets)
	faults := cfg.Faults
	rc.faults.Store(&faults)
	rc.auth = verify.Authenticator{
		Secrets:      rc.lookupSecret,
		Verifier:     verify.Verifier{Tolerance: cfg.Tolerance, Now: rc.now},
		MaxBodyBytes: cfg.MaxBodyBytes,
	}
	rc.counters.register(rc.registry)

	rc.mux.HandleFunc("POST /{$}", rc.handleWebhook)
	rc.mux.HandleFunc("POST /webhooks", rc.handleWebhook)
	rc.mux.HandleFunc("POST /webhooks/{path...}", rc.handleWebhook)
	rc.mux.HandleFunc("GET /stats", rc.handleStats)
	rc.mux.Handle("GET /metrics", promhttp.HandlerFor(rc.registry, promhttp.HandlerOpts{}))
	rc.mux.HandleFunc("GET /faults", rc.handleGetFaults)
	rc.mux.HandleFunc("PUT /faults", rc.handlePutFaults)
	rc.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	return rc, nil
}

// ServeHTTP serves the webhook and control routes (see the package doc).
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) { rc.mux.ServeHTTP(w, r) }

// Close releases requests held by the Hang and Delay faults (hung ones are
// dropped, delayed ones answered at once) and makes later ones return
// immediately. Call it before closing the server: an http.Server or
// httptest.Server waits for in-flight handlers. The receiver keeps serving
// otherwise.
func (rc *Receiver) Close() {
	rc.closeOnce.Do(func() { close(rc.closed) })
}

// SetSecret adds or replaces the secret of an integration, effective for the
// next request (as a secret rotation is: docs/contract.md, Secrets).
func (rc *Receiver) SetSecret(integrationID, secret string) {
	rc.updateSecrets(func(m map[string]string) { m[integrationID] = secret })
}

// RemoveSecret forgets an integration: its webhooks are refused from now on.
func (rc *Receiver) RemoveSecret(integrationID string) {
	rc.updateSecrets(func(m map[string]string) { delete(m, integrationID) })
}

func (rc *Receiver) updateSecrets(change func(map[string]string)) {
	rc.secretsMu.Lock()
	defer rc.secretsMu.Unlock()
	old := *rc.secrets.Load()
	next := make(map[string]string, len(old)+1)
	for id, secret := range old {
		next[id] = secret
	}
	change(next)
	rc.secrets.Store(&next)
}

func (rc *Receiver) lookupSecret(_ context.Context, integrationID string) (string, error) {
	if secret, ok := (*rc.secrets.Load())[integrationID]; ok {
		return secret, nil
	}
	return "", verify.ErrUnknownIntegration
}

// Faults returns the faults in effect.
func (rc *Receiver) Faults() Faults { return *rc.faults.Load() }

// SetFaults replaces the faults in effect, for requests that arrive from now
// on. It refuses invalid faults and keeps the old ones.
func (rc *Receiver) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("set faults: %w", err)
	}
	rc.faults.Store(&f)
	return nil
}

// Stats returns a snapshot of the counts and the latency summary.
func (rc *Receiver) Stats() Stats { return rc.counters.snapshot() }

// Registry is the receiver's own Prometheus registry, served on /metrics.
func (rc *Receiver) Registry() *prometheus.Registry { return rc.registry }

// Deliveries returns every webhook request received so far, in the order
// they were recorded (nothing with Config.DiscardArrivals).
func (rc *Receiver) Deliveries() []Arrival {
	rc.arrivalsMu.Lock()
	defer rc.arrivalsMu.Unlock()
	return slices.Clone(rc.arrivals)
}

// DeliveriesFor returns the requests that carried the given
// X-Blazelock-Webhook-Id, in arrival order.
func (rc *Receiver) DeliveriesFor(eventID string) []Arrival {
	rc.arrivalsMu.Lock()
	defer rc.arrivalsMu.Unlock()
	var out []Arrival
	for _, a := range rc.arrivals {
		if a.EventID == eventID {
			out = append(out, a)
		}
	}
	return out
}

// EventsSeen returns how many distinct event ids arrived verified.
func (rc *Receiver) EventsSeen() int { return rc.events.len() }

var (
	jsonContentType = []string{"application/json"}
	acceptedBody    = []byte(`{"status":"accepted"}` + "\n")
	duplicateBody   = []byte(`{"status":"duplicate"}` + "\n")
)

func (rc *Receiver) handleWebhook(w http.ResponseWriter, r *http.Request) {
	arrivedAt := rc.now()
	rc.counters.received.Add(1)
	faults := rc.faults.Load()

	body, err := verify.ReadBody(r, rc.auth.MaxBodyBytes)
	var ev *verify.Event
	if err == nil {
		ev, err = rc.auth.Authenticate(r.Context(), r.Header, body)
	}
	a := Arrival{
		ArrivedAt:     arrivedAt,
		Path:          r.URL.Path,
		EventID:       r.Header.Get(verify.HeaderID),
		AttemptHeader: r.Header.Get(verify.HeaderAttempt),
		Timestamp:     r.Header.Get(verify.HeaderTimestamp),
		Signature:     r.Header.Get(verify.HeaderSignature),
		Body:          body,
		Verified:      err == nil,
	}
	var key eventKey
	var nth uint32
	if err != nil {
		a.Reason = verify.Reason(err)
		rc.counters.reject(a.Reason)
	} else {
		rc.counters.verified.Add(1)
		a.Attempt = ev.Attempt
		a.Envelope = &ev.Envelope
		key = keyOf(ev.WebhookID, body)
		nth = rc.events.arrive(key)
	}

	if faults.Delay > 0 && !rc.wait(r.Context(), time.Duration(faults.Delay)) {
		if a.Verified {
			rc.counters.abandoned.Add(1)
		}
		a.Outcome = OutcomeAbandoned
		rc.record(r, &a, err)
		return
	}

	switch {
	case err != nil:
		a.Outcome = OutcomeRejected
		a.Status, _, _ = verify.Classify(err)
		rc.record(r, &a, err)
		verify.WriteError(w, err)

	case faults.failing(nth):
		rc.counters.faulted.Add(1)
		switch {
		case faults.Reset:
			a.Outcome = OutcomeFaultReset
			rc.record(r, &a, nil)
			resetConnection(w)
		case faults.Hang:
			a.Outcome = OutcomeFaultHang
			rc.record(r, &a, nil)
			rc.hang(r.Context())
		default:
			a.Outcome, a.Status = OutcomeFaultStatus, faults.failStatus()
			rc.record(r, &a, nil)
			writeFault(w, a.Status, faults.RetryAfter)
		}

	default:
		a.Status = faults.successStatus()
		if rc.events.accept(key) {
			a.Outcome = OutcomeAccepted
			rc.counters.accepted.Add(1)
			rc.counters.observeLatency(arrivedAt.Sub(ev.Envelope.OccurredAt.Time))
		} else {
			a.Outcome = OutcomeDuplicate
			rc.counters.duplicates.Add(1)
		}
		rc.record(r, &a, nil)
		w.Header()["Content-Type"] = jsonContentType
		w.WriteHeader(a.Status)
		if a.Outcome == OutcomeAccepted {
			_, _ = w.Write(acceptedBody)
		} else {
			_, _ = w.Write(duplicateBody)
		}
	}
}

// record keeps the arrival (unless discarding) and logs it.
func (rc *Receiver) record(r *http.Request, a *Arrival, verifyErr error) {
	if !rc.discardArrivals {
		a.Header = r.Header.Clone()
		rc.arrivalsMu.Lock()
		rc.arrivals = append(rc.arrivals, *a)
		rc.arrivalsMu.Unlock()
	}
	if rc.logger == nil {
		return
	}
	level := slog.LevelInfo
	if !a.Verified {
		level = slog.LevelWarn
	}
	ctx := r.Context()
	if !rc.logger.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("outcome", string(a.Outcome)),
		slog.Int("status", a.Status),
		slog.String("path", a.Path),
		slog.String("event_id", a.EventID),
		slog.String("attempt", a.AttemptHeader),
	)
	if a.Envelope != nil {
		attrs = append(attrs,
			slog.String("event", a.Envelope.Event),
			slog.String("integration_id", a.Envelope.IntegrationID),
			slog.Float64("latency_ms", float64(a.ArrivedAt.Sub(a.Envelope.OccurredAt.Time).Microseconds())/1000),
		)
	}
	if verifyErr != nil {
		attrs = append(attrs, slog.String("reason", a.Reason), slog.String("error", verifyErr.Error()))
	}
	attrs = append(attrs, slog.String("remote", r.RemoteAddr), slog.Int("bytes", len(a.Body)))
	rc.logger.LogAttrs(ctx, level, "webhook", attrs...)
}

// wait sleeps for d; it returns false if the client went away first. Close
// ends the wait early (true).
func (rc *Receiver) wait(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-rc.closed:
		return true
	case <-ctx.Done():
		return false
	}
}

// hang holds the request until the client gives up, MaxHang passes or the
// receiver closes, then drops the connection without an answer.
func (rc *Receiver) hang(ctx context.Context) {
	timer := time.NewTimer(rc.maxHang)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	case <-rc.closed:
	}
	// ErrAbortHandler makes net/http close the connection (or reset the
	// HTTP/2 stream) without logging a panic.
	panic(http.ErrAbortHandler)
}

// resetConnection closes the client's connection with a TCP RST: SO_LINGER 0
// discards unsent data and aborts instead of the orderly FIN of Close.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil { // HTTP/2 cannot hijack; an aborted stream is the closest
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if tlsConn, ok := conn.(interface{ NetConn() net.Conn }); ok {
		raw = tlsConn.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}

func writeFault(w http.ResponseWriter, status, retryAfterSeconds int) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	if retryAfterSeconds > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	if status >= 300 && status <= 399 {
		h.Set("Location", "/webhooks/redirected")
	}
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"code":"injected_fault","message":"injected fault: status %d"}`+"\n", status)
}

func (rc *Receiver) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, rc.Stats())
}

func (rc *Receiver) handleGetFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, rc.Faults())
}

// maxFaultsBytes caps a PUT /faults body; a fault set is a few dozen bytes.
const maxFaultsBytes = 64 << 10

func (rc *Receiver) handlePutFaults(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFaultsBytes))
	dec.DisallowUnknownFields()
	var f Faults
	err := dec.Decode(&f)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		err = rc.SetFaults(f)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"code": "invalid_faults", "message": err.Error()})
		return
	}
	if rc.logger != nil {
		rc.logger.LogAttrs(r.Context(), slog.LevelInfo, "faults changed", slog.Any("faults", f))
	}
	writeJSON(w, http.StatusOK, f)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
