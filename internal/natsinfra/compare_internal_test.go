package natsinfra

import (
	"strings"
	"testing"
	"time"
)

// An older server silently drops options it does not know; provisioning
// must name each one it finds missing from the read-back configuration.
func TestComparisonsNameWhatTheServerDropped(t *testing.T) {
	o := DefaultOptions()
	want := o.Streams()[1] // the retries stream, with message schedules
	got := want
	got.AllowMsgSchedules = false
	got.Duplicates = 2 * time.Minute
	want.Duplicates = 5 * time.Minute
	errs := compareStream(want, got)
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "duplicate window") || !strings.Contains(errs[1].Error(), "message schedules: stored false, asked true") {
		t.Fatalf("stream differences reported as %v", errs)
	}
	cc := o.Consumers()[EventsStream]
	stored := cc
	stored.AckWait = time.Second
	if errs := compareConsumer(cc, stored); len(errs) != 1 || !strings.Contains(errs[0].Error(), "consumer dispatcher ack wait") {
		t.Fatalf("consumer differences reported as %v", errs)
	}
	if errs := compareStream(want, want); len(errs) != 0 {
		t.Fatalf("identical configs reported as different: %v", errs)
	}
}
