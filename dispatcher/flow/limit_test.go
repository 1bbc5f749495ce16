package flow

import (
	"testing"
	"time"
)

func TestLimit(t *testing.T) {
	answered := func(d time.Duration) Outcome { return Outcome{Signal: Answered, Latency: d} }
	for _, tc := range []struct {
		name    string
		steps   func(l *limit)
		ceiling int
		want    int
	}{
		{"grows by one per answer while in use", func(l *limit) {
			for range 10 {
				l.observe(answered(time.Millisecond), 100, 64)
			}
		}, 64, initialLimit + 10},
		{"grows only while at least half of it is in use", func(l *limit) {
			for range 10 {
				l.observe(answered(time.Millisecond), 4, 64)
			}
		}, 64, 9},
		{"stops at the ceiling", func(l *limit) {
			for range 100 {
				l.observe(answered(time.Millisecond), 64, 16)
			}
		}, 16, 16},
		{"grows to no more than twice what is used", func(l *limit) {
			for range 100 {
				l.observe(answered(time.Millisecond), 1, 64)
			}
		}, 64, 3},
		{"shrinks on overload, never below one", func(l *limit) {
			for range 100 {
				l.observe(Outcome{Signal: Overloaded}, 1, 64)
			}
		}, 64, 1},
		{"learns nothing from no sample", func(l *limit) {
			for range 100 {
				l.observe(Outcome{}, 100, 64)
			}
		}, 64, initialLimit},
		{"shrinks when latency rises well past its slack", func(l *limit) {
			for range 50 {
				l.observe(answered(50*time.Millisecond), 100, 64)
			}
			for range 20 {
				l.observe(answered(800*time.Millisecond), 100, 64)
			}
		}, 64, 6},
		{"a busy dispatcher's added milliseconds are not a slow endpoint", func(l *limit) {
			for range 20 {
				l.observe(answered(time.Millisecond), 100, 64)
			}
			for range 60 {
				l.observe(answered(40*time.Millisecond), 100, 64)
			}
		}, 64, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimit()
			tc.steps(&l)
			if got := l.current(tc.ceiling); got != tc.want {
				t.Fatalf("limit %d (%.2f), want %d", got, l.value, tc.want)
			}
		})
	}
}
