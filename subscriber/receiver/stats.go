package receiver

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/blazelock/webhooks/subscriber/verify"
)

// Stats is a snapshot of what the receiver has seen since it started.
// Received = Verified + Rejected; Verified = Accepted + Duplicates + Faulted +
// Abandoned (a request still being delayed or hung counts in Verified only).
type Stats struct {
	// Received counts every request to a webhook route.
	Received int64 `json:"received"`
	// Verified counts requests whose signature and timestamp checked out.
	Verified int64 `json:"verified"`
	// Rejected counts refused requests; RejectedBy splits them by reason
	// (verify.Reason).
	Rejected   int64            `json:"rejected"`
	RejectedBy map[string]int64 `json:"rejected_by"`
	// Accepted counts events answered 2xx for the first time: unique events.
	Accepted int64 `json:"accepted"`
	// Duplicates counts verified requests for an event id already accepted
	// (answered 2xx again, not processed twice).
	Duplicates int64 `json:"duplicates"`
	// Faulted counts verified requests answered by an injected fault.
	Faulted int64 `json:"faulted"`
	// Abandoned counts verified requests whose client gave up during Delay.
	Abandoned int64 `json:"abandoned"`
	// Latency is occurred_at → arrival of accepted events.
	Latency LatencyStats `json:"latency"`
}

// LatencyStats summarises receive latencies (envelope occurred_at to the
// arrival of the request that got the event accepted). Quantiles come from a
// log-linear histogram with about 3 % relative error; Min, Max and Mean are
// exact. Latencies below zero (sender clock ahead) count as zero.
type LatencyStats struct {
	Count      int64   `json:"count"`
	MinMillis  float64 `json:"min_ms"`
	MeanMillis float64 `json:"mean_ms"`
	P50Millis  float64 `json:"p50_ms"`
	P90Millis  float64 `json:"p90_ms"`
	P99Millis  float64 `json:"p99_ms"`
	P999Millis float64 `json:"p999_ms"`
	MaxMillis  float64 `json:"max_ms"`
}

// reasons are the rejection labels verify.Reason can return, in a fixed order
// so each has a lock-free counter slot.
var reasons = [...]string{
	verify.CodeMissingHeader, verify.CodeMalformedTimestamp, verify.CodeTimestampTooOld,
	verify.CodeTimestampInFuture, verify.CodeInvalidSignature, "unknown_integration", "no_secret",
	verify.CodeBodyTooLarge, verify.CodeMalformedEnvelope, verify.CodeUnavailable,
}

func reasonIndex(reason string) int {
	for i, r := range reasons {
		if r == reason {
			return i
		}
	}
	return len(reasons) - 1 // unavailable: anything unexpected
}

// counters are plain atomics: the hot path never takes a lock to count, and
// Prometheus reads them through CounterFuncs at scrape time.
type counters struct {
	received, verified, rejected atomic.Int64
	accepted, duplicates         atomic.Int64
	faulted, abandoned           atomic.Int64
	rejectedBy                   [len(reasons)]atomic.Int64
	_                            [64]byte // keep the histogram's hot words off these cache lines
	latency                      latencyHistogram
	promLatency                  prometheus.Histogram
}

// latencyBuckets cover a local sub-millisecond delivery up to one that waited
// through the whole retry schedule (~16 h, docs/contract.md, Retry schedule).
var latencyBuckets = []float64{
	0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 57600,
}

