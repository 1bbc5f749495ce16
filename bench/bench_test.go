package main

import (
	"os"
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
