// Command bench measures the dispatcher end to end on one machine, against
// the DESIGN.md goals, and prints the results as a table and as JSON.
//
//	go run ./bench                       the standard scenarios (under 10 minutes)
//	go run ./bench -scenarios soak       10 minutes at 50 % of max, memory over time
//	go run ./bench -scenarios flow       the flow-control scenarios below (bench/results/flow.json)
//	go run ./bench -help                 every flag
//
// Each scenario gets fresh processes: nats-server v2.15 (this binary run as
// a child, file storage), redis-server on a free port (or NATS_URL and
// REDIS_URL), N dispatcher processes built once from ./dispatcher, and the
// reference receiver (this binary run as a child around package
// subscriber/receiver). Webhooks for many integrations are created through
// the management API. The load generator (this process) publishes 1 KiB
// events with asynchronous JetStream publishes and records the publish time
// of every event; the receiver records the arrival time of every event, so
// latency is measured per event with the machine's one clock. CPU seconds
// and peak RSS of every process come from /proc.
//
// The raw ceiling is measured in the same run: a plain Go HTTP client
// posting the same signed bodies to the same kind of receiver process with
// the same concurrency. The exit status is 1 when any event was lost.
//
// Isolation as the flow-control issue states it, "50 of 100 integrations
// hang (timeout), the other 50 take 600/s": the healthy half gets 25 % of
// -max-rate and the hanging half the same again, so
//
//	go run ./bench -scenarios isolation -integrations 100 -max-rate 2400
//
// The flow-control scenarios (not part of standard; -scenarios flow runs
// them all in this order, or name them one by one; flow.go has the details).
// Each prints its numbers with the goals in brackets, and the table
// ends with them all:
//
//	burst1 burst10 burst20 burst1000
//	    -burst-events (20000) events at once, round-robin over N integrations
//	    on one healthy receiver, then wait until all arrived. Publish time,
//	    drain time (first publish → last arrival), drain rate, deliveries in
//	    every second and the seconds with none, latency p50/p99/max, lost,
//	    duplicates, CPU. Drain rate over burst20's (goal ≥ 0.9) and p99 over
//	    the drain time (goal ≤ 1.2; as defined it cannot exceed 1, since no
//	    event is published before the first or arrives after the last).
//	slow
//	    one integration on a receiver taking -slow-delay (500ms) per request,
//	    kept at -slow-backlog (3000) events outstanding; one on a fast receiver
//	    at -slow-fast-rate (500/s). Deliveries/s and requests/s reaching the
//	    slow endpoint in the window (goal ≥ 60/s), its concurrency high-water
//	    mark, and the fast endpoint's throughput and p99.
//	recovery
//	    -recovery-events (5000) events to one integration on a hanging
//	    receiver (attempt timeout -recovery-attempt-timeout, 15s; retries
//	    every 5s), healed -recovery-settle (10s) after the last is stored:
//	    seconds from the heal to the first delivery (goal ≤ 5) and to the
//	    last, deliveries in every second after the heal, lost, duplicates.
//	cap2
//	    two dispatchers with DISPATCHER_ENDPOINT_MAX_CONCURRENCY=-cap (8), one
//	    integration on a receiver taking -cap-delay (100ms) per request, kept
//	    at -cap-backlog (2000) events outstanding: the receiver's concurrency
//	    high-water mark (goal ≤ cap) and throughput (ideal cap/delay, 80/s).
//
// Other dispatcher settings go through -env K=V,K=V, e.g.
//
//	go run ./bench -scenarios flow -env DISPATCHER_ENDPOINT_MAX_CONCURRENCY=32
//
// What replication costs: -nats-nodes 3 runs every scenario against a
// three-node JetStream cluster (each node this binary run as a child, as
// the single server is) with DISPATCHER_NATS_REPLICAS=3; the dispatchers
// and the load generator get every node's URL. Compare with the same
// scenarios on one node:
//
//	go run ./bench -scenarios max1,latency -nats-nodes 3 -out bench/results/cluster3.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/blazelock/webhooks/internal/harness"
)

