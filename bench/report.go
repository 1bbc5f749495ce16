package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the JSON document a run writes.
type Report struct {
	Machine   Machine        `json:"machine"`
	StartedAt time.Time      `json:"started_at"`
	Command   string         `json:"command"`
	Settings  Settings       `json:"settings"`
	Ceiling   *CeilingResult `json:"ceiling,omitempty"`
	Scenarios []*Result      `json:"scenarios"`
}

// Machine is where the run happened.
type Machine struct {
	CPUs       int     `json:"cpus"`
	CPUModel   string  `json:"cpu_model"`
	MemoryGiB  float64 `json:"memory_gib"`
	Kernel     string  `json:"kernel"`
	GOARCH     string  `json:"goarch"`
	Go         string  `json:"go"`
	NATSServer string  `json:"nats_server"`
	Redis      string  `json:"redis"`
}

// Settings are the run's knobs.
type Settings struct {
	Concurrency   int               `json:"concurrency"`
	Integrations  int               `json:"integrations"`
	EventBytes    int               `json:"event_bytes"`
	Window        int64             `json:"max_mode_backlog_window"`
	LogLevel      string            `json:"dispatcher_log_level"`
	WarmupSeconds float64           `json:"warmup_s"`
	WindowSeconds float64           `json:"window_s"`
	ExtraEnv      map[string]string `json:"extra_dispatcher_env,omitempty"`
	// NATSNodes is -nats-nodes when above 1: the scenarios ran on a
	// JetStream cluster of that many servers, every stream and bucket
	// replicated on each (DISPATCHER_NATS_REPLICAS).
	NATSNodes int `json:"nats_nodes,omitempty"`
}

// CeilingResult is the plain HTTP client's run.
type CeilingResult struct {
	StartedAt     time.Time      `json:"started_at"`
	Concurrency   int            `json:"concurrency"`
	Requests      int64          `json:"requests"`
	Errors        int64          `json:"errors"`
	WindowSeconds float64        `json:"window_s"`
	Throughput    float64        `json:"throughput_per_s"`
	Latency       LatencyStats   `json:"round_trip_ms"`
	LoadAvg       [3]float64     `json:"load_avg_after"`
	Processes     []ProcessStats `json:"processes"`
}

// Result is one scenario's outcome.
type Result struct {
	Name                string            `json:"name"`
	Description         string            `json:"description"`
	StartedAt           time.Time         `json:"started_at"`
	Dispatchers         int               `json:"dispatchers"`
	Integrations        int               `json:"integrations"`
	HangingIntegrations int               `json:"hanging_integrations,omitempty"`
	Mode                string            `json:"mode"`
	OfferedRate         float64           `json:"offered_rate_per_s,omitempty"`
	WarmupSeconds       float64           `json:"warmup_s"`
	WindowSeconds       float64           `json:"window_s"`
	DrainSeconds        float64           `json:"drain_s"`
	DispatcherEnv       map[string]string `json:"dispatcher_env"`
	// All counts every event of the run (warm-up and drain included).
	All Subset `json:"all"`
	// Healthy: events to integrations whose endpoint is healthy (all of
	// them unless the scenario has hanging ones).
	Healthy Subset  `json:"healthy"`
	Hanging *Subset `json:"hanging,omitempty"`
	// Throughput and Latency repeat Healthy's for the table.
	Throughput float64      `json:"throughput_per_s"`
	Latency    LatencyStats `json:"latency_ms"`
	// RatioToCeiling is Throughput over the raw ceiling (max mode only).
	RatioToCeiling float64 `json:"ratio_to_ceiling,omitempty"`
	// CostRatioToCeiling is the ceiling's CPU time per request (client and
	// receiver) over this scenario's CPU time per delivery (every process):
	// the throughput ratio the two would have on the same cores when both
	// are CPU-bound, far less sensitive to other load on the machine than
	// RatioToCeiling (max mode only).
	CostRatioToCeiling float64 `json:"cost_ratio_to_ceiling,omitempty"`
	PublishFailed      int64   `json:"publish_failed"`
	// UnknownArrivals are arrivals whose index was never published (must be 0).
	UnknownArrivals    int64          `json:"unknown_arrivals"`
	Processes          []ProcessStats `json:"processes"`
	MachineBusyPercent float64        `json:"machine_busy_percent"`
	LoadAvgBefore      [3]float64     `json:"load_avg_before"`
	LoadAvgAfter       [3]float64     `json:"load_avg_after"`
	Memory             []MemSample    `json:"memory,omitempty"`
	MemoryTrend        []Trend        `json:"memory_trend,omitempty"`
	Notes              []string       `json:"notes,omitempty"`
	// The flow-control scenarios' own numbers (see flow.go).
	Burst    *BurstStats    `json:"burst,omitempty"`
	Delayed  *DelayedStats  `json:"delayed,omitempty"`
	Recovery *RecoveryStats `json:"recovery,omitempty"`
}

