// Package schedule is the retry policy (docs/contract.md, Retry schedule):
// how long to wait after a failed attempt, with jitter and Retry-After, and
// when to give up. The delays, their default and their limits are the
// operator's setting and live in package config; this package builds the
// policy from them.
package schedule

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/blazelock/webhooks/config"
)

// JitterFraction is the ±10 % jitter of docs/contract.md, Retry schedule.
const JitterFraction = 0.10

// Schedule is an immutable list of delays: delay i is the wait after attempt
// i+1 failed, before attempt i+2. Attempt 1 always runs immediately. The zero
// value allows a single attempt and no retries.
type Schedule struct {
	delays []time.Duration // never mutated after construction; copies are shared
}

// Default returns the contract's schedule, config.DefaultRetryDelays: 10
// attempts.
func Default() Schedule {
	return Schedule{delays: config.DefaultRetryDelays()}
}

// New returns a schedule with the given delays (before attempts 2..N), the
// operator's DISPATCHER_RETRY_SCHEDULE as config parsed it. They must pass
// config.CheckRetryDelays: at most config.MaxRetryDelays of them, each
// between 0 and config.MaxRetryDelay.
func New(delays ...time.Duration) (Schedule, error) {
	if err := config.CheckRetryDelays(delays); err != nil {
		return Schedule{}, err
	}
	return Schedule{delays: append([]time.Duration(nil), delays...)}, nil
}

// MaxAttempts is the attempt limit: the number of delays plus the first,
// immediate attempt. After that many failures a delivery is dead.
func (s Schedule) MaxAttempts() int { return len(s.delays) + 1 }

// Delays returns a copy of the delays before attempts 2..MaxAttempts.
func (s Schedule) Delays() []time.Duration { return append([]time.Duration(nil), s.delays...) }

// String formats the schedule so that config.ParseRetryDelays(s.String())
// gives its delays back, e.g. "1m0s,2m0s,5m0s". The zero Schedule formats
// as "".
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