// bench holds the run's settings and shared state.
type bench struct {
	workDir       string
	dispatcherBin string
	concurrency   int
	integrations  int
	window        int64
	logLevel      string
	warmup        time.Duration
	measure       time.Duration
	soakDuration  time.Duration
	rate          float64
	profileDir    string
	profileFor    time.Duration
	attemptTO     string
	dispatcherEnv map[string]string
	natsNodes     int
	flow          flowSettings
	out           io.Writer
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "-child" {
		if err := runChild(os.Args[2], os.Args[3:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		return
	}
	code, err := runMain(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if code == 0 {
			code = 2
		}
	}
	os.Exit(code)
}

func runMain(args []string) (int, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	b := &bench{out: os.Stdout, dispatcherEnv: map[string]string{}}
	scenarios := fs.String("scenarios", "standard", "comma-separated: ceiling, max1, max2, latency, isolation; standard (all of them); soak; burst1, burst10, burst20, burst1000, slow, recovery, cap2; flow (all of those)")
	outPath := fs.String("out", "", "JSON results file (default bench/results/<scenarios>.json, <scenarios>-nats3.json with -nats-nodes 3)")
	fs.IntVar(&b.concurrency, "concurrency", 512, "DISPATCHER_CONCURRENCY of each dispatcher, and the raw client's worker count")
	fs.IntVar(&b.integrations, "integrations", 20, "integrations (webhooks) the load is spread over")
	fs.Int64Var(&b.window, "window", 20000, "max mode: most events published but not yet delivered")
	fs.StringVar(&b.logLevel, "log-level", "warn", "DISPATCHER_LOG_LEVEL of the dispatchers (the per-attempt line is info)")
	fs.DurationVar(&b.warmup, "warmup", 5*time.Second, "load before the measurement window of each scenario")
	fs.DurationVar(&b.measure, "duration", 20*time.Second, "measurement window of each scenario")
	fs.DurationVar(&b.soakDuration, "soak-duration", 10*time.Minute, "soak: how long to run at 50 % of max")
	fs.Float64Var(&b.rate, "max-rate", 0, "skip measuring max1 for latency/isolation/soak and use this many deliveries/s as max")
	fs.StringVar(&b.profileDir, "profile", "", "directory: save a CPU and a heap profile of dispatcher-1 during max1, and heap profiles at the start and end of the soak")
	fs.DurationVar(&b.profileFor, "profile-seconds", 10*time.Second, "length of the CPU profile")
	fs.StringVar(&b.attemptTO, "isolation-attempt-timeout", "15s", "DISPATCHER_ATTEMPT_TIMEOUT in the isolation scenario")
	fs.StringVar(&b.dispatcherBin, "dispatcher-bin", "", "use this dispatcher binary instead of building ./dispatcher (A/B comparisons)")
	fs.DurationVar(&b.flow.wait, "flow-wait", 5*time.Minute, "burst, recovery, slow, cap2: how long to wait for every event before counting the rest as lost")
	fs.Int64Var(&b.flow.burstEvents, "burst-events", 20000, "burstN: events published at once")
	fs.DurationVar(&b.flow.slowDelay, "slow-delay", 500*time.Millisecond, "slow: how long the slow receiver holds every response")
	fs.Int64Var(&b.flow.slowBacklog, "slow-backlog", 3000, "slow: events to the slow endpoint kept published but not yet delivered")
	fs.Float64Var(&b.flow.slowFastRate, "slow-fast-rate", 500, "slow: events/s offered to the fast endpoint")
	fs.Int64Var(&b.flow.recoveryEvents, "recovery-events", 5000, "recovery: events published to the hanging endpoint")
	fs.DurationVar(&b.flow.recoverySettle, "recovery-settle", 10*time.Second, "recovery: wait after the last event is stored before healing the endpoint")
	fs.StringVar(&b.flow.recoveryTimeout, "recovery-attempt-timeout", "15s", "DISPATCHER_ATTEMPT_TIMEOUT in the recovery scenario")
	fs.IntVar(&b.flow.cap, "cap", 8, "cap2: DISPATCHER_ENDPOINT_MAX_CONCURRENCY of both dispatchers")
	fs.DurationVar(&b.flow.capDelay, "cap-delay", 100*time.Millisecond, "cap2: how long the receiver holds every response")
	fs.Int64Var(&b.flow.capBacklog, "cap-backlog", 2000, "cap2: events kept published but not yet delivered")
	reprint := fs.String("reprint", "", "read a results JSON file, recompute its derived numbers, print its table and write it back")
	env := fs.String("env", "", "extra dispatcher environment, comma-separated K=V (e.g. DISPATCHER_ENDPOINT_MAX_CONCURRENCY=32)")
	fs.IntVar(&b.natsNodes, "nats-nodes", 1, "1: one nats-server; 3: a three-node JetStream cluster with DISPATCHER_NATS_REPLICAS=3 (what replication costs)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	if *reprint != "" {
		return b.reprint(*reprint)
	}
	for _, kv := range strings.Split(*env, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			b.dispatcherEnv[k] = v
		}
	}
	switch {
	case b.natsNodes != 1 && b.natsNodes != 3:
		return 2, fmt.Errorf("-nats-nodes %d: 1 or 3", b.natsNodes)
	case b.natsNodes == 3 && os.Getenv("NATS_URL") != "":
		return 2, errors.New("-nats-nodes 3 starts a cluster of its own: unset NATS_URL")
	case b.natsNodes == 3:
		// Every stream and bucket on every node: replication is what the
		// cluster run measures.
		if _, set := b.dispatcherEnv["DISPATCHER_NATS_REPLICAS"]; !set {
			b.dispatcherEnv["DISPATCHER_NATS_REPLICAS"] = "3"
		}
	}
	want, err := parseScenarios(*scenarios)
	if err != nil {
		return 2, err
	}
	wantFlow := false
	for _, n := range flowScenarios {
		wantFlow = wantFlow || want[n]
	}
	if *outPath == "" {
		name := *scenarios
		if name != "standard" && name != "soak" && name != "flow" {
			name = "custom"
		}
		if b.natsNodes > 1 {
			name += fmt.Sprintf("-nats%d", b.natsNodes) // never over the one-node results
		}
		*outPath = filepath.Join("bench", "results", name+".json")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	dir, err := os.MkdirTemp("", "blazelock-bench-")
	if err != nil {
		return 2, err
	}
	defer os.RemoveAll(dir)
	b.workDir = dir

	report := &Report{Machine: machineInfo(), StartedAt: started.UTC(), Command: "go run ./bench " + strings.Join(args, " "),
		Settings: Settings{Concurrency: b.concurrency, Integrations: b.integrations, EventBytes: eventBytes, Window: b.window,
			LogLevel: b.logLevel, WarmupSeconds: b.warmup.Seconds(), WindowSeconds: b.measure.Seconds(), ExtraEnv: b.dispatcherEnv}}
	if b.natsNodes > 1 {
		report.Settings.NATSNodes = b.natsNodes
	}
	fmt.Fprintf(b.out, "machine: %d CPUs (%s), %.1f GiB, %s, nats-server %s, %s; load average %v\n",
		report.Machine.CPUs, report.Machine.CPUModel, report.Machine.MemoryGiB, report.Machine.Go, report.Machine.NATSServer, report.Machine.Redis, loadAvg())
	if b.natsNodes > 1 {
		fmt.Fprintf(b.out, "NATS: a %d-node JetStream cluster, DISPATCHER_NATS_REPLICAS=%s\n", b.natsNodes, b.dispatcherEnv["DISPATCHER_NATS_REPLICAS"])
	}

	if b.dispatcherBin == "" && (want["max1"] || want["max2"] || want["latency"] || want["isolation"] || want["soak"] || wantFlow) {
		fmt.Fprintln(b.out, "building ./dispatcher …")
		b.dispatcherBin = filepath.Join(dir, "dispatcher")
		if err := harness.GoBuild(ctx, b.dispatcherBin, harness.DispatcherPackage); err != nil {
			return 2, err
		}
	}

	record := func(res *Result) {
		report.Scenarios = append(report.Scenarios, res)
		report.burstRatios()
		res.printSummary(b.out)
	}
	run := func(sc scenario) (*Result, error) {
		fmt.Fprintf(b.out, "\n== %s: %s\n", sc.Name, sc.Description)
		res, err := b.runScenario(ctx, sc)
		if err != nil {
			return nil, fmt.Errorf("scenario %s: %w", sc.Name, err)
		}
		record(res)
		return res, nil
	}

	if want["ceiling"] {
		fmt.Fprintf(b.out, "\n== ceiling: plain Go HTTP client, %d workers, same bodies, same receiver\n", b.concurrency)
		c, err := b.runCeilingScenario(ctx)
		if err != nil {
			return 2, fmt.Errorf("ceiling: %w", err)
		}
		report.Ceiling = c
		fmt.Fprintf(b.out, "   %.0f requests/s (%d in %.0fs, %d errors), round trip p50 %.2f ms p99 %.2f ms\n",
			c.Throughput, c.Requests, c.WindowSeconds, c.Errors, c.Latency.P50, c.Latency.P99)
	}
	maxRate := b.rate
	if want["max1"] || (maxRate == 0 && (want["latency"] || want["isolation"] || want["soak"])) {
		sc := scenario{Name: "max1", Description: "max throughput, one dispatcher", Dispatchers: 1, Mode: "max"}
		if !want["max1"] {
			sc.Name, sc.Description = "max1-for-rate", "max throughput, one dispatcher (to set the fixed rates)"
		}
		sc.Profile = b.profileDir != ""
		res, err := run(sc)
		if err != nil {
			return 2, err
		}
		maxRate = res.Throughput
	}
	if want["max2"] {
		if _, err := run(scenario{Name: "max2", Description: "max throughput, two dispatchers", Dispatchers: 2, Mode: "max"}); err != nil {
			return 2, err
		}
	}
	if want["latency"] {
		if _, err := run(scenario{Name: "latency", Description: fmt.Sprintf("fixed rate at 25 %% of max (%.0f/s), one dispatcher", 0.25*maxRate),
			Dispatchers: 1, Mode: "rate", Rate: 0.25 * maxRate}); err != nil {
			return 2, err
		}
	}
	if want["isolation"] {
		healthy := 0.25 * maxRate
		sc := scenario{
			Name: "isolation",
			Description: fmt.Sprintf("half the integrations hang (attempt timeout %s): %.0f/s to healthy ones (as in latency) plus %.0f/s to hanging ones, one dispatcher",
				b.attemptTO, healthy, healthy),
			Dispatchers: 1, Mode: "rate", Rate: 2 * healthy, Hanging: true,
			Env: map[string]string{
				"DISPATCHER_ATTEMPT_TIMEOUT": b.attemptTO,
				// Short retries so that, once the endpoint is healed at the
				// end, every event still arrives and loss can be counted.
				"DISPATCHER_RETRY_SCHEDULE": shortRetries,
			},
		}
		if _, err := run(sc); err != nil {
			return 2, err
		}
	}
	// The flow-control scenarios (flow.go), in flowScenarios' order.
	runFlow := func(sc scenario, f func(scenario) (*Result, error)) error {
		fmt.Fprintf(b.out, "\n== %s: %s\n", sc.Name, sc.Description)
		res, err := f(sc)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", sc.Name, err)
		}
		record(res)
		return nil
	}
	for _, n := range burstSizes {
		sc := scenario{Name: fmt.Sprintf("burst%d", n), Dispatchers: 1, Mode: "burst",
			Description: fmt.Sprintf("%d events at once, round-robin over %d integration(s) on one healthy receiver, one dispatcher; wait until drained", b.flow.burstEvents, n)}
		if want[sc.Name] {
			if err := runFlow(sc, func(sc scenario) (*Result, error) { return b.runBurst(ctx, sc, n) }); err != nil {
				return 2, err
			}
		}
	}
	if want["slow"] {
		sc := scenario{Name: "slow", Dispatchers: 1, Mode: "slow", Rate: b.flow.slowFastRate,
			Description: fmt.Sprintf("one integration on a receiver that takes %s per request, kept at %d events outstanding; one on a fast receiver at %.0f/s; one dispatcher",
				b.flow.slowDelay, b.flow.slowBacklog, b.flow.slowFastRate)}
		if err := runFlow(sc, func(sc scenario) (*Result, error) {
			return b.runDelayed(ctx, delayedSpec{sc: sc, receiver: "receiver-slow", delay: b.flow.slowDelay, backlog: b.flow.slowBacklog, fastRate: b.flow.slowFastRate})
		}); err != nil {
			return 2, err
		}
	}
	if want["recovery"] {
		sc := scenario{Name: "recovery", Dispatchers: 1, Mode: "recovery",
			Description: fmt.Sprintf("%d events at once to one integration whose endpoint hangs (attempt timeout %s, retries every 5s); healed %s after the last is stored; one dispatcher",
				b.flow.recoveryEvents, b.flow.recoveryTimeout, b.flow.recoverySettle),
			Env: map[string]string{
				"DISPATCHER_ATTEMPT_TIMEOUT": b.flow.recoveryTimeout,
				// Short retries: nothing exhausts its attempts before the heal.
				"DISPATCHER_RETRY_SCHEDULE": shortRetries,
			}}
		if err := runFlow(sc, func(sc scenario) (*Result, error) { return b.runRecovery(ctx, sc) }); err != nil {
			return 2, err
		}
	}
	if want["cap2"] {
		sc := scenario{Name: "cap2", Dispatchers: 2, Mode: "cap",
			Description: fmt.Sprintf("two dispatchers with DISPATCHER_ENDPOINT_MAX_CONCURRENCY=%d; one integration on a receiver that takes %s per request, kept at %d events outstanding",
				b.flow.cap, b.flow.capDelay, b.flow.capBacklog),
			Env: map[string]string{"DISPATCHER_ENDPOINT_MAX_CONCURRENCY": strconv.Itoa(b.flow.cap)}}
		if err := runFlow(sc, func(sc scenario) (*Result, error) {
			return b.runDelayed(ctx, delayedSpec{sc: sc, receiver: "receiver-delayed", delay: b.flow.capDelay, backlog: b.flow.capBacklog, cap: b.flow.cap})
		}); err != nil {
			return 2, err
		}
	}
	if want["soak"] {
		if _, err := run(scenario{Name: "soak", Description: fmt.Sprintf("%s at 50 %% of max (%.0f/s), one dispatcher, memory sampled every 10s", b.soakDuration, 0.5*maxRate),
			Dispatchers: 1, Mode: "rate", Rate: 0.5 * maxRate, Soak: true}); err != nil {
			return 2, err
		}
	}

	report.finish()
	report.printTable(b.out)
	if err := os.MkdirAll(filepath.Dir(*outPath), 0o755); err != nil {
		return 2, err
	}
	raw, _ := json.MarshalIndent(report, "", "  ")
	if err := os.WriteFile(*outPath, append(raw, '\n'), 0o644); err != nil {
		return 2, err
	}
	fmt.Fprintf(b.out, "\nresults: %s (%.0fs in all)\n", *outPath, time.Since(started).Seconds())
	if lost := report.totalLost(); lost > 0 {
		return 1, fmt.Errorf("%d events lost", lost)
	}
	return 0, nil
}

// parseScenarios reads -scenarios: names and the groups standard and flow.
func parseScenarios(list string) (map[string]bool, error) {
	want := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		switch s = strings.TrimSpace(s); s {
		case "standard":
			for _, n := range []string{"ceiling", "max1", "max2", "latency", "isolation"} {
				want[n] = true
			}
		case "flow":
			for _, n := range flowScenarios {
				want[n] = true
			}
		case "ceiling", "max1", "max2", "latency", "isolation", "soak":
			want[s] = true
		default:
			if !slices.Contains(flowScenarios, s) {
				return nil, fmt.Errorf("unknown scenario %q", s)
			}
			want[s] = true
		}
	}
	return want, nil
}

