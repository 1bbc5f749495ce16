package schemas

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event names (docs/contract.md, Events).
const (
	EventSubmitted = "file_scan.submitted"
	EventCompleted = "file_scan.completed"
	EventFailed    = "file_scan.failed"
)

// EventNames lists every event in the contract's order (docs/contract.md, Events).
var EventNames = []string{EventSubmitted, EventCompleted, EventFailed}

// IsEventName reports whether name is one of the three events.
func IsEventName(name string) bool {
	for _, n := range EventNames {
		if n == name {
			return true
		}
	}
	return false
}

// TimestampLayout is the contract's timestamp (docs/contract.md, Envelope):
// RFC 3339, UTC, milliseconds.
const TimestampLayout = "2006-01-02T15:04:05.000Z"

// Timestamp is a time that marshals as TimestampLayout.
type Timestamp struct{ time.Time }

// At returns t as a Timestamp truncated to milliseconds.
func At(t time.Time) Timestamp { return Timestamp{t.UTC().Truncate(time.Millisecond)} }

// String formats the timestamp with TimestampLayout.
func (t Timestamp) String() string { return t.UTC().Format(TimestampLayout) }

// MarshalJSON writes the contract's layout.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.String() + `"`), nil
}

// UnmarshalJSON accepts the contract's layout only.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	parsed, err := time.Parse(TimestampLayout, s)
	if err != nil {
		return fmt.Errorf("timestamp %q is not RFC 3339 UTC with milliseconds (%s)", s, TimestampLayout)
	}
	t.Time = parsed
	return nil
}

// Envelope is the webhook body (docs/contract.md, Envelope). Field order is
// the wire order. Data is kept raw so the delivered bytes are exactly the
// published bytes.
type Envelope struct {
	Event         string          `json:"event"`
	IntegrationID string          `json:"integration_id"`
	OccurredAt    Timestamp       `json:"occurred_at"`
	Data          json.RawMessage `json:"data"`
}

// FileScan is the file scan object carried in Data (docs/contract.md, File
// scan object). Fields that
// only some events carry are pointers or omitempty, so one type serves all
// three events; its field order is the wire order.
type FileScan struct {
	ID                  string      `json:"id"`
	ExternalReferenceID *string     `json:"external_reference_id"`
	Status              string      `json:"status"`
	ExecutionMode       string      `json:"execution_mode"`
	FileName            string      `json:"file_name"`
	FileSize            int64       `json:"file_size"`
	SubmittedAt         Timestamp   `json:"submitted_at"`
	FileType            string      `json:"file_type,omitempty"`
	FileHash            *FileHash   `json:"file_hash,omitempty"`
	Result              *ScanResult `json:"result,omitempty"`
	CompletedAt         *Timestamp  `json:"completed_at,omitempty"`
	ScanDurationMillis  *int64      `json:"scan_duration,omitempty"`
	FailedAt            *Timestamp  `json:"failed_at,omitempty"`
	Error               *ScanError  `json:"error,omitempty"`
}

// FileHash holds lowercase hex digests of the scanned file.
type FileHash struct {
	MD5    string `json:"md5"`
	SHA1   string `json:"sha1"`
	SHA256 string `json:"sha256"`
}

// ScanResult is the verdict of a completed scan.
type ScanResult struct {
	Safe     bool      `json:"safe"`
	Detailed string    `json:"detailed"` // "clean" or "malicious"
	Findings []Finding `json:"findings"`
}

// Finding is one item of ScanResult.Findings (a decided shape: docs/contract.md,
// Decisions taken where the source was silent).
type Finding struct {
	Name     string `json:"name"`
	Category string `json:"category"`
}

// ScanError says why a scan failed.
type ScanError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Scan statuses and execution modes.
const (
	StatusProcessing = "processing"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
	ModeAsync        = "async"
	ModeSync         = "sync"
)
