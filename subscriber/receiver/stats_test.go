package receiver

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistIndexIsMonotonicAndInRange(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<20 + 1, histMaxMicros} {
		i := histIndex(v)
		if i < prev || i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d after %d (buckets %d)", v, i, prev, histBuckets)
		}
		prev = i
		if mid := histMid(i); math.Abs(mid-float64(v)) > 0.032*float64(v)+1 {
			t.Errorf("value %d lands in bucket %d with middle %.0f: more than 3.2%% off", v, i, mid)
		}
	}
}

func TestLatencyQuantilesMatchExactOnes(t *testing.T) {
	var h latencyHistogram
	rng := rand.New(rand.NewPCG(1, 2))
	var exact []float64
	for range 100_000 {
		// Log-uniform from 50 µs to 5 s: spans many buckets.
		micros := math.Exp(math.Log(50) + rng.Float64()*(math.Log(5e6)-math.Log(50)))
		d := time.Duration(micros) * time.Microsecond
		h.observe(d)
		exact = append(exact, float64(d.Microseconds())/1000)
	}
	slices.Sort(exact)
	s := h.snapshot()
	check := func(name string, got float64, q float64) {
		want := exact[int(math.Ceil(q*float64(len(exact))))-1]
		if math.Abs(got-want) > 0.035*want {
			t.Errorf("%s = %.3f ms, exact %.3f ms", name, got, want)
		}
	}
	check("p50", s.P50Millis, 0.5)
	check("p90", s.P90Millis, 0.9)
	check("p99", s.P99Millis, 0.99)
	check("p999", s.P999Millis, 0.999)
	if s.Count != 100_000 || s.MinMillis != exact[0] || s.MaxMillis != exact[len(exact)-1] {
		t.Errorf("count %d min %.3f max %.3f, want %.3f %.3f", s.Count, s.MinMillis, s.MaxMillis, exact[0], exact[len(exact)-1])
	}
}

func TestLatencyNegativeAndHugeValues(t *testing.T) {
	var c counters
	c.observeLatency(-time.Second) // sender clock ahead
	c.observeLatency(1000 * time.Hour)
	s := c.latency.snapshot()
	if s.Count != 2 || s.MinMillis != 0 || s.MaxMillis != float64(histMaxMicros)/1000 {
		t.Errorf("snapshot %+v", s)
	}
	var empty latencyHistogram
	if empty.snapshot() != (LatencyStats{}) {
		t.Error("empty histogram is not all zero")
	}
}

func TestKeyOf(t *testing.T) {
	a := keyOf("01958a2b-0000-7000-8000-000000000001", nil)
	if a != keyOf("01958A2B-0000-7000-8000-000000000001", []byte("other body")) {
		t.Error("the same UUID in another case is another key")
	}
	if a == keyOf("01958a2b-0000-7000-8000-000000000002", nil) {
		t.Error("different ids share a key")
	}
	if keyOf("not-a-uuid", nil) == keyOf("not-a-uuid-2", nil) {
		t.Error("different non-UUID ids share a key")
	}
	if keyOf("", []byte("b1")) != keyOf("", []byte("b1")) || keyOf("", []byte("b1")) == keyOf("", []byte("b2")) {
		t.Error("body keys are not a function of the body")
	}
}