// machineInfo describes the machine and the versions in use.
func machineInfo() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), NATSServer: server.VERSION, GOARCH: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				m.MemoryGiB = float64(kib(line)) / (1 << 30)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if os.Getenv("REDIS_URL") != "" {
		m.Redis = "REDIS_URL (external)"
	} else if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		m.Redis = strings.TrimSpace(string(out))
		if i := strings.Index(m.Redis, " sha="); i > 0 {
			m.Redis = m.Redis[:i]
		}
	}
	if os.Getenv("NATS_URL") != "" {
		m.NATSServer = "NATS_URL (external)"
	}
	return m
}

// scenario describes one measured run.
type scenario struct {
	Name, Description string
	Dispatchers       int
	Mode              string  // "max": bounded backlog, as fast as it goes; "rate": fixed rate
	Rate              float64 // rate mode: events/s offered in all
	Hanging           bool    // half the integrations point at a receiver that hangs
	Soak              bool
	Profile           bool
	Env               map[string]string
}

func (b *bench) runScenario(ctx context.Context, sc scenario) (_ *Result, err error) {
	res := b.newResult(sc, b.integrations)
	specs := []receiverSpec{{name: "receiver"}}
	if sc.Hanging {
		specs = append(specs, receiverSpec{name: "receiver-hanging", args: []string{"-hang"}})
	}
	st, receivers, err := b.startStack(ctx, sc, res, specs)
	if err != nil {
		return nil, err
	}
	defer st.close()
	healthyRecv := receivers[0]
	var hangingRecv *proc
	if sc.Hanging {
		hangingRecv = receivers[1]
	}
	hangingFrom := b.integrations
	if sc.Hanging {
		hangingFrom = b.integrations / 2
		res.HangingIntegrations = b.integrations - hangingFrom
	}
	ints, err := st.configure(ctx, b.integrations, func(i int) *proc {
		if i >= hangingFrom {
			return hangingRecv
		}
		return healthyRecv
	})
	if err != nil {
		return nil, err
	}
	for i := hangingFrom; i < len(ints); i++ {
		ints[i].hanging = true
	}
	tf, err := startTraffic(ctx, ints, receivers, roundRobin(len(ints)))
	if err != nil {
		return nil, err
	}
	defer tf.close()
	tr := tf.tr
	loadCtx := tf.loadCtx

	start := time.Now()
	ws, we := start.Add(b.warmup), start.Add(b.warmup+b.measure)
	if sc.Soak {
		we = start.Add(b.soakDuration)
	}
	var pace func(uint64) bool
	if sc.Mode == "max" {
		pace = tr.paceWindow(loadCtx, b.window, we)
	} else {
		pace = paceRate(loadCtx, start, sc.Rate, we)
	}
	published := make(chan struct{})
	go func() { tr.publisherLoop(loadCtx, st.js, tf.bods, pace); close(published) }()

	// Samples at the window's edges give each process's CPU seconds.
	sleepUntil(ctx, ws)
	before := st.sampleAll()
	busy0, total0 := machineCPUBusy()
	var profileDone chan error
	if sc.Profile && b.profileDir != "" {
		profileDone = make(chan error, 1)
		go func() { profileDone <- b.saveProfiles(ctx, st, sc.Name) }()
	}
	if sc.Soak {
		// Heap profiles at both ends: `go tool pprof -diff_base start end`
		// shows what grew, if anything did.
		if b.profileDir != "" {
			if err := b.saveHeap(ctx, st, sc.Name+"-dispatcher-heap-start.pprof"); err != nil {
				res.Notes = append(res.Notes, "heap profile: "+err.Error())
			}
		}
		res.Memory = b.sampleMemory(ctx, st, we, 10*time.Second)
		if b.profileDir != "" {
			if err := b.saveHeap(ctx, st, sc.Name+"-dispatcher-heap-end.pprof"); err != nil {
				res.Notes = append(res.Notes, "heap profile: "+err.Error())
			}
		}
	}
	sleepUntil(ctx, we)
	after := st.sampleAll()
	busy1, total1 := machineCPUBusy()
	<-published
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if profileDone != nil {
		if err := <-profileDone; err != nil {
			res.Notes = append(res.Notes, "profile: "+err.Error())
		}
	}

	// Wait for the end: every stored event to a healthy endpoint arrives.
	isHealthy := func(i uint64) bool { return !ints[tr.integrationOf(i)].hanging }
	drained := tr.drainCheck()
	drainStart := time.Now()
	_ = waitFor(ctx, 60*time.Second, "healthy deliveries", func() bool { return drained("healthy", isHealthy) })
	res.DrainSeconds = time.Since(drainStart).Seconds()
	if sc.Hanging {
		// Heal the hanging endpoint: deferred and retried events must all
		// arrive now. That takes minutes, not seconds: the integration
		// stays slow (2 slots) for a minute after its last timeout, and
		// each of its thousands of deferred events comes back after its
		// own delay, up to a minute, possibly several times. Anything not
		// arrived after healingWait counts as lost.
		const healingWait = 5 * time.Minute
		heal(ctx, hangingRecv)
		healStart := time.Now()
		if err := waitFor(ctx, healingWait, "deliveries to the healed endpoint", func() bool { return drained("all", everyEvent) }); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("after the run the hanging endpoint was healed; not all of its events arrived within %s", healingWait))
		} else {
			res.Notes = append(res.Notes, fmt.Sprintf("after the run the hanging endpoint was healed; its events arrived within %.0fs", time.Since(healStart).Seconds()))
		}
	}
	tf.finishCollect()
	end := st.sampleAll()
	res.LoadAvgAfter = loadAvg()

	window := we.Sub(ws)
	res.WarmupSeconds, res.WindowSeconds = b.warmup.Seconds(), window.Seconds()
	res.PublishFailed = tr.failed.Load()
	res.UnknownArrivals = tr.unknown.Load()
	res.All = subsetStats(tr, everyEvent, ws, we)
	res.Healthy = subsetStats(tr, isHealthy, ws, we)
	if sc.Hanging {
		h := subsetStats(tr, func(i uint64) bool { return !isHealthy(i) }, ws, we)
		res.Hanging = &h
	}
	res.Throughput = res.Healthy.Throughput
	res.Latency = res.Healthy.Latency
	res.MachineBusyPercent = busyPercent(busy0, total0, busy1, total1)
	res.Processes = processStats(st, before, after, end, window.Seconds(), res.Healthy.InWindow)
	return res, nil
}