// DrainSeries is how a backlog drained: first arrivals in every wall-clock
// second from its start (burst: the first publish; recovery: the heal) up
// to the last arrival. The last entry covers a partial second.
type DrainSeries struct {
	// FirstSeconds is the start to the first arrival.
	FirstSeconds float64 `json:"first_delivery_s"`
	// Seconds is the start to the last arrival: the drain time.
	Seconds float64 `json:"drain_s"`
	// Delivered counts the events that arrived after the start; Rate is
	// Delivered over Seconds.
	Delivered int64   `json:"drained"`
	Rate      float64 `json:"drain_rate_per_s"`
	PerSecond []int64 `json:"deliveries_per_s"`
	// ZeroSeconds counts the entries of PerSecond with no delivery: the
	// seconds without one before the backlog was drained.
	ZeroSeconds int `json:"zero_seconds"`
	// TimedOut: not every event arrived within -flow-wait.
	TimedOut bool `json:"timed_out,omitempty"`
}

// BurstStats is a burst scenario's drain. Result.Latency is publish →
// arrival of every event, Result.Throughput the drain rate.
type BurstStats struct {
	Events int64 `json:"events"`
	// PublishSeconds is the first publish call to the last; StoredSeconds
	// the first publish call to JetStream's ack of every event.
	PublishSeconds float64 `json:"publish_s"`
	StoredSeconds  float64 `json:"stored_s"`
	DrainSeries
	// P99OverDrain is the p99 latency over the drain time. Every event is
	// published after the first and arrives by the last arrival, so it is
	// at most 1 by construction.
	P99OverDrain float64 `json:"p99_over_drain"`
	// DrainRateRatioToBurst20 is the drain rate over burst20's in the same
	// run (when burst20 ran).
	DrainRateRatioToBurst20 float64 `json:"drain_rate_ratio_to_burst20,omitempty"`
}

// DelayedStats are the slow and cap2 scenarios' numbers: integration 0 is
// on a receiver that holds every response for Delay, kept at Backlog
// events published but not yet arrived. Window numbers are of the
// measurement window; arrival times at that receiver are when the request
// came in, before the delay.
type DelayedStats struct {
	Delay   string `json:"delay"`
	Backlog int64  `json:"backlog"`
	// Cap is the DISPATCHER_ENDPOINT_MAX_CONCURRENCY the scenario set.
	Cap int `json:"cap,omitempty"`
	// Delayed counts the events to the delayed receiver; its Throughput is
	// the distinct events arrived there per second of the window.
	Delayed Subset `json:"delayed"`
	// RequestsPerSecond counts every POST that reached the delayed
	// receiver in the window (its own counter: retries and requests given
	// up during the delay too).
	RequestsPerSecond float64 `json:"requests_per_s"`
	// MaxConcurrency is the delayed receiver's high-water mark of POSTs in
	// flight from its start to the window's end; MaxConcurrencyWindow that
	// of the window alone.
	MaxConcurrency       int64 `json:"max_concurrency"`
	MaxConcurrencyWindow int64 `json:"max_concurrency_in_window"`
	// IdealPerSecond is Cap over Delay (cap2).
	IdealPerSecond float64 `json:"ideal_per_s,omitempty"`
	// FastOfferedRate is the rate offered to the fast integration (slow),
	// whose numbers are Result.Healthy.
	FastOfferedRate float64 `json:"fast_offered_per_s,omitempty"`
}

// RecoveryStats is the recovery scenario's: a hanging endpoint healed
// with a backlog waiting. The DrainSeries starts at the heal.
type RecoveryStats struct {
	Events int64 `json:"events"`
	// StoredSeconds is the first publish to JetStream's ack of every event;
	// SettleSeconds the wait after that before the heal.
	StoredSeconds float64 `json:"stored_s"`
	SettleSeconds float64 `json:"settle_s"`
	// ConsumersAtHeal is the JetStream consumers' state just before the heal.
	ConsumersAtHeal []ConsumerState `json:"consumers_at_heal,omitempty"`
	// RequestsBeforeHeal counts the POSTs the hanging receiver got before
	// the heal; HeldAtHeal those it was holding at the heal.
	RequestsBeforeHeal int64 `json:"requests_before_heal"`
	HeldAtHeal         int64 `json:"held_at_heal"`
	// ArrivedBeforeHeal must be 0: the receiver answered nothing before.
	ArrivedBeforeHeal int64 `json:"arrived_before_heal"`
	DrainSeries
}

