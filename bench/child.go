package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/blazelock/webhooks/internal/harness"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// The bench re-runs its own binary as child processes, so that NATS and each
// receiver are processes of their own whose CPU time and memory /proc shows
// separately from the load generator's.
//
//	bench -child nats -store DIR          a single server on a free port
//	bench -child nats -config FILE        a node of a cluster (-nats-nodes)
//	bench -child receiver [-hang] [-delay D]
//
// A child prints "ready <address>" on stdout once it listens, and stops on
// SIGTERM or when its stdin closes (the bench died).

func runChild(kind string, args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// Parent gone: stdin reaches EOF. No orphaned servers.
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	switch kind {
	case "nats":
		return childNATS(ctx, args)
	case "receiver":
		return childReceiver(ctx, args)
	default:
		return fmt.Errorf("unknown child %q", kind)
	}
}

// childNATS runs nats-server v2.15 (the module the dispatcher embeds) with
// JetStream on file storage, as a deployment would: a single server, or a
// cluster node from the config file harness.NATSCluster writes.
func childNATS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	store := fs.String("store", "", "JetStream store directory of a single server")
	config := fs.String("config", "", "nats-server config file of a cluster node")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := harness.JetStreamOptions("bench", *store, server.RANDOM_PORT)
	if *config != "" {
		var err error
		if opts, err = server.ProcessConfigFile(*config); err != nil {
			return err
		}
		// As the single server: the bench owns signals, and a log would be
		// work the single server does not do.
		opts.NoSigs, opts.NoLog = true, true
	}
	n, err := harness.StartEmbeddedNATS(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("ready %s\n", n.URL())
	<-ctx.Done()
	n.Shutdown()
	return nil
}

// childReceiver runs the reference receiver (package subscriber/receiver,
// the same handler `go run ./subscriber` serves, with DiscardArrivals as the
// binary sets it) behind a thin recorder that notes the wall-clock arrival
// time of every request answered 2xx, keyed by the event index the bench put
// into X-Blazelock-Webhook-Id. The bench reads and clears those records with
// GET /bench/arrivals and teaches the receiver secrets with POST
// /bench/secrets. The occurred_at based latency the receiver keeps itself
// has millisecond resolution, too coarse for a 3 ms goal.
//
// The recorder also counts POST requests in flight (from entering its
// ServeHTTP to leaving it, so a request held by -delay or -hang counts for
// as long as it is held) and keeps the high-water mark: GET
// /bench/concurrency answers {"max": n, "now": n, "requests": n}, where
// requests is the number of POSTs that entered since the start; with
// ?reset=1 the high-water mark starts again from the requests now in
// flight, after the answer (which still carries the old mark).
func childReceiver(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	hang := fs.Bool("hang", false, "hold every webhook until the client gives up")
	delay := fs.Duration("delay", 0, "hold every webhook response this long first (a slow endpoint)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rc, err := receiver.New(receiver.Config{
		Faults:          receiver.Faults{Hang: *hang, Delay: receiver.Duration(*delay)},
		DiscardArrivals: true,
		MaxHang:         time.Minute,
	})
	if err != nil {
		return err
	}
	rec := &recorder{rc: rc}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bench/arrivals", rec.serveArrivals)
	mux.HandleFunc("POST /bench/secrets", rec.serveSecrets)
	mux.HandleFunc("GET /bench/concurrency", rec.serveConcurrency)
	mux.Handle("/", rec)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("ready %s\n", ln.Addr())
	<-ctx.Done()
	rc.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// arrivalRecordBytes is the wire size of one record: index, unix nanos.
const arrivalRecordBytes = 16

type recorder struct {
	rc     *receiver.Receiver
	shards [16]recordShard

	inFlight atomic.Int64 // POSTs inside ServeHTTP now
	maxSeen  atomic.Int64 // high-water mark of inFlight since the last reset
	requests atomic.Int64 // POSTs that entered ServeHTTP
}

// enter counts one more POST in flight and raises the high-water mark.
func (r *recorder) enter() {
	r.requests.Add(1)
	r.raise(r.inFlight.Add(1))
}

// raise lifts the high-water mark to n if it is below.
func (r *recorder) raise(n int64) {
	for {
		m := r.maxSeen.Load()
		if n <= m || r.maxSeen.CompareAndSwap(m, n) {
			return
		}
	}
}

// concurrency is what GET /bench/concurrency answers.
type concurrency struct {
	Max      int64 `json:"max"`
	Now      int64 `json:"now"`
	Requests int64 `json:"requests"`
}

// serveConcurrency reports the in-flight POSTs and their high-water mark;
// ?reset=1 restarts the mark from the requests in flight now.
func (r *recorder) serveConcurrency(w http.ResponseWriter, req *http.Request) {
	c := concurrency{Max: r.maxSeen.Load(), Now: r.inFlight.Load(), Requests: r.requests.Load()}
	if req.URL.Query().Get("reset") == "1" {
		// Zero first, then the count: a request entering in between
		// raises the mark itself, and one that entered before is in the
		// count read after the store.
		r.maxSeen.Store(0)
		r.raise(r.inFlight.Load())
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(c)
}

type recordShard struct {
	mu   sync.Mutex
	recs []byte
	_    [32]byte
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		r.rc.ServeHTTP(w, req)
		return
	}
	r.enter()
	defer r.inFlight.Add(-1)
	at := time.Now().UnixNano()
	sw := &statusWriter{ResponseWriter: w}
	r.rc.ServeHTTP(sw, req)
	if sw.status < 200 || sw.status > 299 {
		return
	}
	idx, ok := eventIndex(req.Header.Get("X-Blazelock-Webhook-Id"))
	if !ok {
		return
	}
	s := &r.shards[idx%uint64(len(r.shards))]
	s.mu.Lock()
	s.recs = binary.LittleEndian.AppendUint64(s.recs, idx)
	s.recs = binary.LittleEndian.AppendUint64(s.recs, uint64(at))
	s.mu.Unlock()
}

// serveArrivals writes every record since the previous call and forgets them.
func (r *recorder) serveArrivals(w http.ResponseWriter, _ *http.Request) {
	var out []byte
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		out = append(out, s.recs...)
		s.recs = s.recs[:0]
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(out)
}

// serveSecrets reads "id=secret" lines.
func (r *recorder) serveSecrets(w http.ResponseWriter, req *http.Request) {
	sc := bufio.NewScanner(req.Body)
	n := 0
	for sc.Scan() {
		id, secret, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		r.rc.SetSecret(id, secret)
		n++
	}
	fmt.Fprintf(w, "%d\n", n)
}

// Event ids carry the bench's event index: a UUIDv7 whose time is the run's
// start, with byte 7 = 0xbe as a marker and the index in the last 8 bytes
// (below the RFC 4122 variant bits). They are valid UUIDs to the publisher,
// the dispatcher and the receiver, and unique within a run.
func eventID(runMillis int64, idx uint64) string {
	var u uuid.UUID
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(runMillis))
	copy(u[0:6], ts[2:8])
	u[6] = 0x70
	u[7] = 0xbe
	binary.BigEndian.PutUint64(u[8:], idx|0x8000000000000000)
	return u.String()
}

func eventIndex(id string) (uint64, bool) {
	u, err := uuid.Parse(id)
	if err != nil || u[7] != 0xbe || u[6] != 0x70 {
		return 0, false
	}
	return binary.BigEndian.Uint64(u[8:]) &^ 0x8000000000000000, true
}
