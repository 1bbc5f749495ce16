package flow

import "time"

// Signal classifies what one attempt says about its endpoint's capacity.
type Signal int

const (
	// NoSample: no request reached the endpoint (skipped, rejected, config
	// store trouble, refused by the SSRF guard, DNS or TLS failure). The
	// limiter learns nothing.
	NoSample Signal = iota
	// Answered: the endpoint answered in time (2xx, 3xx, 4xx other than
	// 429). Its latency is a sample of the endpoint's speed.
	Answered
	// Overloaded: 5xx, 429, connection refused or reset. The endpoint is
	// failing or cannot take more: back off.
	Overloaded
	// TimedOut: no answer within the attempt timeout. Back off as for
	// Overloaded; the endpoint also counts as stalled until it answers.
	TimedOut
)

// Outcome is what a finished attempt reports to its endpoint's limiter.
type Outcome struct {
	Signal Signal
	// Latency is the request's duration (Answered only).
	Latency time.Duration
	// RetryAfter, from a 429 or 503, pauses the endpoint's new attempts.
	RetryAfter time.Duration
}

// The limiter's constants. They follow Netflix concurrency-limits' AIMD
// (grow by one per answered attempt while at least half the limit is in
// use, multiply by backoffRatio on a drop), with a latency guard: rising
// latency counts as a drop once the recent average is riseFactor times
// the long-term one AND latencySlack above it. The slack is what keeps a
// busy dispatcher from reading its own CPU saturation (a few to a few tens
// of milliseconds added to every request at once) as a slow endpoint.
const (
	initialLimit = 2
	backoffRatio = 0.9
	riseFactor   = 2.0
	latencySlack = 100 * time.Millisecond
	// shortWeight and longWeight are the EWMA weights of one sample in the
	// recent and the long-term latency averages.
	shortWeight = 0.2
	longWeight  = 0.02
	// warmSamples: no latency verdict before this many samples.
	warmSamples = 10
)

// limit is one endpoint's adaptive concurrency limit. It is not safe for
// concurrent use: the Scheduler guards it.
type limit struct {
	value   float64
	latency ewma
}

// ewma keeps a recent and a long-term average of answered latencies.
type ewma struct {
	short, long time.Duration
	samples     int
}

func (e *ewma) add(d time.Duration) {
	if e.samples == 0 {
		e.short, e.long = d, d
	} else {
		e.short += time.Duration(shortWeight * float64(d-e.short))
		e.long += time.Duration(longWeight * float64(d-e.long))
	}
	e.samples++
}

// rising reports a clear rise of the recent average over the long-term one.
func (e *ewma) rising() bool {
	return e.samples >= warmSamples &&
		float64(e.short) > riseFactor*float64(e.long) && e.short-e.long > latencySlack
}

func newLimit() limit { return limit{value: initialLimit} }

// observe updates the limit with one outcome. inUse is the number of
// attempts that were in flight when this one finished (itself included);
// ceiling is the most the limit may reach now.
func (l *limit) observe(o Outcome, inUse, ceiling int) {
	switch o.Signal {
	case Overloaded, TimedOut:
		l.value = max(1, l.value*backoffRatio)
	case Answered:
		l.latency.add(o.Latency)
		switch {
		case l.latency.rising():
			l.value = max(1, l.value*backoffRatio)
		case float64(2*inUse) >= l.value:
			// Grow only while the limit is what holds the endpoint back
			// (app-limited flows do not probe for capacity they do not use).
			l.value++
		}
	}
	l.value = min(l.value, float64(max(1, ceiling)))
}

// current is the limit as a whole number of attempts, at least 1.
func (l *limit) current(ceiling int) int {
	return max(1, min(int(l.value), ceiling))
}

// typicalLatency is the endpoint's long-term answered latency, 0 before
// the first answer.
func (l *limit) typicalLatency() time.Duration { return l.latency.long }
