// Package schedule is the retry schedule (docs/contract.md, Retry schedule):
// how long to wait after a failed attempt, with jitter and Retry-After, and
// when to give up.
package schedule

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

const (
	// MaxDelay bounds a single configured delay. The default schedule's
	// longest is 8 h; a day is plenty of headroom and keeps every delivery's
	// lifetime (and so the delivery log's retention) bounded.
	MaxDelay = 24 * time.Hour

	// MaxRetries is the most delays a schedule may have: the contract promises
	// at most 10 attempts and the attempt header is documented as 1 to 10,
	// so an operator schedule may shorten that but not lengthen it.
	MaxRetries = 9

	// JitterFraction is the ±10 % jitter of docs/contract.md, Retry schedule.
	JitterFraction = 0.10
)

// Schedule is an immutable list of delays: delay i is the wait after attempt
// i+1 failed, before attempt i+2. Attempt 1 always runs immediately. The zero
// value allows a single attempt and no retries.
type Schedule struct {
	delays []time.Duration // never mutated after construction; copies are shared
}

// Default returns the contract's schedule (docs/contract.md, Retry schedule):
// attempt 1 immediately, then 1 min, 2 min, 5 min, 10 min, 30 min, 1 h, 2 h, 4
// h and 8 h: 10 attempts.
func Default() Schedule {
	return Schedule{delays: []time.Duration{
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour,
	}}
}

// New returns a schedule with the given delays (before attempts 2..N), each
// between 0 and MaxDelay, at most MaxRetries of them. Zero delays are allowed:
// tests and local development use them to reach "dead" quickly, and the
// attempt limit still bounds the work.
func New(delays ...time.Duration) (Schedule, error) {
	if len(delays) > MaxRetries {
		return Schedule{}, fmt.Errorf("retry schedule has %d delays; at most %d are allowed (%d attempts per delivery at most)", len(delays), MaxRetries, MaxRetries+1)
	}
	for i, d := range delays {
		if err := checkDelay(d); err != nil {
			return Schedule{}, fmt.Errorf("retry schedule item %d: %w", i+1, err)
		}
	}
	return Schedule{delays: append([]time.Duration(nil), delays...)}, nil
}

func checkDelay(d time.Duration) error {
	switch {
	case d < 0:
		return fmt.Errorf("%s is negative", d)
	case d > MaxDelay:
		return fmt.Errorf("%s exceeds the maximum of %s", d, MaxDelay)
	}
	return nil
}

// Parse reads DISPATCHER_RETRY_SCHEDULE: comma-separated Go durations, the
// delays before attempts 2..N, e.g. "1s,2s,5s" (4 attempts). Spaces around
// items are ignored. Each item must be a duration with a unit ("0" alone is
// accepted, as Go's time.ParseDuration does), between 0 and MaxDelay; empty
// input, empty items and more than MaxRetries items are errors.
func Parse(s string) (Schedule, error) {
	if strings.TrimSpace(s) == "" {
		return Schedule{}, errors.New("retry schedule is empty; give comma-separated durations such as 1m,5m,30m")
	}
	items := strings.Split(s, ",")
	if len(items) > MaxRetries {
		return Schedule{}, fmt.Errorf("retry schedule has %d delays; at most %d are allowed (%d attempts per delivery at most)", len(items), MaxRetries, MaxRetries+1)
	}
	delays := make([]time.Duration, len(items))
	for i, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			return Schedule{}, fmt.Errorf("retry schedule item %d is empty", i+1)
		}
		d, err := time.ParseDuration(item)
		if err != nil {
			return Schedule{}, fmt.Errorf("retry schedule item %d %q is not a duration; use Go syntax such as 30s, 5m or 1h", i+1, item)
		}
		if err := checkDelay(d); err != nil {
			return Schedule{}, fmt.Errorf("retry schedule item %d: %w", i+1, err)
		}
		delays[i] = d
	}
	return Schedule{delays: delays}, nil
}

// MaxAttempts is the attempt limit: the number of delays plus the first,
// immediate attempt. After that many failures a delivery is dead.
func (s Schedule) MaxAttempts() int { return len(s.delays) + 1 }

