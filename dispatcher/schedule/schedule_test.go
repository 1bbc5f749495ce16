package schedule

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/blazelock/webhooks/config"
)

func TestDefault(t *testing.T) {
	s := Default()
	want := []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour}
	if got := s.Delays(); !slices.Equal(got, want) {
		t.Fatalf("Default delays = %v, want %v", got, want)
	}
	if s.MaxAttempts() != 10 {
		t.Fatalf("Default MaxAttempts = %d, want 10", s.MaxAttempts())
	}
	if got := s.String(); got != "1m0s,2m0s,5m0s,10m0s,30m0s,1h0m0s,2h0m0s,4h0m0s,8h0m0s" {
		t.Fatalf("Default String = %q", got)
	}
	if s.RetryAfterCeiling() != 16*time.Hour {
		t.Fatalf("Default RetryAfterCeiling = %v, want 16h", s.RetryAfterCeiling())
	}
	// Delays hands out a copy: changing it must not change the schedule.
	d := s.Delays()
	d[0] = time.Hour
	if got, _ := s.NextDelay(1, 0, nil); got != time.Minute {
		t.Fatalf("schedule changed through Delays(): first delay %v", got)
	}
}

// TestStringRoundTrip: String writes what config parses back.
func TestStringRoundTrip(t *testing.T) {
	for _, delays := range [][]time.Duration{
		{time.Second, 2 * time.Second, 5 * time.Second},
		{0, 0, 10 * time.Millisecond},
		{90 * time.Minute, 24 * time.Hour},
		config.DefaultRetryDelays(),
	} {
		s, err := New(delays...)
		if err != nil {
			t.Fatalf("New(%v): %v", delays, err)
		}
		if s.MaxAttempts() != len(delays)+1 {
			t.Fatalf("MaxAttempts = %d, want %d", s.MaxAttempts(), len(delays)+1)
		}
		again, err := config.ParseRetryDelays(s.String())
		if err != nil || !slices.Equal(again, s.Delays()) {
			t.Fatalf("ParseRetryDelays(String()) = %v, %v; want %v", again, err, s.Delays())
		}
	}
}

func TestNew(t *testing.T) {
	in := []time.Duration{time.Second, 0}
	s, err := New(in...)
	if err != nil || !slices.Equal(s.Delays(), in) {
		t.Fatalf("New(%v) = %v, %v", in, s.Delays(), err)
	}
	in[0] = time.Hour // the schedule keeps its own copy
	if s.Delays()[0] != time.Second {
		t.Fatal("New kept a reference to the caller's slice")
	}
	for _, bad := range [][]time.Duration{{-time.Nanosecond}, {config.MaxRetryDelay + 1}, make([]time.Duration, config.MaxRetryDelays+1)} {
		if _, err := New(bad...); err == nil {
			t.Errorf("New(%v) accepted", bad)
		}
	}
	var zero Schedule
	if zero.MaxAttempts() != 1 || zero.String() != "" {
		t.Fatalf("zero Schedule: MaxAttempts %d, String %q", zero.MaxAttempts(), zero.String())
	}
	if d, ok := zero.NextDelay(1, time.Hour, nil); ok || d != 0 {
		t.Fatalf("zero Schedule NextDelay(1) = %v, %v; want 0, false", d, ok)
	}
}