// newResult starts a scenario's Result.
func (b *bench) newResult(sc scenario, integrations int) *Result {
	return &Result{Name: sc.Name, Description: sc.Description, Dispatchers: sc.Dispatchers, Integrations: integrations,
		Mode: sc.Mode, OfferedRate: sc.Rate, StartedAt: time.Now().UTC(), LoadAvgBefore: loadAvg(), DispatcherEnv: map[string]string{}}
}

// receiverSpec is one receiver process of a scenario: its name (the
// process table's) and its child flags (-hang, -delay D).
type receiverSpec struct {
	name string
	args []string
}

// startStack starts a scenario's fresh processes: NATS, Redis, the
// receivers in the order given, then sc.Dispatchers dispatchers with the
// run's -env and the scenario's Env on top (both recorded in
// res.DispatcherEnv). On an error it stops what it started.
func (b *bench) startStack(ctx context.Context, sc scenario, res *Result, specs []receiverSpec) (_ *stack, _ []*proc, err error) {
	st, err := b.newStack(ctx, sc.Name)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	if err := st.startNATS(ctx); err != nil {
		return nil, nil, err
	}
	if err := st.startRedis(ctx); err != nil {
		return nil, nil, err
	}
	var receivers []*proc
	for _, spec := range specs {
		p, err := st.startChild(ctx, spec.name, "receiver", spec.args...)
		if err != nil {
			return nil, nil, err
		}
		receivers = append(receivers, p)
	}
	env := map[string]string{}
	for k, v := range b.dispatcherEnv {
		env[k] = v
	}
	for k, v := range sc.Env {
		env[k] = v
	}
	for k, v := range env {
		res.DispatcherEnv[k] = v
	}
	res.DispatcherEnv["DISPATCHER_CONCURRENCY"] = strconv.Itoa(b.concurrency)
	res.DispatcherEnv["DISPATCHER_LOG_LEVEL"] = b.logLevel
	for range sc.Dispatchers {
		if _, err := st.startDispatcher(ctx, env); err != nil {
			return nil, nil, err
		}
	}
	return st, receivers, nil
}

