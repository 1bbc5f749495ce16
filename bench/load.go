package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/sign"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/publisher"
	"github.com/blazelock/webhooks/schemas"
)

// integration is one configured webhook.
type integration struct {
	id, secret, url string
	receiver        *proc
	hanging         bool
}

// timeLog maps event indexes to unix nanoseconds. It has one writer; the
// drain check reads it while the writer still runs, so chunks and values
// are atomic. It holds up to maxTimeChunks*timeChunk events (268 million).
type timeLog struct {
	chunks [maxTimeChunks]atomic.Pointer[[timeChunk]atomic.Int64]
}

const (
	timeChunk     = 1 << 16
	maxTimeChunks = 1 << 12
)

func (l *timeLog) set(i uint64, v int64) {
	c := i / timeChunk
	if c >= maxTimeChunks {
		return // beyond any run's size; the event then counts as lost
	}
	chunk := l.chunks[c].Load()
	if chunk == nil {
		chunk = new([timeChunk]atomic.Int64)
		l.chunks[c].Store(chunk)
	}
	chunk[i%timeChunk].Store(v)
}

func (l *timeLog) get(i uint64) int64 {
	c := i / timeChunk
	if c >= maxTimeChunks {
		return 0
	}
	chunk := l.chunks[c].Load()
	if chunk == nil {
		return 0
	}
	return chunk[i%timeChunk].Load()
}

// tracker follows one scenario's events from publish to arrival.
type tracker struct {
	runMillis int64
	// integrationOf says which integration event i goes to.
	integrationOf func(i uint64) int

	published timeLog // written by the publisher goroutine
	arrived   timeLog // first arrival, written by the collector goroutine

	sent       atomic.Int64 // publish calls started (indexes 0..sent-1)
	acked      atomic.Int64 // stored by JetStream
	failed     atomic.Int64 // not stored after retries
	delivered  atomic.Int64 // distinct events arrived (2xx)
	duplicates atomic.Int64 // 2xx arrivals of an event already arrived
	unknown    atomic.Int64 // arrivals of an index never published
	// perIntegration counts distinct events arrived per integration (by
	// integrationOf), when it is not nil.
	perIntegration []atomic.Int64

	failedMu  sync.Mutex
	failedIdx map[uint64]bool // events JetStream never stored
}

func (t *tracker) markFailed(i uint64) {
	t.failedMu.Lock()
	defer t.failedMu.Unlock()
	if t.failedIdx == nil {
		t.failedIdx = map[uint64]bool{}
	}
	t.failedIdx[i] = true
	t.failed.Add(1)
}

func (t *tracker) isFailed(i uint64) bool {
	t.failedMu.Lock()
	defer t.failedMu.Unlock()
	return t.failedIdx[i]
}

// drainCheck returns a function that reports whether every stored event
// the filter selects has arrived. A cursor per name remembers how far that
// is already known, so polling it is cheap.
func (t *tracker) drainCheck() func(name string, filter func(uint64) bool) bool {
	cursors := map[string]uint64{}
	return func(name string, filter func(uint64) bool) bool {
		if t.acked.Load()+t.failed.Load() < t.sent.Load() {
			return false
		}
		n := uint64(t.sent.Load())
		i := cursors[name]
		for ; i < n; i++ {
			if filter(i) && t.arrived.get(i) == 0 && !t.isFailed(i) {
				break
			}
		}
		cursors[name] = i
		return i == n
	}
}

// bodies keeps one current 1 KiB envelope per integration, rebuilt by
// publisher.Build every refresh so occurred_at stays close to the truth
// while the per-event cost is only the NATS publish. The event id is not
// part of the body (it travels in Nats-Msg-Id and X-Blazelock-Webhook-Id),
// so sharing a body between events of one integration changes nothing the
// dispatcher does: every message is validated, looked up, signed and sent.
type bodies struct {
	pub      *publisher.Publisher
	ints     []integration
	subjects []string
	current  []atomic.Pointer[[]byte]
}

func newBodies(ints []integration) (*bodies, error) {
	b := &bodies{pub: publisher.New(nil), ints: ints, subjects: make([]string, len(ints)), current: make([]atomic.Pointer[[]byte], len(ints))}
	for i, in := range ints {
		b.subjects[i] = natsinfra.EventSubject(in.id, schemas.EventCompleted)
	}
	return b, b.refresh()
}