// ConsumerState is one JetStream consumer at a moment.
type ConsumerState struct {
	Stream         string `json:"stream"`
	StreamMessages uint64 `json:"stream_messages"`
	Consumer       string `json:"consumer"`
	NumPending     uint64 `json:"num_pending"`
	NumAckPending  int    `json:"num_ack_pending"`
	NumRedelivered int    `json:"num_redelivered"`
}

// Subset counts a group of events.
type Subset struct {
	Published  int64 `json:"published"`
	Delivered  int64 `json:"delivered"`
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	// InWindow counts arrivals inside the measurement window; Throughput is
	// InWindow per second.
	InWindow   int64        `json:"delivered_in_window"`
	Throughput float64      `json:"throughput_per_s"`
	Latency    LatencyStats `json:"latency_ms"`
}

// LatencyStats are exact order statistics in milliseconds.
type LatencyStats struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// ProcessStats is one process's cost in the measurement window.
type ProcessStats struct {
	Name       string  `json:"name"`
	CPUSeconds float64 `json:"cpu_s"`
	// CPUPercent is of one core (200 % is both cores of a 2-core machine).
	CPUPercent float64 `json:"cpu_percent"`
	// CPUMicrosPerDelivery is CPU time over deliveries (ceiling: requests)
	// in the window: the cost of one, robust to other load on the machine.
	CPUMicrosPerDelivery float64 `json:"cpu_us_per_delivery"`
	PeakRSSMiB           float64 `json:"peak_rss_mib"`
}

// MemSample is one moment of the soak.
type MemSample struct {
	Seconds      float64            `json:"t_s"`
	RSSMiB       map[string]float64 `json:"rss_mib"`
	HeapInuseMiB map[string]float64 `json:"heap_inuse_mib,omitempty"`
}

// Trend is a least-squares line through a process's memory samples after
// the first fifth of the soak (warm-up).
type Trend struct {
	Process        string  `json:"process"`
	Metric         string  `json:"metric"`
	FirstMiB       float64 `json:"first_mib"`
	LastMiB        float64 `json:"last_mib"`
	SlopeMiBPerMin float64 `json:"slope_mib_per_min"`
	// FloorFirstMiB and FloorLastMiB are the lowest sample in the first and
	// in the last fifth of the samples used: a leak raises the floor, while
	// load spikes (a backlog after a stall) only raise single samples.
	FloorFirstMiB float64 `json:"floor_first_mib"`
	FloorLastMiB  float64 `json:"floor_last_mib"`
}

// subsetStats computes the counts for events the filter selects: arrivals
// in [ws, we) make the throughput; events published in [ws, we) make the
// latency (first arrival minus publish).
func subsetStats(tr *tracker, filter func(uint64) bool, ws, we time.Time) Subset {
	var s Subset
	var lat []int64
	w0, w1 := ws.UnixNano(), we.UnixNano()
	n := uint64(tr.sent.Load())
	for i := uint64(0); i < n; i++ {
		if !filter(i) {
			continue
		}
		pub := tr.published.get(i)
		if pub == 0 || tr.isFailed(i) {
			continue
		}
		s.Published++
		arr := tr.arrived.get(i)
		if arr == 0 {
			s.Lost++
			continue
		}
		s.Delivered++
		if arr >= w0 && arr < w1 {
			s.InWindow++
		}
		if pub >= w0 && pub < w1 {
			lat = append(lat, arr-pub)
		}
	}
	s.Duplicates = tr.duplicates.Load() // not split by subset: the receivers report them together
	s.Throughput = float64(s.InWindow) / we.Sub(ws).Seconds()
	s.Latency = latencyStats(lat)
	return s
}

func latencyStats(ns []int64) LatencyStats {
	if len(ns) == 0 {
		return LatencyStats{}
	}
	slices.Sort(ns)
	var sum float64
	for _, v := range ns {
		sum += float64(v)
	}
	q := func(p float64) float64 {
		// Nearest rank.
		r := int(math.Ceil(p*float64(len(ns)))) - 1
		r = max(0, min(r, len(ns)-1))
		return ms(ns[r])
	}
	return LatencyStats{Count: int64(len(ns)), Mean: round3(sum / float64(len(ns)) / 1e6),
		P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: ms(ns[len(ns)-1])}
}