// traffic is a scenario's load generator and arrival collector.
type traffic struct {
	tr   *tracker
	bods *bodies
	// loadCtx ends with stopLoad: the publisher and the body refresher.
	loadCtx     context.Context
	stopLoad    context.CancelFunc
	stopCollect context.CancelFunc
	collected   chan struct{}
}

// startTraffic builds the integrations' bodies (refreshed until stopLoad)
// and starts collecting arrivals from the receivers every 100 ms.
// integrationOf says which integration event i goes to.
func startTraffic(ctx context.Context, ints []integration, receivers []*proc, integrationOf func(uint64) int) (*traffic, error) {
	bods, err := newBodies(ints)
	if err != nil {
		return nil, err
	}
	tf := &traffic{bods: bods, collected: make(chan struct{})}
	tf.loadCtx, tf.stopLoad = context.WithCancel(ctx)
	go bods.run(tf.loadCtx)
	tf.tr = &tracker{runMillis: time.Now().UnixMilli(), integrationOf: integrationOf, perIntegration: make([]atomic.Int64, len(ints))}
	collectCtx, stopCollect := context.WithCancel(ctx)
	tf.stopCollect = stopCollect
	go func() { tf.tr.collect(collectCtx, receivers, 100*time.Millisecond); close(tf.collected) }()
	return tf, nil
}