func (b *bodies) refresh() error {
	now := schemas.At(time.Now())
	for i, in := range b.ints {
		body, err := buildBody(b.pub, in.id, now)
		if err != nil {
			return err
		}
		b.current[i].Store(&body)
	}
	return nil
}

func (b *bodies) run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = b.refresh()
		}
	}
}

// eventBytes is the size of every event body, as DESIGN's goals specify.
const eventBytes = 1024

// buildBody builds a file_scan.completed envelope of exactly eventBytes with
// publisher.Build (so it is schema-valid), padding the file name.
func buildBody(pub *publisher.Publisher, integrationID string, at schemas.Timestamp) ([]byte, error) {
	ref := "bench"
	duration := int64(1840)
	scan := schemas.FileScan{
		ID: uuid.Must(uuid.NewV7()).String(), ExternalReferenceID: &ref, Status: schemas.StatusCompleted,
		ExecutionMode: schemas.ModeAsync, FileName: "invoice.pdf", FileSize: 245761, SubmittedAt: at,
		FileType: "application/pdf",
		FileHash: &schemas.FileHash{
			MD5:    "d41d8cd98f00b204e9800998ecf8427e",
			SHA1:   "da39a3ee5e6b4b0d3255bfef95601890afd80709",
			SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		},
		Result:      &schemas.ScanResult{Safe: false, Detailed: "malicious", Findings: []schemas.Finding{{Name: "Win.Trojan.Agent-1234", Category: "trojan"}}},
		CompletedAt: &at, ScanDurationMillis: &duration,
	}
	ev := publisher.Event{ID: uuid.Nil.String(), Name: schemas.EventCompleted, IntegrationID: integrationID, OccurredAt: at, Data: scan}
	body, _, err := pub.Build(ev)
	if err != nil {
		return nil, err
	}
	if len(body) > eventBytes {
		return nil, fmt.Errorf("base event is %d bytes, over %d", len(body), eventBytes)
	}
	scan.FileName = strings.Repeat("x", eventBytes-len(body)) + scan.FileName
	ev.Data = scan
	body, _, err = pub.Build(ev)
	if err != nil {
		return nil, err
	}
	if len(body) != eventBytes {
		return nil, fmt.Errorf("event is %d bytes, want %d", len(body), eventBytes)
	}
	return body, nil
}

// pending is a publish waiting for its PubAck.
type pending struct {
	idx uint64
	msg *nats.Msg
	ack jetstream.PubAckFuture
}

// publisherLoop publishes events asynchronously (PublishMsgAsync, up to 4096
// unacknowledged) until ctx ends. pace decides when the next event may go:
// it blocks until then and returns false to stop.
func (t *tracker) publisherLoop(ctx context.Context, js jetstream.JetStream, b *bodies, pace func(i uint64) bool) {
	acks := make(chan pending, 8192)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for p := range acks {
			select {
			case <-p.ack.Ok():
				t.acked.Add(1)
			case <-p.ack.Err():
				// Same Nats-Msg-Id: JetStream keeps at most one copy.
				ok := false
				for range 3 {
					ackCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := js.PublishMsg(ackCtx, p.msg)
					cancel()
					if err == nil {
						ok = true
						break
					}
				}
				if ok {
					t.acked.Add(1)
				} else {
					t.markFailed(p.idx)
				}
			}
		}
	}()
	defer func() { close(acks); wg.Wait() }()
	for i := uint64(0); ; i++ {
		if ctx.Err() != nil || !pace(i) {
			return
		}
		in := t.integrationOf(i)
		msg := &nats.Msg{
			Subject: b.subjects[in],
			Data:    *b.current[in].Load(),
			Header:  nats.Header{jetstream.MsgIDHeader: []string{eventID(t.runMillis, i)}},
		}
		t.published.set(i, time.Now().UnixNano())
		// Counted before the publish, so an arrival can never be seen
		// before its index counts as sent.
		t.sent.Add(1)
		f, err := js.PublishMsgAsync(msg)
		if err != nil {
			// Not sent at all (the async window is stuck): publish in
			// line so the event is stored before moving on.
			ackCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = js.PublishMsg(ackCtx, msg)
			cancel()
			if err != nil {
				t.markFailed(i)
			} else {
				t.acked.Add(1)
			}
			continue
		}
		acks <- pending{idx: i, msg: msg, ack: f}
	}
}

// paceRate spreads events evenly at rate per second from start.
func paceRate(ctx context.Context, start time.Time, rate float64, until time.Time) func(uint64) bool {
	interval := float64(time.Second) / rate
	return func(i uint64) bool {
		due := start.Add(time.Duration(float64(i) * interval))
		if !due.Before(until) {
			return false
		}
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(d):
			}
		}
		return true
	}
}