func ms(ns int64) float64 { return round3(float64(ns) / 1e6) }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// finish fills in what needs several scenarios: ratios and memory trends.
func (r *Report) finish() {
	for _, s := range r.Scenarios {
		// The ratio means something only where the dispatcher ran flat out.
		if r.Ceiling != nil && r.Ceiling.Throughput > 0 && s.Mode == "max" {
			s.RatioToCeiling = round3(s.Throughput / r.Ceiling.Throughput)
			if all := sumUs(s.Processes); all > 0 {
				s.CostRatioToCeiling = round3(sumUs(r.Ceiling.Processes) / all)
			}
		}
		s.MemoryTrend = memoryTrends(s.Memory)
	}
	r.burstRatios()
}

// burstRatios sets each burst scenario's drain rate over burst20's, once
// burst20 has run.
func (r *Report) burstRatios() {
	var base *BurstStats
	for _, s := range r.Scenarios {
		if s.Name == "burst20" && s.Burst != nil {
			base = s.Burst
		}
	}
	if base == nil || base.Rate <= 0 {
		return
	}
	for _, s := range r.Scenarios {
		if s.Burst != nil && s.Burst != base {
			s.Burst.DrainRateRatioToBurst20 = round3(s.Burst.Rate / base.Rate)
		}
	}
}

func memoryTrends(samples []MemSample) []Trend {
	if len(samples) < 5 {
		return nil
	}
	samples = samples[len(samples)/5:]
	var out []Trend
	add := func(metric string, get func(MemSample) map[string]float64) {
		names := map[string]bool{}
		for n := range get(samples[0]) {
			names[n] = true
		}
		sorted := make([]string, 0, len(names))
		for n := range names {
			sorted = append(sorted, n)
		}
		slices.Sort(sorted)
		for _, n := range sorted {
			var xs, ys []float64
			for _, s := range samples {
				if v, ok := get(s)[n]; ok {
					xs = append(xs, s.Seconds/60)
					ys = append(ys, v)
				}
			}
			if len(xs) < 3 {
				continue
			}
			fifth := max(1, len(ys)/5)
			out = append(out, Trend{Process: n, Metric: metric, FirstMiB: round3(ys[0]), LastMiB: round3(ys[len(ys)-1]),
				SlopeMiBPerMin: round3(slope(xs, ys)),
				FloorFirstMiB:  round3(slices.Min(ys[:fifth])), FloorLastMiB: round3(slices.Min(ys[len(ys)-fifth:]))})
		}
	}
	add("rss", func(s MemSample) map[string]float64 { return s.RSSMiB })
	add("heap_inuse", func(s MemSample) map[string]float64 { return s.HeapInuseMiB })
	return out
}

func slope(xs, ys []float64) float64 {
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(ys))
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func (r *Report) totalLost() int64 {
	var n int64
	for _, s := range r.Scenarios {
		n += s.All.Lost
	}
	return n
}

func (res *Result) printSummary(w io.Writer) {
	h := res.Healthy
	fmt.Fprintf(w, "   published %d, delivered %d, lost %d, duplicates %d; %.0f deliveries/s in the %ss window; latency p50 %.2f p90 %.2f p99 %.2f max %.2f ms\n",
		res.All.Published, res.All.Delivered, res.All.Lost, res.All.Duplicates, h.Throughput, formatSeconds(res.WindowSeconds),
		h.Latency.P50, h.Latency.P90, h.Latency.P99, h.Latency.Max)
	if res.Hanging != nil {
		fmt.Fprintf(w, "   hanging integrations: published %d, delivered %d (after healing), lost %d\n", res.Hanging.Published, res.Hanging.Delivered, res.Hanging.Lost)
	}
	var parts []string
	for _, p := range res.Processes {
		parts = append(parts, fmt.Sprintf("%s %.0f%% (%.0f µs/delivery) %.0fMiB", p.Name, p.CPUPercent, p.CPUMicrosPerDelivery, p.PeakRSSMiB))
	}
	fmt.Fprintf(w, "   CPU (of one core) and peak RSS: %s; machine busy %.0f%%; load average %v → %v\n",
		strings.Join(parts, ", "), res.MachineBusyPercent, res.LoadAvgBefore, res.LoadAvgAfter)
	if res.PublishFailed > 0 {
		fmt.Fprintf(w, "   WARNING: %d events were never stored by JetStream (not counted as published)\n", res.PublishFailed)
	}
	if res.UnknownArrivals > 0 {
		fmt.Fprintf(w, "   WARNING: %d arrivals carried an event index that was never published\n", res.UnknownArrivals)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "   note: %s\n", n)
	}
	if line := res.flowLine(); line != "" {
		fmt.Fprintf(w, "   %s\n", line)
	}
	if s := res.drainSeries(); s != nil {
		fmt.Fprintf(w, "   deliveries per second: %s\n", formatPerSecond(s.PerSecond))
	}
}