// finishCollect stops the collector after one last fetch and waits for it.
// It may be called more than once.
func (tf *traffic) finishCollect() {
	tf.stopCollect()
	<-tf.collected
}

func (tf *traffic) close() {
	tf.finishCollect()
	tf.stopLoad()
}

// roundRobin spreads events over n integrations in turn.
func roundRobin(n int) func(uint64) int {
	return func(i uint64) int { return int(i % uint64(n)) }
}

func everyEvent(uint64) bool { return true }

// heal clears a receiver's faults (PUT /faults {}), as an operator fixing
// the endpoint would: requests arriving from now on are answered at once.
func heal(ctx context.Context, p *proc) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+p.addr+"/faults", strings.NewReader(`{}`))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

func busyPercent(busy0, total0, busy1, total1 time.Duration) float64 {
	if total1 > total0 {
		return 100 * float64(busy1-busy0) / float64(total1-total0)
	}
	return 0
}

// processStats is every process's CPU between the samples before and
// after (seconds apart), per delivery of the deliveries counted in that
// time, and its peak RSS as of end (or after).
func processStats(st *stack, before, after, end map[string]procSample, seconds float64, deliveries int64) []ProcessStats {
	var out []ProcessStats
	for _, p := range append(st.procs, &proc{name: "loadgen"}) {
		s0, ok0 := before[p.name]
		s1, ok1 := after[p.name]
		if !ok0 || !ok1 {
			continue
		}
		ps := ProcessStats{Name: p.name, CPUSeconds: (s1.CPU - s0.CPU).Seconds(), PeakRSSMiB: mib(end[p.name].HWMBytes)}
		if ps.PeakRSSMiB == 0 {
			ps.PeakRSSMiB = mib(s1.HWMBytes)
		}
		if seconds > 0 {
			ps.CPUPercent = 100 * ps.CPUSeconds / seconds
		}
		if deliveries > 0 {
			ps.CPUMicrosPerDelivery = round3(1e6 * ps.CPUSeconds / float64(deliveries))
		}
		out = append(out, ps)
	}
	return out
}

