package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestEventIDCarriesTheIndex(t *testing.T) {
	run := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixMilli()
	for _, idx := range []uint64{0, 1, 65535, 1 << 40, 1<<62 - 1} {
		id := eventID(run, idx)
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("%d: %s is not a UUIDv7 (%v)", idx, id, err)
		}
		if got, ok := eventIndex(id); !ok || got != idx {
			t.Fatalf("%d: read back %d, %v", idx, got, ok)
		}
	}
	if _, ok := eventIndex(uuid.NewString()); ok {
		t.Fatal("a foreign event id was read as a bench index")
	}
}

func TestLatencyStatsNearestRank(t *testing.T) {
	ns := make([]int64, 100)
	for i := range ns {
		ns[i] = int64(100-i) * int64(time.Millisecond) // 100 ms … 1 ms, unsorted
	}
	s := latencyStats(ns)
	if s.Count != 100 || s.P50 != 50 || s.P90 != 90 || s.P99 != 99 || s.Max != 100 || s.Mean != 50.5 {
		t.Fatalf("%+v", s)
	}
	if (latencyStats(nil) != LatencyStats{}) {
		t.Fatal("empty input")
	}
}

func TestSubsetStatsWindows(t *testing.T) {
	base := time.Unix(1000, 0)
	ws, we := base.Add(time.Second), base.Add(3*time.Second)
	tr := &tracker{}
	at := func(d time.Duration) int64 { return base.Add(d).UnixNano() }
	events := []struct{ pub, arr time.Duration }{
		{0, 1500 * time.Millisecond},                       // published before the window, arrives in it
		{1100 * time.Millisecond, 1102 * time.Millisecond}, // in the window: 2 ms
		{2000 * time.Millisecond, 2010 * time.Millisecond}, // in the window: 10 ms
		{2900 * time.Millisecond, 3100 * time.Millisecond}, // arrives after the window: 200 ms
		{2950 * time.Millisecond, 0},                       // never arrives: lost
		{3500 * time.Millisecond, 3600 * time.Millisecond}, // after the window
	}
	for i, e := range events {
		tr.published.set(uint64(i), at(e.pub))
		if e.arr != 0 {
			tr.arrived.set(uint64(i), at(e.arr))
		}
	}
	tr.sent.Store(int64(len(events)))
	s := subsetStats(tr, func(uint64) bool { return true }, ws, we)
	if s.Published != 6 || s.Delivered != 5 || s.Lost != 1 || s.InWindow != 3 || s.Throughput != 1.5 {
		t.Fatalf("%+v", s)
	}
	if s.Latency.Count != 3 || s.Latency.P50 != 10 || s.Latency.Max != 200 {
		t.Fatalf("latency %+v", s.Latency)
	}
}

func TestMemoryTrendFloors(t *testing.T) {
	var samples []MemSample
	for i := range 50 {
		v := 40.0
		if i%7 == 3 {
			v = 65 // load spikes
		}
		samples = append(samples, MemSample{Seconds: float64(i * 10), RSSMiB: map[string]float64{"dispatcher-1": v}})
	}
	tr := memoryTrends(samples)
	if len(tr) != 1 || tr[0].FloorFirstMiB != 40 || tr[0].FloorLastMiB != 40 {
		t.Fatalf("%+v", tr)
	}
}

func TestReadProcSelf(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if s.RSSBytes <= 0 || s.HWMBytes < s.RSSBytes {
		t.Fatalf("%+v", s)
	}
}

