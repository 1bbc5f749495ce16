package publisher

import (
	"github.com/google/uuid"

	"github.com/blazelock/webhooks/schemas"
)

// SampleScan returns a plausible file scan object for the event (a new
// scan id, fixed file details), for demos, tests and load generators.
func SampleScan(event string, at schemas.Timestamp) schemas.FileScan {
	ref := "demo-" + at.Format("150405")
	scan := schemas.FileScan{
		ID: uuid.Must(uuid.NewV7()).String(), ExternalReferenceID: &ref, Status: schemas.StatusProcessing,
		ExecutionMode: schemas.ModeAsync, FileName: "invoice.pdf", FileSize: 245761, SubmittedAt: at,
	}
	switch event {
	case schemas.EventCompleted:
		duration := int64(1840)
		scan.Status, scan.CompletedAt, scan.ScanDurationMillis = schemas.StatusCompleted, &at, &duration
		scan.FileType = "application/pdf"
		scan.FileHash = &schemas.FileHash{
			MD5:    "d41d8cd98f00b204e9800998ecf8427e",
			SHA1:   "da39a3ee5e6b4b0d3255bfef95601890afd80709",
			SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		}
		scan.Result = &schemas.ScanResult{Safe: true, Detailed: "clean", Findings: []schemas.Finding{}}
	case schemas.EventFailed:
		scan.Status, scan.FailedAt = schemas.StatusFailed, &at
		scan.Error = &schemas.ScanError{Code: "scan_timeout", Message: "the scan engine did not answer in time"}
	}
	return scan
}