// saveProfiles takes a CPU profile of dispatcher-1 during the window and a
// heap profile after it, through DISPATCHER_PPROF_ADDR.
func (b *bench) saveProfiles(ctx context.Context, st *stack, name string) error {
	if err := os.MkdirAll(b.profileDir, 0o755); err != nil {
		return err
	}
	d := st.dispatchers[0]
	get := func(path, file string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.extra+path, nil)
		resp, err := (&http.Client{Timeout: b.profileFor + 30*time.Second}).Do(req)
		if err != nil {
			return fmt.Errorf("GET %s (is DISPATCHER_PPROF_ADDR supported?): %w", path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
		}
		f, err := os.Create(filepath.Join(b.profileDir, file))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(f, resp.Body)
		return err
	}
	if err := get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(b.profileFor.Seconds())), name+"-dispatcher-cpu.pprof"); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "   CPU profile: %s\n", filepath.Join(b.profileDir, name+"-dispatcher-cpu.pprof"))
	return get("/debug/pprof/heap", name+"-dispatcher-heap.pprof")
}

// saveHeap writes a heap profile of dispatcher-1 (after a GC, gc=1).
func (b *bench) saveHeap(ctx context.Context, st *stack, file string) error {
	if err := os.MkdirAll(b.profileDir, 0o755); err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+st.dispatchers[0].extra+"/debug/pprof/heap?gc=1", nil)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(b.profileDir, file))
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// sampleMemory records RSS of every process (and the dispatchers' Go heap
// in use, from pprof) every interval until `until`.
func (b *bench) sampleMemory(ctx context.Context, st *stack, until time.Time, every time.Duration) []MemSample {
	var out []MemSample
	start := time.Now()
	for {
		s := MemSample{Seconds: time.Since(start).Seconds(), RSSMiB: map[string]float64{}, HeapInuseMiB: map[string]float64{}}
		for name, ps := range st.sampleAll() {
			s.RSSMiB[name] = mib(ps.RSSBytes)
		}
		for _, d := range st.dispatchers {
			if v, ok := heapInuse(d.extra); ok {
				s.HeapInuseMiB[d.name] = v
			}
		}
		out = append(out, s)
		if len(out)%6 == 0 {
			fmt.Fprintf(b.out, "   t=%4.0fs rss %s\n", s.Seconds, formatMem(s.RSSMiB))
		}
		next := time.Now().Add(every)
		if next.After(until) {
			return out
		}
		if !sleepUntil(ctx, next) {
			return out
		}
	}
}

