package validate_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/blazelock/webhooks/dispatcher/validate"
	"github.com/blazelock/webhooks/schemas"
)

// benchBody is a valid file_scan.submitted envelope padded to exactly 1 KiB
// (the file name grows), the size DESIGN.md's goals are measured with.
func benchBody(tb testing.TB) []byte {
	tb.Helper()
	pad := strings.Repeat("x", 1024-len(body))
	b := []byte(strings.Replace(body, `"file_name":"invoice.pdf"`, `"file_name":"`+pad+`invoice.pdf"`, 1))
	if len(b) != 1024 {
		tb.Fatalf("body is %d bytes", len(b))
	}
	if err := schemas.Validate(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkMessage is the dispatcher's per-message validation
// (docs/contract.md, Rejected events):
// subject, event id, JSON Schema, and subject/body agreement.
func BenchmarkMessage(b *testing.B) {
	raw := benchBody(b)
	h := nats.Header{}
	h.Set("Nats-Msg-Id", eventID)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, rej := validate.Message(subject, h, raw, 1<<18); rej != nil {
			b.Fatal(rej.Reason)
		}
	}
}
