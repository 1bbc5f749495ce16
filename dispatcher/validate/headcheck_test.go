package validate_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/blazelock/webhooks/dispatcher/validate"
)

// The subject/body agreement check has a fast path (a byte prefix) and a
// decoding path; escaped spellings must take the second and decide the same.
func TestSubjectBodyAgreementWithEscapes(t *testing.T) {
	h := nats.Header{}
	h.Set("Nats-Msg-Id", eventID)
	other := "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c02"
	for _, tc := range []struct {
		name, subject, body string
		ok                  bool
	}{
		{"plain", subject, body, true},
		{"escaped event name", subject, strings.Replace(body, `"file_scan.submitted"`, `"file\u005fscan.submitted"`, 1), true},
		{"escaped integration id", subject, strings.Replace(body, `"integration_id":"0195a0c1`, `"integration_id":"\u0030195a0c1`, 1), true},
		{"escaped, other integration", "blazelock.events." + other + ".file_scan.submitted",
			strings.Replace(body, `"integration_id":"0195a0c1`, `"integration_id":"\u0030195a0c1`, 1), false},
		{"escaped, other event", "blazelock.events." + integration + ".file_scan.failed",
			strings.Replace(body, `"file_scan.submitted"`, `"file\u005fscan.submitted"`, 1), false},
		{"integration id is a prefix of the subject's", "blazelock.events." + integration + "0.file_scan.submitted", body, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, rej := validate.Message(tc.subject, h, []byte(tc.body), 1<<18)
			if tc.ok != (rej == nil) {
				t.Fatalf("accepted %v, want %v (%v)", rej == nil, tc.ok, rej)
			}
			if tc.ok && string(ev.Body) != tc.body {
				t.Fatal("body changed")
			}
			if !tc.ok && !strings.Contains(rej.Reason, "subject says") && !strings.Contains(rej.Reason, "not blazelock.events") {
				t.Fatalf("unexpected reason %q", rej.Reason)
			}
		})
	}
}
