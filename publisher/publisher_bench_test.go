package publisher_test

import (
	"strings"
	"testing"
	"time"

	"github.com/blazelock/webhooks/publisher"
	"github.com/blazelock/webhooks/schemas"
)

// benchEvent is a file_scan.completed event whose envelope is exactly 1 KiB,
// the size DESIGN.md's goals are measured with.
func benchEvent(tb testing.TB) publisher.Event {
	tb.Helper()
	at := schemas.At(time.Date(2026, 3, 9, 12, 34, 56, 0, time.UTC))
	ref, duration := "invoice-4711", int64(1840)
	scan := schemas.FileScan{
		ID: "019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1", ExternalReferenceID: &ref, Status: schemas.StatusCompleted,
		ExecutionMode: schemas.ModeAsync, FileName: "invoice.pdf", FileSize: 245761, SubmittedAt: at,
		FileType: "application/pdf",
		FileHash: &schemas.FileHash{
			MD5:    "d41d8cd98f00b204e9800998ecf8427e",
			SHA1:   "da39a3ee5e6b4b0d3255bfef95601890afd80709",
			SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		},
		Result:      &schemas.ScanResult{Detailed: "malicious", Findings: []schemas.Finding{{Name: "Win.Trojan.Agent-1234", Category: "trojan"}}},
		CompletedAt: &at, ScanDurationMillis: &duration,
	}
	ev := publisher.Event{ID: "0195a0c1-0000-7000-8000-000000000001", Name: schemas.EventCompleted,
		IntegrationID: "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01", OccurredAt: at, Data: scan}
	p := publisher.New(nil)
	body, _, err := p.Build(ev)
	if err != nil {
		tb.Fatal(err)
	}
	scan.FileName = strings.Repeat("x", 1024-len(body)) + scan.FileName
	ev.Data = scan
	if body, _, err = p.Build(ev); err != nil || len(body) != 1024 {
		tb.Fatalf("built %d bytes (%v), want 1024", len(body), err)
	}
	return ev
}

// BenchmarkBuild is the publisher's CPU cost per event before the NATS
// publish: envelope encoding, schema validation, and a new UUIDv7.
func BenchmarkBuild(b *testing.B) {
	ev := benchEvent(b)
	p := publisher.New(nil)
	for _, tc := range []struct {
		name string
		id   string
	}{{"given-id", ev.ID}, {"new-uuidv7", ""}} {
		b.Run(tc.name, func(b *testing.B) {
			ev.ID = tc.id
			b.SetBytes(1024)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := p.Build(ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