func (res *Result) drainSeries() *DrainSeries {
	switch {
	case res.Burst != nil:
		return &res.Burst.DrainSeries
	case res.Recovery != nil:
		return &res.Recovery.DrainSeries
	}
	return nil
}

// flowLine is a flow-control scenario's result in one line, with the
// issue's goals in brackets; "" for other scenarios.
func (res *Result) flowLine() string {
	lostDup := fmt.Sprintf("lost %d, duplicates %d", res.All.Lost, res.All.Duplicates)
	switch {
	case res.Burst != nil:
		b := res.Burst
		ratio := "(no burst20 result yet)"
		if res.Name == "burst20" {
			ratio = "(the reference)"
		} else if b.DrainRateRatioToBurst20 > 0 {
			ratio = fmt.Sprintf("%.3f of burst20's [≥ 0.9]", b.DrainRateRatioToBurst20)
		}
		return fmt.Sprintf("%d events over %d integration(s): published in %.2fs (stored %.2fs); first delivery %.2fs; drained in %.2fs = %.0f/s %s; latency p50 %.0f p99 %.0f max %.0f ms, p99/drain %.3f [≤ 1.2]; %d zero second(s) of %d; %s",
			b.Events, res.Integrations, b.PublishSeconds, b.StoredSeconds, b.FirstSeconds, b.Seconds, b.Rate, ratio,
			res.Latency.P50, res.Latency.P99, res.Latency.Max, b.P99OverDrain, b.ZeroSeconds, len(b.PerSecond), lostDup)
	case res.Recovery != nil:
		r := res.Recovery
		return fmt.Sprintf("%d events; at the heal the receiver held %d request(s) (%d in all before); first delivery %.2fs after the heal [≤ 5]; drained %.2fs after the heal (%.0f/s); %d zero second(s) of %d; %d arrived before the heal; %s",
			r.Events, r.HeldAtHeal, r.RequestsBeforeHeal, r.FirstSeconds, r.Seconds, r.Rate, r.ZeroSeconds, len(r.PerSecond), r.ArrivedBeforeHeal, lostDup)
	case res.Delayed != nil && res.Delayed.Cap > 0:
		d := res.Delayed
		return fmt.Sprintf("%s receiver, cap %d: max concurrency %d (%d in the window) [≤ %d]; %.1f deliveries/s, %.1f requests/s [ideal %.0f/s]; %s",
			d.Delay, d.Cap, d.MaxConcurrency, d.MaxConcurrencyWindow, d.Cap, d.Delayed.Throughput, d.RequestsPerSecond, d.IdealPerSecond, lostDup)
	case res.Delayed != nil:
		d := res.Delayed
		return fmt.Sprintf("slow endpoint (%s): %.1f deliveries/s, %.1f requests/s [≥ 60], max concurrency %d (%d in the window); fast endpoint: %.0f/s of %.0f offered, p50 %.2f p99 %.2f ms; %s",
			d.Delay, d.Delayed.Throughput, d.RequestsPerSecond, d.MaxConcurrency, d.MaxConcurrencyWindow,
			res.Healthy.Throughput, d.FastOfferedRate, res.Healthy.Latency.P50, res.Healthy.Latency.P99, lostDup)
	}
	return ""
}

// formatSeconds prints whole seconds, or two decimals under 10 s (a burst
// drains in under a second).
func formatSeconds(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.2f", s)
	}
	return fmt.Sprintf("%.0f", s)
}

// formatPerSecond prints a per-second series, eliding the middle of a long one.
func formatPerSecond(ps []int64) string {
	str := func(vs []int64) string {
		parts := make([]string, len(vs))
		for i, v := range vs {
			parts[i] = fmt.Sprint(v)
		}
		return strings.Join(parts, " ")
	}
	if len(ps) <= 60 {
		return str(ps)
	}
	return fmt.Sprintf("%s … (%d more) … %s", str(ps[:40]), len(ps)-50, str(ps[len(ps)-10:]))
}

