package pipeline

import (
	"errors"
	"testing"
	"time"

	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/retrylane"
)

func TestAlreadyDone(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		recSeries, recAttempts int
		state                  string
		jobSeries, jobAttempt  int
		done                   bool
	}{
		{"next attempt of the series", 1, 2, deliverylog.StatePending, 1, 3, false},
		{"redelivered attempt already recorded", 1, 3, deliverylog.StatePending, 1, 3, true},
		{"series already ended", 1, 3, deliverylog.StateDead, 1, 4, true},
		{"job of an older series", 2, 1, deliverylog.StatePending, 1, 5, true},
		{"first attempt of a replay", 2, 0, deliverylog.StatePending, 2, 1, false},
		{"deferred first attempt, record written by a replay race", 1, 0, deliverylog.StatePending, 1, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &deliverylog.Delivery{Series: tc.recSeries, SeriesAttempts: tc.recAttempts, State: tc.state}
			if got := alreadyDone(rec, retrylane.Job{Series: tc.jobSeries, Attempt: tc.jobAttempt}); got != tc.done {
				t.Fatalf("alreadyDone = %v, want %v", got, tc.done)
			}
		})
	}
}

func TestDeferralBacksOff(t *testing.T) {
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute, time.Minute}
	for i, w := range want {
		if got := deferral(i + 1); got != w {
			t.Errorf("deferral(%d) = %s, want %s", i+1, got, w)
		}
	}
}

func TestAttemptRecord(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		res     deliver.Result
		status  *int
		errText string
		excerpt string
	}{
		{"success", deliver.Result{Class: deliver.ClassSuccess, StatusCode: 200, Excerpt: []byte("ok")}, ptr(200), "", "ok"},
		{"server error", deliver.Result{Class: deliver.ClassServerError, StatusCode: 503}, ptr(503), "http_5xx: HTTP 503", ""},
		{"timeout", deliver.Result{Class: deliver.ClassTimeout, Err: errors.New("deadline exceeded")}, nil, "timeout: deadline exceeded", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.res.StartedAt, tc.res.Duration = start, 1500*time.Millisecond
			a := attemptRecord(4, tc.res)
			if a.Number != 4 || a.DurationMillis != 1500 || !a.StartedAt.Equal(start) {
				t.Fatalf("unexpected attempt %+v", a)
			}
			if (a.StatusCode == nil) != (tc.status == nil) || (a.StatusCode != nil && *a.StatusCode != *tc.status) {
				t.Fatalf("status %v, want %v", a.StatusCode, tc.status)
			}
			if got := deref(a.Error); got != tc.errText {
				t.Fatalf("error %q, want %q", got, tc.errText)
			}
			if got := deref(a.ResponseExcerpt); got != tc.excerpt {
				t.Fatalf("excerpt %q, want %q", got, tc.excerpt)
			}
		})
	}
}

func ptr(i int) *int { return &i }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