func TestArrivalSeries(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(d time.Duration) int64 { return base.Add(d).UnixNano() }
	tr := &tracker{}
	arrivals := []time.Duration{
		-time.Second,            // before the start: apart
		100 * time.Millisecond,  // second 0
		900 * time.Millisecond,  // second 0
		2500 * time.Millisecond, // second 2 (second 1 has none)
		3 * time.Second,         // second 3: the last
		0,                       // never arrived
	}
	for i, a := range arrivals {
		tr.published.set(uint64(i), at(-2*time.Second))
		if a != 0 {
			tr.arrived.set(uint64(i), at(a))
		}
	}
	tr.sent.Store(int64(len(arrivals)))
	s, before := arrivalSeries(tr, everyEvent, at(0))
	if before != 1 || s.Delivered != 4 || s.FirstSeconds != 0.1 || s.Seconds != 3 || s.Rate != round3(4.0/3) {
		t.Fatalf("before %d, %+v", before, s)
	}
	if !slices.Equal(s.PerSecond, []int64{2, 0, 1, 1}) || s.ZeroSeconds != 1 {
		t.Fatalf("per second %v, zero %d", s.PerSecond, s.ZeroSeconds)
	}
}

func TestBurstRatios(t *testing.T) {
	mk := func(name string, rate float64) *Result {
		return &Result{Name: name, Burst: &BurstStats{DrainSeries: DrainSeries{Rate: rate}}}
	}
	r := &Report{Scenarios: []*Result{mk("burst1", 900), mk("burst10", 500)}}
	r.burstRatios()
	if r.Scenarios[0].Burst.DrainRateRatioToBurst20 != 0 {
		t.Fatal("a ratio without burst20")
	}
	r.Scenarios = append(r.Scenarios, mk("burst20", 1000), mk("burst1000", 1100))
	r.finish()
	for i, want := range []float64{0.9, 0.5, 0, 1.1} {
		if got := r.Scenarios[i].Burst.DrainRateRatioToBurst20; got != want {
			t.Fatalf("%s: %v, want %v", r.Scenarios[i].Name, got, want)
		}
	}
}

func TestRecorderConcurrency(t *testing.T) {
	r := &recorder{}
	get := func(query string) concurrency {
		w := httptest.NewRecorder()
		r.serveConcurrency(w, httptest.NewRequest(http.MethodGet, "/bench/concurrency"+query, nil))
		var c concurrency
		if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for range 5 {
		r.enter()
	}
	r.inFlight.Add(-3)
	r.enter()
	if c := get("?reset=1"); c != (concurrency{Max: 5, Now: 3, Requests: 6}) {
		t.Fatalf("%+v", c)
	}
	if c := get(""); c != (concurrency{Max: 3, Now: 3, Requests: 6}) {
		t.Fatalf("after reset: %+v", c)
	}
}

func TestDelayedScheduleTopsUpTheBacklog(t *testing.T) {
	tr := &tracker{perIntegration: make([]atomic.Int64, 2)}
	s := &delayedSchedule{tr: tr, backlog: 3, start: time.Now(), until: time.Now().Add(time.Minute)}
	tr.integrationOf = s.integrationOf
	pace := s.pace(context.Background())
	for i := range uint64(3) {
		if !pace(i) || s.integrationOf(i) != 0 {
			t.Fatalf("event %d: not to the delayed integration", i)
		}
	}
	tr.perIntegration[0].Add(2) // two arrived: two more may go
	for i := uint64(3); i < 5; i++ {
		if !pace(i) || s.integrationOf(i) != 0 {
			t.Fatalf("event %d: not to the delayed integration", i)
		}
	}
	if s.delayedSent != 5 {
		t.Fatal(s.delayedSent)
	}
	s.until = time.Now()
	if pace(5) {
		t.Fatal("paced after until")
	}
}

func TestParseScenarios(t *testing.T) {
	std, err := parseScenarios("standard")
	if err != nil || len(std) != 5 || std["burst20"] || std["slow"] {
		t.Fatalf("standard: %v %v", std, err)
	}
	flow, err := parseScenarios("flow")
	if err != nil || len(flow) != 7 || !flow["burst1000"] || !flow["recovery"] || !flow["cap2"] || flow["max1"] {
		t.Fatalf("flow: %v %v", flow, err)
	}
	one, err := parseScenarios("burst1, cap2")
	if err != nil || len(one) != 2 || !one["burst1"] || !one["cap2"] {
		t.Fatalf("burst1, cap2: %v %v", one, err)
	}
	if _, err := parseScenarios("burst2"); err == nil {
		t.Fatal("burst2 accepted")
	}
}