func (r *Report) printTable(w io.Writer) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tdisp\tpublished\tdelivered\tlost\tdup\tdeliveries/s\tof ceiling\tp50 ms\tp90 ms\tp99 ms\tmax ms\tdispatcher CPU%\tnats CPU%\tredis CPU%\treceiver CPU%\tloadgen CPU%\tdispatcher µs/dlv\tall µs/dlv\tcost ratio\t")
	if c := r.Ceiling; c != nil {
		fmt.Fprintf(tw, "ceiling (plain HTTP)\t-\t-\t%d\t-\t-\t%.0f\t1.000\t%.2f\t%.2f\t%.2f\t%.2f\t-\t-\t-\t%s\t%s\t-\t%s\t%s\t\n",
			c.Requests, c.Throughput, c.Latency.P50, c.Latency.P90, c.Latency.P99, c.Latency.Max,
			cpuOf(c.Processes, "receiver"), cpuOf(c.Processes, "loadgen"), usOf(c.Processes, ""), "1.000")
	}
	for _, s := range r.Scenarios {
		ratio, cost := "-", "-"
		if s.RatioToCeiling > 0 {
			ratio = fmt.Sprintf("%.3f", s.RatioToCeiling)
		}
		if s.CostRatioToCeiling > 0 {
			cost = fmt.Sprintf("%.3f", s.CostRatioToCeiling)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.0f\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			s.Name, s.Dispatchers, s.All.Published, s.All.Delivered, s.All.Lost, s.All.Duplicates, s.Throughput, ratio,
			s.Latency.P50, s.Latency.P90, s.Latency.P99, s.Latency.Max,
			cpuOf(s.Processes, "dispatcher"), cpuOf(s.Processes, "nats"), cpuOf(s.Processes, "redis"),
			cpuOf(s.Processes, "receiver"), cpuOf(s.Processes, "loadgen"), usOf(s.Processes, "dispatcher"), usOf(s.Processes, ""), cost)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "CPU% is of one core, summed over processes of that kind, in the measurement window; µs/dlv is CPU time per delivery (ceiling: per request), all = every process of the run; cost ratio = the ceiling's µs per request over the scenario's all µs per delivery (the throughput ratio if both were CPU-bound on the same cores); latency is publish → arrival at the receiver, of events to healthy endpoints published in the window.")
	var flow []string
	for _, s := range r.Scenarios {
		if line := s.flowLine(); line != "" {
			flow = append(flow, fmt.Sprintf("  %-10s %s", s.Name, line))
		}
	}
	if len(flow) > 0 {
		fmt.Fprintln(w, "\nflow control (the issue's goals in brackets; in the table, burst and recovery rows show the drain rate as deliveries/s, slow shows the fast endpoint):")
		for _, l := range flow {
			fmt.Fprintln(w, l)
		}
	}
	for _, s := range r.Scenarios {
		for _, t := range s.MemoryTrend {
			fmt.Fprintf(w, "%s memory trend: %s %s %.1f → %.1f MiB, slope %+.3f MiB/min, floor %.1f → %.1f MiB\n",
				s.Name, t.Process, t.Metric, t.FirstMiB, t.LastMiB, t.SlopeMiBPerMin, t.FloorFirstMiB, t.FloorLastMiB)
		}
	}
}

// cpuOf sums the CPU percent of processes whose name starts with prefix.
func cpuOf(ps []ProcessStats, prefix string) string {
	return sumOf(ps, prefix, func(p ProcessStats) float64 { return p.CPUPercent })
}

// usOf sums the CPU µs per delivery of processes whose name starts with prefix.
func usOf(ps []ProcessStats, prefix string) string {
	return sumOf(ps, prefix, func(p ProcessStats) float64 { return p.CPUMicrosPerDelivery })
}

// sumOf sums value over the processes whose name starts with prefix, as
// the table shows it: "-" when there is none.
func sumOf(ps []ProcessStats, prefix string, value func(ProcessStats) float64) string {
	var sum float64
	found := false
	for _, p := range ps {
		if strings.HasPrefix(p.Name, prefix) {
			sum += value(p)
			found = true
		}
	}
	if !found {
		return "-"
	}
	return fmt.Sprintf("%.0f", sum)
}

func sumUs(ps []ProcessStats) float64 {
	var sum float64
	for _, p := range ps {
		sum += p.CPUMicrosPerDelivery
	}
	return sum
}