func TestNextDelay(t *testing.T) {
	def := Default()
	short, err := New(time.Second, 2*time.Second, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	zeros, err := New(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	fixed := func(v float64) func() float64 { return func() float64 { return v } }
	tests := []struct {
		name       string
		s          Schedule
		attempt    int
		retryAfter time.Duration
		jitter     func() float64
		want       time.Duration
		wantOK     bool
	}{
		{"before any attempt", def, 0, 0, nil, 0, true},
		{"negative attempt counts as none", def, -3, 0, nil, 0, true},
		{"after attempt 1", def, 1, 0, nil, time.Minute, true},
		{"after attempt 2", def, 2, 0, nil, 2 * time.Minute, true},
		{"after attempt 5", def, 5, 0, nil, 30 * time.Minute, true},
		{"after attempt 9", def, 9, 0, nil, 8 * time.Hour, true},
		{"after attempt 10: dead", def, 10, 0, nil, 0, false},
		{"far past the limit", def, 1000, time.Hour, fixed(1), 0, false},
		{"jitter +1 is +10 %", def, 1, 0, fixed(1), 66 * time.Second, true},
		{"jitter -1 is -10 %", def, 1, 0, fixed(-1), 54 * time.Second, true},
		{"jitter +0.5 is +5 %", def, 9, 0, fixed(0.5), 8*time.Hour + 24*time.Minute, true},
		{"jitter 0", def, 3, 0, fixed(0), 5 * time.Minute, true},
		{"jitter above range is clamped", def, 1, 0, fixed(7), 66 * time.Second, true},
		{"jitter below range is clamped", def, 1, 0, fixed(-7), 54 * time.Second, true},
		{"jitter NaN counts as none", def, 1, 0, fixed(math.NaN()), time.Minute, true},
		{"jitter +Inf is clamped", def, 1, 0, fixed(math.Inf(1)), 66 * time.Second, true},
		{"Retry-After shorter never shortens", def, 1, 10 * time.Second, nil, time.Minute, true},
		{"Retry-After between jittered and base delay wins", def, 1, 58 * time.Second, fixed(-1), 58 * time.Second, true},
		{"Retry-After below the jittered delay keeps it", def, 1, 50 * time.Second, fixed(-1), 54 * time.Second, true},
		{"Retry-After lengthens", def, 1, time.Hour, nil, time.Hour, true},
		{"Retry-After replaces jitter when longer", def, 1, 5 * time.Minute, fixed(1), 5 * time.Minute, true},
		{"Retry-After capped at 2x the longest delay", def, 1, 48 * time.Hour, nil, 16 * time.Hour, true},
		{"Retry-After saturated value is capped", def, 2, time.Duration(math.MaxInt64), nil, 16 * time.Hour, true},
		{"negative Retry-After ignored", def, 1, -time.Hour, nil, time.Minute, true},
		{"Retry-After on the last attempt does not revive it", def, 10, time.Hour, nil, 0, false},
		{"short schedule", short, 3, 0, nil, 5 * time.Second, true},
		{"short schedule dead after 4", short, 4, 0, nil, 0, false},
		{"short schedule caps Retry-After at 10s", short, 1, time.Hour, nil, 10 * time.Second, true},
		{"zero schedule retries at once", zeros, 1, 0, fixed(1), 0, true},
		{"zero schedule ignores Retry-After", zeros, 2, time.Minute, nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.s.NextDelay(tt.attempt, tt.retryAfter, tt.jitter)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("NextDelay(%d, %v) = %v, %v; want %v, %v", tt.attempt, tt.retryAfter, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestNextDelayJitterBounds drives NextDelay with the real Jitter source and
// checks every result stays within ±10 % and that both directions occur.
func TestNextDelayJitterBounds(t *testing.T) {
	s := Default()
	var below, above bool
	for i := range 2000 {
		attempt := i%9 + 1
		base := s.Delays()[attempt-1]
		got, ok := s.NextDelay(attempt, 0, Jitter)
		lo, hi := base-base/10, base+base/10
		if !ok || got < lo || got > hi {
			t.Fatalf("NextDelay(%d) = %v, %v; want within [%v, %v]", attempt, got, ok, lo, hi)
		}
		below = below || got < base
		above = above || got > base
	}
	if !below || !above {
		t.Fatalf("jitter never went both ways: below=%v above=%v", below, above)
	}
	for range 1000 {
		if j := Jitter(); j < -1 || j >= 1 {
			t.Fatalf("Jitter() = %v, want [-1, 1)", j)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 9, 12, 34, 56, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"120", 2 * time.Minute, true},
		{"0", 0, true},
		{" 5 ", 5 * time.Second, true},
		{"007", 7 * time.Second, true},
		{"86400", 24 * time.Hour, true},
		{"99999999999999999999999", time.Duration(math.MaxInt64), true}, // saturates; NextDelay caps it
		{"9223372037", time.Duration(math.MaxInt64), true},              // one past what fits in a Duration
		{"Mon, 09 Mar 2026 12:35:56 GMT", time.Minute, true},            // IMF-fixdate
		{"Monday, 09-Mar-26 13:34:56 GMT", time.Hour, true},             // RFC 850
		{"Mon Mar  9 12:35:06 2026", 10 * time.Second, true},            // asctime
		{"Mon, 09 Mar 2026 12:00:00 GMT", 0, true},                      // in the past: no wait
		{"Mon, 09 Mar 2026 12:34:56 GMT", 0, true},                      // exactly now
		{"", 0, false},
		{"   ", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"soon", 0, false},
		{"0x10", 0, false},
		{"Mon, 09 Mar 2026 12:35:56 CET", 0, false}, // HTTP dates are GMT only
		{"2026-03-09T12:35:56Z", 0, false},
		{"Mon, 09 Mar 2026 25:35:56 GMT", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}