// Delays returns a copy of the delays before attempts 2..MaxAttempts.
func (s Schedule) Delays() []time.Duration { return append([]time.Duration(nil), s.delays...) }

// String formats the schedule so that Parse(s.String()) gives it back,
// e.g. "1m0s,2m0s,5m0s". The zero Schedule formats as "".
func (s Schedule) String() string {
	var b strings.Builder
	for i, d := range s.delays {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(d.String())
	}
	return b.String()
}

// RetryAfterCeiling is the most a Retry-After header can stretch a delay:
// twice the longest delay of the schedule (16 h for the default). Tying it to
// the schedule keeps test schedules fast (a "1s,2s,5s" schedule never waits
// more than 10 s even if the receiver asks for an hour) and bounds how long a
// receiver can keep a delivery alive: at most MaxAttempts-1 waits of this
// length. A schedule of only zero delays therefore ignores Retry-After.
func (s Schedule) RetryAfterCeiling() time.Duration {
	var longest time.Duration
	for _, d := range s.delays {
		longest = max(longest, d)
	}
	return 2 * longest
}

// NextDelay returns how long to wait before the attempt after attempt (the
// 1-based number of the attempt that just failed), and ok=false when that was
// the last allowed attempt: the delivery is then dead. attempt < 1 means no
// attempt has run yet; the first one is immediate (0, true).
//
// The scheduled delay is jittered by up to ±JitterFraction: jitter returns a
// value in [-1, 1] (values outside are clamped, NaN counts as 0; a nil jitter
// means none; Jitter is a ready-made source). retryAfter, from a 429 or 503
// (see ParseRetryAfter; pass 0 when absent), only ever lengthens the wait, up
// to RetryAfterCeiling.
func (s Schedule) NextDelay(attempt int, retryAfter time.Duration, jitter func() float64) (time.Duration, bool) {
	if attempt < 1 {
		return 0, true
	}
	if attempt > len(s.delays) {
		return 0, false
	}
	base := s.delays[attempt-1]
	delay := base
	if jitter != nil {
		j := jitter()
		switch {
		case math.IsNaN(j):
			j = 0
		case j < -1:
			j = -1
		case j > 1:
			j = 1
		}
		delay += time.Duration(float64(base) * JitterFraction * j)
	}
	if retryAfter > delay {
		delay = max(delay, min(retryAfter, s.RetryAfterCeiling()))
	}
	return delay, true
}

// Jitter returns a uniformly distributed value in [-1, 1), for NextDelay. It
// is safe for concurrent use.
func Jitter() float64 { return rand.Float64()*2 - 1 }

// HTTP-date layouts a recipient must accept (RFC 9110 §5.6.7): IMF-fixdate
// and the obsolete RFC 850 and asctime forms.
var httpDateLayouts = [...]string{
	"Mon, 02 Jan 2006 15:04:05 GMT",
	"Monday, 02-Jan-06 15:04:05 GMT",
	"Mon Jan _2 15:04:05 2006",
}

// ParseRetryAfter reads a Retry-After header value (RFC 9110 §10.2.3): either
// delay-seconds (digits only) or an HTTP-date, which is turned into a wait
// relative to now. ok is false for an absent or malformed value ("-5", "1.5",
// "soon", a date in another zone). A date at or before now is valid and means
// no wait (0, true). Second counts too large for a time.Duration saturate;
// NextDelay caps the result anyway.
func ParseRetryAfter(header string, now time.Time) (time.Duration, bool) {
	header = strings.TrimSpace(header)
	if header == "" {
		return 0, false
	}
	if isDigits(header) {
		secs, err := strconv.ParseUint(header, 10, 64)
		if err != nil || secs > uint64(math.MaxInt64/int64(time.Second)) {
			return time.Duration(math.MaxInt64), true // only overflow remains possible
		}
		return time.Duration(secs) * time.Second, true
	}
	for _, layout := range httpDateLayouts {
		if t, err := time.Parse(layout, header); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	return 0, false
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