// paceWindow publishes as fast as possible while fewer than window events
// are published but not yet delivered: the stream always holds a backlog
// for the dispatchers, and the publisher runs alongside them (as DESIGN's
// goal says) without flooding memory with an ever-growing backlog.
func (t *tracker) paceWindow(ctx context.Context, window int64, until time.Time) func(uint64) bool {
	return func(uint64) bool {
		for t.sent.Load()-t.delivered.Load() >= window {
			if time.Now().After(until) {
				return false
			}
			select {
			case <-ctx.Done():
				return false
			case <-time.After(time.Millisecond):
			}
		}
		return time.Now().Before(until)
	}
}

// collect fetches arrival records from the receivers every interval until
// ctx ends, then once more.
func (t *tracker) collect(ctx context.Context, receivers []*proc, interval time.Duration) {
	client := &http.Client{Timeout: 10 * time.Second}
	fetch := func() {
		for _, r := range receivers {
			resp, err := client.Get("http://" + r.addr + "/bench/arrivals")
			if err != nil {
				continue
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for len(raw) >= arrivalRecordBytes {
				idx := binary.LittleEndian.Uint64(raw)
				at := int64(binary.LittleEndian.Uint64(raw[8:]))
				raw = raw[arrivalRecordBytes:]
				switch {
				case idx >= uint64(t.sent.Load()):
					t.unknown.Add(1)
				case t.arrived.get(idx) == 0:
					t.arrived.set(idx, at)
					t.delivered.Add(1)
					if t.perIntegration != nil {
						if in := t.integrationOf(idx); in >= 0 && in < len(t.perIntegration) {
							t.perIntegration[in].Add(1)
						}
					}
				default:
					t.duplicates.Add(1)
				}
			}
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fetch()
			return
		case <-tick.C:
			fetch()
		}
	}
}

// ceilingResult is the raw HTTP client's run.
type ceilingResult struct {
	Requests   int64
	Errors     int64
	Window     time.Duration
	Throughput float64
	Latencies  []int64 // request round trips inside the window, ns
}

// runCeiling posts the same signed 1 KiB bodies the dispatcher sends to the
// same receiver with `concurrency` workers over keep-alive connections:
// what this machine's plain Go HTTP client achieves, for the ratio.
func runCeiling(ctx context.Context, ints []integration, b *bodies, concurrency int, warmup, window time.Duration) ceilingResult {
	transport := &http.Transport{MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency, IdleConnTimeout: time.Minute}
	client := &http.Client{Transport: transport, Timeout: 15 * time.Second}
	defer transport.CloseIdleConnections()
	runMillis := time.Now().UnixMilli()
	start := time.Now()
	windowStart, windowEnd := start.Add(warmup), start.Add(warmup+window)
	var next atomic.Uint64
	var ok, errs atomic.Int64
	lat := make([][]int64, concurrency)
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd := bytes.NewReader(nil)
			for ctx.Err() == nil {
				i := next.Add(1)
				in := int(i % uint64(len(ints)))
				body := *b.current[in].Load()
				ts := time.Now().Unix()
				rd.Reset(body)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ints[in].url, rd)
				req.Header["Content-Type"] = []string{"application/json"}
				req.Header["X-Blazelock-Webhook-Timestamp"] = []string{strconv.FormatInt(ts, 10)}
				req.Header["X-Blazelock-Webhook-Signature"] = []string{sign.Signature(ints[in].secret, ts, body)}
				req.Header["X-Blazelock-Webhook-Id"] = []string{eventID(runMillis, i)}
				req.Header["X-Blazelock-Webhook-Attempt"] = []string{"1"}
				sent := time.Now()
				if sent.After(windowEnd) {
					return
				}
				resp, err := client.Do(req)
				done := time.Now()
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if sent.Before(windowStart) || done.After(windowEnd) {
					continue
				}
				if err != nil || resp.StatusCode/100 != 2 {
					errs.Add(1)
					continue
				}
				ok.Add(1)
				lat[w] = append(lat[w], done.Sub(sent).Nanoseconds())
			}
		}()
	}
	wg.Wait()
	res := ceilingResult{Requests: ok.Load(), Errors: errs.Load(), Window: window}
	res.Throughput = float64(res.Requests) / window.Seconds()
	for _, l := range lat {
		res.Latencies = append(res.Latencies, l...)
	}
	return res
}
