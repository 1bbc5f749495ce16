package validate_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/blazelock/webhooks/dispatcher/validate"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/schemas"
)

// FuzzMessage feeds validate.Message what any publisher on the events
// stream controls: the subject, the Nats-Msg-Id header and the body. It
// must never panic, and must decide exactly as the contract
// (docs/contract.md, Rejected events)
// read the slow way: size, subject shape, known event, UUID id, schema,
// then subject and body agreeing as decoded by encoding/json. That makes
// it a differential test of the fast path (a byte-prefix comparison that
// replaces the decode for bodies without escapes).
func FuzzMessage(f *testing.F) {
	other := "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c02"
	escapedEvent := strings.Replace(body, `"file_scan.submitted"`, `"file\u005fscan.submitted"`, 1)
	for _, seed := range []struct{ subject, id, body string }{
		{subject, eventID, body},
		{subject, eventID, escapedEvent},
		{subject, eventID, strings.Replace(body, `"integration_id":"0195a0c1`, `"integration_id":"\u0030195a0c1`, 1)},
		{"blazelock.events." + other + ".file_scan.submitted", eventID, body},
		{"blazelock.events." + integration + ".file_scan.failed", eventID, body},
		{"blazelock.events." + integration + "0.file_scan.submitted", eventID, body},
		{"blazelock.events." + strings.ToUpper(integration) + ".file_scan.submitted", eventID, body},
		{subject, eventID, strings.Replace(body, integration, strings.ToUpper(integration), 1)},
		{subject, "", body},
		{subject, "42", body},
		{subject, eventID, `{"event":`},
		{subject, eventID, ""},
		{"blazelock.events." + integration, eventID, body},
		{"blazelock.events..file_scan.submitted", eventID, body},
		{"blazelock.events." + integration + ".file_scan.deleted", eventID, strings.Replace(body, "submitted", "deleted", 1)},
		{subject, eventID, body + " "},
		{subject, eventID, " " + body},
	} {
		f.Add(seed.subject, seed.id, []byte(seed.body), uint16(4096))
	}
	f.Add(subject, eventID, []byte(body), uint16(len(body)))
	f.Add(subject, eventID, []byte(body), uint16(len(body)-1))
	f.Fuzz(func(t *testing.T, subject, msgID string, body []byte, max uint16) {
		h := nats.Header{}
		if msgID != "" {
			h.Set("Nats-Msg-Id", msgID)
		}
		ev, rej := validate.Message(subject, h, body, int(max))
		wantReason := reference(subject, msgID, body, int(max))
		switch {
		case rej == nil && wantReason != "":
			t.Fatalf("accepted, but the contract rejects it: %s", wantReason)
		case rej != nil && wantReason == "":
			t.Fatalf("rejected (%s), but the contract accepts it", rej.Reason)
		case rej != nil:
			if rej.Reason == "" {
				t.Fatal("rejection without a reason")
			}
			// The partial event files the rejection under the subject's
			// integration, so it can be listed.
			integrationID, name, _ := natsinfra.ParseEventSubject(subject)
			if rej.Partial.IntegrationID != integrationID || rej.Partial.Name != name || rej.Partial.ID != h.Get("Nats-Msg-Id") {
				t.Fatalf("partial %+v does not match the subject %q and id %q", rej.Partial, subject, msgID)
			}
		default:
			integrationID, name, _ := natsinfra.ParseEventSubject(subject)
			if ev.ID != msgID || ev.IntegrationID != integrationID || ev.Name != name || string(ev.Body) != string(body) {
				t.Fatalf("accepted event %+v does not match its message", ev)
			}
		}
	})
}

// reference decides the way docs/contract.md, Rejected events, reads, without
// any fast path; it returns "" for a deliverable event.
func reference(subject, msgID string, body []byte, max int) string {
	if len(body) > max {
		return "oversized"
	}
	integrationID, name, ok := natsinfra.ParseEventSubject(subject)
	if !ok {
		return "subject shape"
	}
	if !schemas.IsEventName(name) {
		return "unknown event"
	}
	if _, err := uuid.Parse(msgID); err != nil {
		return "event id"
	}
	if err := schemas.Validate(body); err != nil {
		return "schema: " + err.Error()
	}
	var head struct {
		Event         string `json:"event"`
		IntegrationID string `json:"integration_id"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return "not an envelope"
	}
	if head.Event != name || head.IntegrationID != integrationID {
		return "subject and body disagree"
	}
	return ""
}