func (c *counters) register(reg *prometheus.Registry) {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "blazelock_receiver", Name: name, Help: help,
		}, func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(
		counter("received_total", "Requests to a webhook route.", &c.received),
		counter("verified_total", "Requests whose signature and timestamp verified.", &c.verified),
		counter("accepted_total", "Events answered 2xx for the first time (unique events).", &c.accepted),
		counter("duplicates_total", "Verified requests for an already accepted event id.", &c.duplicates),
		counter("faulted_total", "Verified requests answered by an injected fault.", &c.faulted),
		counter("abandoned_total", "Verified requests whose client gave up during the injected delay.", &c.abandoned),
	)
	for i, reason := range reasons {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace:   "blazelock_receiver",
			Name:        "rejected_total",
			Help:        "Refused webhook requests, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(c.rejectedBy[i].Load()) }))
	}
	c.promLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "blazelock_receiver",
		Name:      "receive_latency_seconds",
		Help:      "Envelope occurred_at to the arrival of the request that got the event accepted.",
		Buckets:   latencyBuckets,
	})
	reg.MustRegister(c.promLatency,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

func (c *counters) reject(reason string) {
	c.rejected.Add(1)
	c.rejectedBy[reasonIndex(reason)].Add(1)
}

func (c *counters) observeLatency(d time.Duration) {
	if d < 0 {
		d = 0
	}
	c.latency.observe(d)
	if c.promLatency != nil {
		c.promLatency.Observe(d.Seconds())
	}
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Received:   c.received.Load(),
		Verified:   c.verified.Load(),
		Rejected:   c.rejected.Load(),
		RejectedBy: make(map[string]int64),
		Accepted:   c.accepted.Load(),
		Duplicates: c.duplicates.Load(),
		Faulted:    c.faulted.Load(),
		Abandoned:  c.abandoned.Load(),
		Latency:    c.latency.snapshot(),
	}
	for i, reason := range reasons {
		if n := c.rejectedBy[i].Load(); n > 0 {
			s.RejectedBy[reason] = n
		}
	}
	return s
}

// latencyHistogram is a lock-free log-linear histogram of microseconds:
// values below 64 µs have their own bucket, above that each power of two is
// split into 32 buckets (≤ 3 % relative error), up to 2^41 µs (~25 days).
type latencyHistogram struct {
	count, sumMicros atomic.Int64
	minMicros        atomic.Int64 // stored +1 so zero means "no value yet"
	maxMicros        atomic.Int64
	buckets          [histBuckets]atomic.Int64
}

const (
	histSubBits   = 5
	histSub       = 1 << histSubBits // 32
	histMaxExp    = 41 - histSubBits - 1
	histBuckets   = 2*histSub + histMaxExp*histSub
	histMaxMicros = int64(1)<<41 - 1
)

func histIndex(v int64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - histSubBits - 1 // v>>e is in [32, 63]
	return 2*histSub + (e-1)*histSub + int(v>>e) - histSub
}

// histMid is a representative value (the middle) of bucket i.
func histMid(i int) float64 {
	if i < 2*histSub {
		return float64(i)
	}
	e := (i-2*histSub)/histSub + 1
	m := int64((i-2*histSub)%histSub + histSub)
	lo := m << e
	hi := (m+1)<<e - 1
	return float64(lo+hi) / 2
}

func (h *latencyHistogram) observe(d time.Duration) {
	v := d.Microseconds()
	if v > histMaxMicros {
		v = histMaxMicros
	}
	h.buckets[histIndex(v)].Add(1)
	h.count.Add(1)
	h.sumMicros.Add(v)
	for {
		cur := h.minMicros.Load()
		if cur != 0 && cur-1 <= v || h.minMicros.CompareAndSwap(cur, v+1) {
			break
		}
	}
	for {
		cur := h.maxMicros.Load()
		if cur >= v || h.maxMicros.CompareAndSwap(cur, v) {
			break
		}
	}
}

func (h *latencyHistogram) snapshot() LatencyStats {
	var counts [histBuckets]int64
	var total int64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return LatencyStats{}
	}
	quantile := func(q float64) float64 {
		rank := int64(math.Ceil(q * float64(total)))
		if rank < 1 {
			rank = 1
		}
		var seen int64
		for i, n := range counts {
			seen += n
			if seen >= rank {
				return histMid(i)
			}
		}
		return histMid(histBuckets - 1)
	}
	ms := func(micros float64) float64 { return math.Round(micros) / 1000 }
	minV, maxV := float64(h.minMicros.Load()-1), float64(h.maxMicros.Load())
	clamp := func(v float64) float64 { return math.Min(math.Max(v, minV), maxV) }
	return LatencyStats{
		Count:      total,
		MinMillis:  ms(minV),
		MeanMillis: ms(float64(h.sumMicros.Load()) / float64(h.count.Load())),
		P50Millis:  ms(clamp(quantile(0.50))),
		P90Millis:  ms(clamp(quantile(0.90))),
		P99Millis:  ms(clamp(quantile(0.99))),
		P999Millis: ms(clamp(quantile(0.999))),
		MaxMillis:  ms(maxV),
	}
}
