package schemas

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// benchmarkBody builds a file_scan.completed body of exactly 1 KiB.
func benchmarkBody(tb testing.TB) []byte {
	tb.Helper()
	at := At(time.Date(2026, 3, 9, 12, 34, 56, 0, time.UTC))
	done := At(at.Add(15 * time.Second))
	duration := int64(15000)
	ref := "invoice-4711"
	scan := FileScan{
		ID: "019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1", ExternalReferenceID: &ref,
		Status: StatusCompleted, ExecutionMode: ModeAsync, FileName: "invoice.pdf",
		FileSize: 245761, SubmittedAt: at, FileType: "application/pdf",
		FileHash: &FileHash{
			MD5:    "d41d8cd98f00b204e9800998ecf8427e",
			SHA1:   "da39a3ee5e6b4b0d3255bfef95601890afd80709",
			SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		},
		Result: &ScanResult{Detailed: "malicious", Findings: []Finding{
			{Name: "Win.Trojan.Agent-1234", Category: "trojan"},
			{Name: "PDF.Exploit.CVE_2023_1234", Category: "exploit"},
			{Name: "Heuristics.Encrypted.Zip", Category: "heuristic"},
		}},
		CompletedAt: &done, ScanDurationMillis: &duration,
	}
	build := func() []byte {
		data, err := json.Marshal(scan)
		if err != nil {
			tb.Fatal(err)
		}
		body, err := json.Marshal(Envelope{Event: EventCompleted, IntegrationID: "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01", OccurredAt: done, Data: data})
		if err != nil {
			tb.Fatal(err)
		}
		return body
	}
	body := build()
	if len(body) > 1024 {
		tb.Fatalf("base body is %d bytes, over 1 KiB", len(body))
	}
	scan.FileName = strings.Repeat("q", 1024-len(body)) + scan.FileName
	body = build()
	if len(body) != 1024 {
		tb.Fatalf("body is %d bytes, want 1024", len(body))
	}
	if err := Validate(body); err != nil {
		tb.Fatal(err)
	}
	return body
}

func BenchmarkValidate(b *testing.B) {
	body := benchmarkBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpuStart := processCPUTime()
	for b.Loop() {
		if err := Validate(body); err != nil {
			b.Fatal(err)
		}
	}
	reportCPUTime(b, cpuStart)
}

// reportCPUTime adds the process CPU time per operation (GC included) to the
// benchmark's output as cpu-ns/op.
func reportCPUTime(b *testing.B, start time.Duration) {
	if used := processCPUTime() - start; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkValidateParallel shows throughput on all cores (GOMAXPROCS).
func BenchmarkValidateParallel(b *testing.B) {
	body := benchmarkBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpuStart := processCPUTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := Validate(body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportCPUTime(b, cpuStart)
}

// BenchmarkValidateParts splits the cost between the strict decoder and the
// schema validator.
func BenchmarkValidateParts(b *testing.B) {
	body := benchmarkBody(b)
	s := loadSchemas()
	mode := decodeMode{envelope: true, compact: true, names: &s.names}
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d := decoder{buf: body, mode: mode, path: make([]string, 0, 8)}
			if _, err := d.decodeDocument(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("schema", func(b *testing.B) {
		d := decoder{buf: body, mode: mode}
		v, err := d.decodeDocument()
		if err != nil {
			b.Fatal(err)
		}
		data := v.(map[string]any)["data"]
		b.ReportAllocs()
		for b.Loop() {
			if err := s.envelope.Validate(v); err != nil {
				b.Fatal(err)
			}
			if err := s.data[EventCompleted].Validate(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json-for-reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("invalid body", func(b *testing.B) {
		bad := []byte(strings.Replace(string(body), `"file_size":245761`, `"file_size":-1`, 1))
		b.ReportAllocs()
		for b.Loop() {
			if Validate(bad) == nil {
				b.Fatal("accepted")
			}
		}
	})
}
