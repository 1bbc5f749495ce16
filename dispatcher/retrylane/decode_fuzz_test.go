package retrylane

import (
	"bytes"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// headerMsg is a jetstream.Msg with headers and data only: all Decode reads.
type headerMsg struct {
	jetstream.Msg
	h    nats.Header
	data []byte
}

func (m headerMsg) Headers() nats.Header { return m.h }
func (m headerMsg) Data() []byte         { return m.data }

// FuzzDecode feeds Decode retry-lane headers as anyone able to publish on
// blazelock.retries.due.> could write them. Decode must never panic, must
// only accept a job with its required fields (attempt and series ≥ 1,
// deferrals ≥ 0, ids and event present), and what it accepts must survive
// the way the pipeline passes it on: re-encoded for the next attempt and
// decoded again, it is the same job.
func FuzzDecode(f *testing.F) {
	f.Add("0195a0c1-0000-7000-8000-0000000000aa", "0195a0c1-0000-7000-8000-0000000000bb", "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01",
		"file_scan.completed", "2", "1", "0", "42", "2026-03-09T12:00:00.123456789Z",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", []byte(`{"event":"file_scan.completed"}`))
	f.Add("d", "", "i", "e", "1", "1", "0", "0", "2026-03-09T12:00:00Z", "", []byte{})
	f.Add("d", "e", "i", "file_scan.failed", "10", "3", "5", "18446744073709551615", "2026-03-09T12:00:00+02:00", "", []byte("x"))
	f.Add("d", "e", "i", "e", "0", "1", "0", "1", "2026-03-09T12:00:00Z", "", []byte{})
	f.Add("d", "e", "i", "e", "+1", "01", "-0", "1", "0000-01-01T00:00:00Z", "", []byte{})
	f.Add("d", "e", "i", "e", "99999999999999999999", "1", "0", "-1", "yesterday", "", []byte{})
	f.Add("", "", "", "", "", "", "", "", "", "", []byte(nil))
	f.Fuzz(func(t *testing.T, delivery, eventID, integration, event, attempt, series, deferrals, sequence, createdAt, traceparent string, body []byte) {
		h := nats.Header{}
		for k, v := range map[string]string{
			hdrDelivery: delivery, hdrEventID: eventID, hdrIntegration: integration, hdrEvent: event,
			hdrAttempt: attempt, hdrSeries: series, hdrDeferrals: deferrals, hdrSequence: sequence,
			hdrCreatedAt: createdAt, "traceparent": traceparent,
		} {
			if v != "" {
				h[k] = []string{v}
			}
		}
		job, err := Decode(headerMsg{h: h, data: body})
		if err != nil {
			return
		}
		if job.Attempt < 1 || job.Series < 1 || job.Deferrals < 0 || job.DeliveryID == "" || job.IntegrationID == "" || job.Event == "" {
			t.Fatalf("accepted an incomplete job %+v", job)
		}
		if !bytes.Equal(job.Body, body) {
			t.Fatal("the body changed")
		}
		// The timestamp is re-encoded in UTC; a time whose UTC form has no
		// four-digit year cannot be written back (RFC 3339), so the job could
		// not be passed on. Such a time never comes from JetStream.
		if y := job.CreatedAt.UTC().Year(); y < 0 || y > 9999 {
			return
		}
		again, err := Decode(headerMsg{h: message(job, "blazelock.retries.due.x").Header, data: job.Body})
		if err != nil {
			t.Fatalf("accepted %+v, but its re-encoding does not decode: %v", job, err)
		}
		if !again.CreatedAt.Equal(job.CreatedAt) {
			t.Fatalf("created at %s became %s", job.CreatedAt, again.CreatedAt)
		}
		again.CreatedAt = job.CreatedAt
		if again.DeliveryID != job.DeliveryID || again.EventID != job.EventID || again.IntegrationID != job.IntegrationID ||
			again.Event != job.Event || again.Attempt != job.Attempt || again.Series != job.Series ||
			again.Deferrals != job.Deferrals || again.EventSequence != job.EventSequence || !bytes.Equal(again.Body, job.Body) ||
			!slices.Equal(again.Trace["traceparent"], job.Trace["traceparent"]) {
			t.Fatalf("round trip changed the job:\n%+v\n%+v", job, again)
		}
	})
}
