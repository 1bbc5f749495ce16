package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Limits of DISPATCHER_RETRY_SCHEDULE (docs/contract.md, Retry schedule):
// an operator may shorten the default schedule, never lengthen it.
const (
	// MaxRetryDelays is the most delays a schedule may have: the contract
	// promises at most 10 attempts and documents the attempt header as 1 to
	// 10.
	MaxRetryDelays = 9

	// MaxRetryDelay bounds a single delay. The default schedule's longest
	// is 8 h; a day is plenty of headroom and keeps every delivery's
	// lifetime (and so the delivery log's retention) bounded.
	MaxRetryDelay = 24 * time.Hour
)

// DefaultRetryDelays returns the contract's schedule (docs/contract.md,
// Retry schedule): after attempt 1, which is immediate, wait 1 min, 2 min,
// 5 min, 10 min, 30 min, 1 h, 2 h, 4 h and 8 h: 10 attempts. Each call
// returns a new slice.
func DefaultRetryDelays() []time.Duration {
	return []time.Duration{
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour,
	}
}

// ParseRetryDelays reads DISPATCHER_RETRY_SCHEDULE: comma-separated Go
// durations, the delays before attempts 2..N, e.g. "1s,2s,5s" (4 attempts).
// Spaces around items are ignored. Each item must be a duration with a unit
// ("0" alone is accepted, as Go's time.ParseDuration does) and pass
// CheckRetryDelays; empty input and empty items are errors.
func ParseRetryDelays(s string) ([]time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("retry schedule is empty; give comma-separated durations such as 1m,5m,30m")
	}
	items := strings.Split(s, ",")
	if err := checkRetryCount(len(items)); err != nil {
		return nil, err
	}
	delays := make([]time.Duration, len(items))
	for i, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("retry schedule item %d is empty", i+1)
		}
		d, err := time.ParseDuration(item)
		if err != nil {
			return nil, fmt.Errorf("retry schedule item %d %q is not a duration; use Go syntax such as 30s, 5m or 1h", i+1, item)
		}
		delays[i] = d
	}
	if err := CheckRetryDelays(delays); err != nil {
		return nil, err
	}
	return delays, nil
}

// CheckRetryDelays enforces the limits: at most MaxRetryDelays delays, each
// between 0 and MaxRetryDelay. Zero delays are allowed: tests and local
// development use them to reach "dead" quickly, and the attempt limit
// still bounds the work.
func CheckRetryDelays(delays []time.Duration) error {
	if err := checkRetryCount(len(delays)); err != nil {
		return err
	}
	for i, d := range delays {
		switch {
		case d < 0:
			return fmt.Errorf("retry schedule item %d: %s is negative", i+1, d)
		case d > MaxRetryDelay:
			return fmt.Errorf("retry schedule item %d: %s exceeds the maximum of %s", i+1, d, MaxRetryDelay)
		}
	}
	return nil
}

func checkRetryCount(n int) error {
	if n > MaxRetryDelays {
		return fmt.Errorf("retry schedule has %d delays; at most %d are allowed (%d attempts per delivery at most)", n, MaxRetryDelays, MaxRetryDelays+1)
	}
	return nil
}

// formatDelays writes delays as DISPATCHER_RETRY_SCHEDULE takes them.
func formatDelays(delays []time.Duration) string {
	items := make([]string, len(delays))
	for i, d := range delays {
		items[i] = formatDuration(d)
	}
	return strings.Join(items, ",")
}
