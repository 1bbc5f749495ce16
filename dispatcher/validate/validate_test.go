package validate_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/blazelock/webhooks/dispatcher/validate"
)

const (
	integration = "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01"
	eventID     = "0195a0c1-0000-7000-8000-000000000001"
	body        = `{"event":"file_scan.submitted","integration_id":"0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01","occurred_at":"2026-03-09T12:34:56.000Z","data":{"id":"019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1","external_reference_id":"invoice-4711","status":"processing","execution_mode":"async","file_name":"invoice.pdf","file_size":245761,"submitted_at":"2026-03-09T12:34:56.000Z"}}`
	subject     = "blazelock.events." + integration + ".file_scan.submitted"
)

func TestMessage(t *testing.T) {
	hdr := func(id string) nats.Header {
		h := nats.Header{}
		if id != "" {
			h.Set("Nats-Msg-Id", id)
		}
		return h
	}
	for _, tc := range []struct {
		name, subject, id, body string
		max                     int
		reason                  string // empty: valid
	}{
		{"valid", subject, eventID, body, 1 << 18, ""},
		{"oversized", subject, eventID, body, 100, "limit is 100"},
		{"subject shape", "blazelock.events." + integration, eventID, body, 1 << 18, "is not blazelock.events"},
		{"unknown event type", "blazelock.events." + integration + ".file_scan.deleted", eventID, body, 1 << 18, "unknown event type"},
		{"missing id", subject, "", body, 1 << 18, "missing Nats-Msg-Id"},
		{"id not uuid", subject, "42", body, 1 << 18, "not a UUID"},
		{"malformed JSON", subject, eventID, `{"event":`, 1 << 18, "malformed JSON"},
		{"schema invalid", subject, eventID, strings.Replace(body, `"file_size":245761`, `"file_size":-1`, 1), 1 << 18, "file_size"},
		{"event mismatch", "blazelock.events." + integration + ".file_scan.failed", eventID, body, 1 << 18, "subject says file_scan.failed"},
		{"integration mismatch", "blazelock.events.0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c02.file_scan.submitted", eventID, body, 1 << 18, "for integration 0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, rej := validate.Message(tc.subject, hdr(tc.id), []byte(tc.body), tc.max)
			if tc.reason == "" {
				if rej != nil {
					t.Fatalf("valid event rejected: %s", rej.Reason)
				}
				if ev.ID != eventID || ev.IntegrationID != integration || ev.Name != "file_scan.submitted" || string(ev.Body) != body {
					t.Fatalf("unexpected event %+v", ev)
				}
				return
			}
			if rej == nil {
				t.Fatalf("invalid event accepted")
			}
			if !strings.Contains(rej.Reason, tc.reason) && !strings.Contains(strings.ToLower(rej.Reason), tc.reason) {
				t.Fatalf("reason %q does not mention %q", rej.Reason, tc.reason)
			}
		})
	}
}
