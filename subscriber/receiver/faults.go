package receiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Faults make the receiver misbehave on purpose, for tests and demos. The zero
// value is a healthy receiver. Faults are set at start (Config.Faults, the
// binary's flags) and replaced at runtime with SetFaults or PUT /faults.
//
// How a request is answered:
//   - Delay holds every webhook response (verified or not) for that long first.
//   - Refused requests (bad signature, stale, too large, …) are always answered
//     by the verification outcome (401, 413, …); faults below never apply to
//     them, so a misconfigured secret never hides behind an injected fault.
//   - A verified request "fails" when FailFirst is 0 and a failing fault is
//     set (Reset, Hang, RetryAfter or a non-2xx Status), or when FailFirst is
//     N > 0 and the request is among the first N verified arrivals of its
//     event id (counted by this receiver, whatever the attempt header says).
//   - A failing request is reset if Reset, held if Hang, else answered with
//     Status when it is not 2xx, else 429 when RetryAfter is set, else 500;
//     with RetryAfter set the answer carries "Retry-After: <RetryAfter>".
//   - Other verified requests are answered 2xx: Status when it is a 2xx
//     code, else 200. A 3xx Status carries "Location: /webhooks/redirected",
//     so a sender that wrongly follows redirects shows up as arrivals on that
//     path.
type Faults struct {
	// Status is the status to answer (200 to 599; 0 means none).
	Status int `json:"status,omitempty"`
	// RetryAfter, in seconds, adds a Retry-After header to failing answers;
	// alone it makes them 429 Too Many Requests.
	RetryAfter int `json:"retry_after,omitempty"`
	// FailFirst limits the failing faults to the first N verified attempts of
	// each event; after them the event is accepted. With no other fault set
	// those attempts get 500.
	FailFirst int `json:"fail_first,omitempty"`
	// Delay holds each webhook response. A client that gives up meanwhile
	// is counted as abandoned.
	Delay Duration `json:"delay,omitempty"`
	// Hang holds the connection without answering until the client gives
	// up, the receiver's MaxHang passes or the receiver is closed, and then
	// drops it.
	Hang bool `json:"hang,omitempty"`
	// Reset closes the connection with a TCP reset (SO_LINGER 0) after the
	// request was read, so the client sees "connection reset by peer".
	Reset bool `json:"reset,omitempty"`
}

// Validate reports every problem with f at once.
func (f Faults) Validate() error {
	var errs []error
	if f.Status != 0 && (f.Status < 200 || f.Status > 599) {
		errs = append(errs, fmt.Errorf("status %d: must be 0 or 200 to 599", f.Status))
	}
	if f.RetryAfter < 0 {
		errs = append(errs, fmt.Errorf("retry_after %d: must not be negative", f.RetryAfter))
	}
	if f.FailFirst < 0 {
		errs = append(errs, fmt.Errorf("fail_first %d: must not be negative", f.FailFirst))
	}
	if f.Delay < 0 {
		errs = append(errs, fmt.Errorf("delay %s: must not be negative", time.Duration(f.Delay)))
	}
	if f.Hang && f.Reset {
		errs = append(errs, errors.New("hang and reset: choose one"))
	}
	return errors.Join(errs...)
}

// failing reports whether the n-th verified arrival of an event fails.
func (f *Faults) failing(n uint32) bool {
	if f.FailFirst > 0 {
		return n <= uint32(f.FailFirst)
	}
	return f.Reset || f.Hang || f.RetryAfter > 0 || (f.Status != 0 && !isSuccess(f.Status))
}

// failStatus is the status of a failing answer that is neither reset nor hang.
func (f *Faults) failStatus() int {
	switch {
	case f.Status != 0 && !isSuccess(f.Status):
		return f.Status
	case f.RetryAfter > 0:
		return 429
	default:
		return 500
	}
}

// successStatus is the status of an accepted answer.
func (f *Faults) successStatus() int {
	if isSuccess(f.Status) {
		return f.Status
	}
	return 200
}

func isSuccess(status int) bool { return status >= 200 && status <= 299 }

// Duration is a time.Duration written in JSON as a Go duration string
// ("250ms", "1m30s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"250ms\" or \"2s\": %s", b)
	}
	parsed, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("parse duration: %w", err)
	}
	*d = Duration(parsed)
	return nil
}