func heapInuse(pprofAddr string) (float64, bool) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + pprofAddr + "/debug/pprof/heap?debug=1")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapInuse = "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return n / (1 << 20), err == nil
		}
	}
	return 0, false
}

func formatMem(m map[string]float64) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%.0fMiB", n, m[n]))
	}
	return strings.Join(parts, " ")
}

// runCeilingScenario measures the plain HTTP client against a fresh receiver.
func (b *bench) runCeilingScenario(ctx context.Context) (*CeilingResult, error) {
	st, err := b.newStack(ctx, "ceiling")
	if err != nil {
		return nil, err
	}
	defer st.close()
	rp, err := st.startChild(ctx, "receiver", "receiver")
	if err != nil {
		return nil, err
	}
	ints := make([]integration, b.integrations)
	var lines strings.Builder
	for i := range ints {
		id := fmt.Sprintf("0195a0c1-7e2f-7a10-8c3d-%012d", i)
		ints[i] = integration{id: id, secret: "whsec_" + strings.Repeat("A", 43), url: "http://" + rp.addr + "/webhooks/" + id, receiver: rp}
		fmt.Fprintf(&lines, "%s=%s\n", id, ints[i].secret)
	}
	if err := teachSecrets(ctx, rp.addr, []byte(lines.String())); err != nil {
		return nil, err
	}
	bods, err := newBodies(ints)
	if err != nil {
		return nil, err
	}
	loadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go bods.run(loadCtx)
	warmup := 3 * time.Second
	window := b.measure / 2
	start := time.Now()
	done := make(chan ceilingResult, 1)
	go func() { done <- runCeiling(loadCtx, ints, bods, b.concurrency, warmup, window) }()
	sleepUntil(ctx, start.Add(warmup))
	before := st.sampleAll()
	sleepUntil(ctx, start.Add(warmup+window))
	after := st.sampleAll()
	r := <-done
	c := &CeilingResult{Concurrency: b.concurrency, Requests: r.Requests, Errors: r.Errors, WindowSeconds: r.Window.Seconds(),
		Throughput: r.Throughput, Latency: latencyStats(r.Latencies), LoadAvg: loadAvg(), StartedAt: start.UTC()}
	for _, name := range []string{"receiver", "loadgen"} {
		if s0, ok := before[name]; ok {
			cpu := (after[name].CPU - s0.CPU).Seconds()
			ps := ProcessStats{Name: name, CPUSeconds: cpu, CPUPercent: 100 * cpu / r.Window.Seconds(), PeakRSSMiB: mib(after[name].HWMBytes)}
			if r.Requests > 0 {
				ps.CPUMicrosPerDelivery = round3(1e6 * cpu / float64(r.Requests))
			}
			c.Processes = append(c.Processes, ps)
		}
	}
	return c, nil
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }

// reprint recomputes what Report.finish derives (ratios, memory trends) from
// a results file, prints its table and writes it back.
func (b *bench) reprint(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 2, err
	}
	var r Report
	if err := json.Unmarshal(raw, &r); err != nil {
		return 2, fmt.Errorf("%s: %w", path, err)
	}
	r.finish()
	r.printTable(b.out)
	out, _ := json.MarshalIndent(&r, "", "  ")
	return 0, os.WriteFile(path, append(out, '\n'), 0o644)
}
