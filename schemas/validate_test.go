package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// specTestVectorBody is the body of the signature test vector
// (docs/contract.md, Signature).
const specTestVectorBody = `{"event":"file_scan.submitted","integration_id":"0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01","occurred_at":"2026-03-09T12:34:56.000Z","data":{"id":"019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1","external_reference_id":"invoice-4711","status":"processing","execution_mode":"async","file_name":"invoice.pdf","file_size":245761,"submitted_at":"2026-03-09T12:34:56.000Z"}}`

var statusForEvent = map[string]string{
	EventSubmitted: StatusProcessing,
	EventCompleted: StatusCompleted,
	EventFailed:    StatusFailed,
}

// globExamples fails rather than passing vacuously when the glob is empty.
func globExamples(t testing.TB, pattern string, atLeast int) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatalf("glob %s: %v", pattern, err)
	}
	if len(files) < atLeast {
		t.Fatalf("glob %s found %d files, want at least %d", pattern, len(files), atLeast)
	}
	return files
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeTyped checks that an accepted body reads into the shared types.
func decodeTyped(t testing.TB, body []byte) (Envelope, FileScan) {
	t.Helper()
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("accepted body does not unmarshal into Envelope: %v\n%s", err, body)
	}
	var scan FileScan
	if err := json.Unmarshal(env.Data, &scan); err != nil {
		t.Fatalf("accepted data does not unmarshal into FileScan: %v\n%s", err, body)
	}
	if want := statusForEvent[env.Event]; scan.Status != want {
		t.Fatalf("accepted %s event has status %q, want %q\n%s", env.Event, scan.Status, want, body)
	}
	return env, scan
}

func violationsOf(t testing.TB, err error) []Violation {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if len(ve.Violations) == 0 {
		t.Fatal("ValidationError without violations")
	}
	for _, v := range ve.Violations {
		if v.Message == "" {
			t.Errorf("violation at %q has no message", v.Path)
		}
		if v.Path != "" && !strings.HasPrefix(v.Path, "/") {
			t.Errorf("violation path %q is not a JSON pointer", v.Path)
		}
	}
	return ve.Violations
}

func pathsOf(vs []Violation) []string {
	paths := make([]string, len(vs))
	for i, v := range vs {
		paths[i] = v.Path
	}
	slices.Sort(paths)
	return paths
}

func TestValidExamples(t *testing.T) {
	for _, file := range globExamples(t, "examples/valid/*.json", 8) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			body := readFile(t, file)
			if err := Validate(body); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			env, _ := decodeTyped(t, body)
			if err := ValidateData(env.Event, env.Data); err != nil {
				t.Fatalf("ValidateData of an accepted body's data: %v", err)
			}
		})
	}
}

func TestInvalidExamples(t *testing.T) {
	files := globExamples(t, "examples/invalid/*.json", 30)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			var want []string
			if err := json.Unmarshal(readFile(t, strings.TrimSuffix(file, ".json")+".expect"), &want); err != nil {
				t.Fatalf("read expected paths (a JSON array of JSON pointers): %v", err)
			}
			slices.Sort(want)
			err := Validate(readFile(t, file))
			if err == nil {
				t.Fatal("Validate accepted an invalid example")
			}
			got := violationsOf(t, err)
			if !slices.Equal(pathsOf(got), want) {
				t.Errorf("violation paths = %q, want %q\n%v", pathsOf(got), want, err)
			}
			if n := len(err.Error()); n > maxErrorStringBytes+32 {
				t.Errorf("Error() is %d bytes long", n)
			}
		})
	}
	// Every expectation belongs to an example, so none is silently unused.
	for _, expect := range globExamples(t, "examples/invalid/*.expect", 30) {
		if !slices.Contains(files, strings.TrimSuffix(expect, ".expect")+".json") {
			t.Errorf("%s has no example beside it", expect)
		}
	}
}

func TestSpecTestVectorExampleIsExact(t *testing.T) {
	body := readFile(t, "examples/valid/spec-test-vector.json")
	if string(body) != specTestVectorBody {
		t.Fatalf("examples/valid/spec-test-vector.json differs from the test vector body of docs/contract.md, Signature")
	}
	// The shared types reproduce the contract's bytes exactly, so a publisher using
	// them produces what receivers are told to expect.
	env, scan := decodeTyped(t, body)
	data, err := json.Marshal(scan)
	if err != nil {
		t.Fatal(err)
	}
	env.Data = data
	again, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != specTestVectorBody {
		t.Fatalf("re-marshalled body differs:\n got %s\nwant %s", again, specTestVectorBody)
	}
}

func TestTypedRoundTrip(t *testing.T) {
	submitted := At(time.Date(2026, 3, 9, 12, 34, 56, 789_654_321, time.UTC))
	completedAt := At(submitted.Add(15 * time.Second))
	failedAt := At(submitted.Add(3 * time.Second))
	duration := int64(15000)
	ref := "invoice-4711"
	common := func(status string, ref *string) FileScan {
		return FileScan{
			ID:                  "019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1",
			ExternalReferenceID: ref,
			Status:              status,
			ExecutionMode:       ModeAsync,
			FileName:            "invoice.pdf",
			FileSize:            245761,
			SubmittedAt:         submitted,
		}
	}
	completed := func(ref *string, result ScanResult) FileScan {
		s := common(StatusCompleted, ref)
		s.ExecutionMode = ModeSync
		s.FileType = "application/pdf"
		s.FileHash = &FileHash{
			MD5:    "d41d8cd98f00b204e9800998ecf8427e",
			SHA1:   "da39a3ee5e6b4b0d3255bfef95601890afd80709",
			SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		}
		s.Result = &result
		s.CompletedAt = &completedAt
		s.ScanDurationMillis = &duration
		return s
	}
	failed := common(StatusFailed, &ref)
	failed.FailedAt = &failedAt
	failed.Error = &ScanError{Code: "file_unreadable", Message: "encrypted archive"}

	tests := []struct {
		name  string
		event string
		scan  FileScan
	}{
		{"submitted with reference", EventSubmitted, common(StatusProcessing, &ref)},
		{"submitted without reference", EventSubmitted, common(StatusProcessing, nil)},
		{"completed clean, nil findings", EventCompleted, completed(&ref, ScanResult{Safe: true, Detailed: "clean"})},
		{"completed malicious", EventCompleted, completed(nil, ScanResult{Detailed: "malicious", Findings: []Finding{
			{Name: "Win.Trojan.Agent-1234", Category: "trojan"},
		}})},
		{"failed", EventFailed, failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := json.Marshal(tt.scan)
			if err != nil {
				t.Fatal(err)
			}
			if err := ValidateData(tt.event, data); err != nil {
				t.Fatalf("ValidateData: %v\n%s", err, data)
			}
			body, err := json.Marshal(Envelope{
				Event:         tt.event,
				IntegrationID: "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01",
				OccurredAt:    At(time.Now()),
				Data:          data,
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := Validate(body); err != nil {
				t.Fatalf("Validate: %v\n%s", err, body)
			}
			_, back := decodeTyped(t, body)
			if back.SubmittedAt != tt.scan.SubmittedAt || back.ID != tt.scan.ID {
				t.Errorf("round trip changed the scan: %+v", back)
			}
			// The same typed value under another event is refused.
			for _, other := range EventNames {
				if other == tt.event {
					continue
				}
				if err := ValidateData(other, data); err == nil {
					t.Errorf("%s data accepted as %s", tt.event, other)
				}
			}
		})
	}
}

func TestNilFindingsMarshalAsEmptyArray(t *testing.T) {
	b, err := json.Marshal(&ScanResult{Safe: true, Detailed: "clean"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"safe":true,"detailed":"clean","findings":[]}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
}

func TestValidateData(t *testing.T) {
	valid := `{"id":"019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1","external_reference_id":null,"status":"processing","execution_mode":"async","file_name":"a.pdf","file_size":1,"submitted_at":"2026-03-09T12:34:56.000Z"}`
	tests := []struct {
		name      string
		event     string
		data      string
		wantPaths []string // nil: valid
		wantInMsg string
	}{
		{name: "valid", event: EventSubmitted, data: valid},
		{name: "whitespace is allowed in data", event: EventSubmitted, data: strings.ReplaceAll(valid, `,"`, ",\n  \"")},
		{name: "unknown event", event: "file_scan.deleted", data: valid, wantPaths: []string{""}, wantInMsg: "unknown event"},
		{name: "paths are relative to data", event: EventSubmitted, data: strings.Replace(valid, `"file_size":1`, `"file_size":-1`, 1), wantPaths: []string{"/file_size"}},
		{name: "wrong event for status", event: EventFailed, data: valid, wantPaths: []string{"/error", "/failed_at", "/status"}},
		{name: "letter-case rule at data root", event: EventSubmitted, data: strings.Replace(valid, `{`, `{"FILE_SIZE":"x",`, 1), wantPaths: []string{"/FILE_SIZE"}},
		{name: "letter-case rule nested", event: EventSubmitted, data: strings.Replace(valid, `{`, `{"result":{"safe":true,"detailed":"clean","findings":[],"Safe":false},`, 1), wantPaths: []string{"/result/Safe"}},
		{name: "duplicate key", event: EventSubmitted, data: strings.Replace(valid, `{`, `{"file_size":2,`, 1), wantPaths: []string{"/file_size"}, wantInMsg: "duplicate key"},
		{name: "malformed", event: EventSubmitted, data: valid[:20], wantPaths: []string{""}, wantInMsg: "byte offset 20"},
		{name: "not an object", event: EventSubmitted, data: `"x"`, wantPaths: []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateData(tt.event, []byte(tt.data))
			if tt.wantPaths == nil {
				if err != nil {
					t.Fatalf("ValidateData: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ValidateData accepted invalid data")
			}
			if got := pathsOf(violationsOf(t, err)); !slices.Equal(got, tt.wantPaths) {
				t.Errorf("paths = %q, want %q (%v)", got, tt.wantPaths, err)
			}
			if !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantInMsg)
			}
		})
	}
}

// TestMessages pins the wording a publisher reads in a rejection record.
func TestMessages(t *testing.T) {
	body := specTestVectorBody
	tests := []struct {
		name string
		body string
		want []string // substrings of the one-line error
	}{
		{"malformed JSON names the offset", `{"event":x}`, []string{"malformed JSON", "byte offset 9", "'x'"}},
		{"invalid UTF-8 names the offset", "{\"event\":\"\xc3\x28\"}", []string{"not valid UTF-8", "offset 10"}},
		{"uuid says lowercase", strings.Replace(body, "0195a0c1", "0195A0C1", 1), []string{"/integration_id", "lowercase", `got "0195A0C1-`}},
		{"timestamp shows the layout", strings.Replace(body, "56.000Z", "56Z", 1), []string{"/occurred_at", "2026-03-09T12:34:56.000Z", `got "2026-03-09T12:34:56Z"`}},
		{"key order", `{"integration_id":"0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01","event":"file_scan.submitted"` + body[len(`{"event":"file_scan.submitted","integration_id":"0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01"`):], []string{`key "event" out of order`, "event, integration_id, occurred_at, data"}},
		{"whitespace", strings.Replace(body, `,"data"`, `, "data"`, 1), []string{fmt.Sprintf("insignificant whitespace at byte offset %d", strings.Index(body, `,"data"`)+1), "compact"}},
		{"minimum", strings.Replace(body, "245761", "-2", 1), []string{"/data/file_size", "must be at least 0, got -2"}},
		{"missing key", strings.Replace(body, `"file_name":"invoice.pdf",`, "", 1), []string{"/data/file_name: required key is missing"}},
		{"unknown envelope key", strings.Replace(body, `{"event"`, `{"event":"file_scan.submitted","x":1,"y"`, 1), []string{"/x: unknown key", "/y: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate([]byte(tt.body))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestErrorIsBounded(t *testing.T) {
	// 300 unknown envelope keys, each with a long name.
	var sb strings.Builder
	sb.WriteString(specTestVectorBody[:len(specTestVectorBody)-1])
	for i := range 300 {
		sb.WriteString(`,"unknown_key_with_a_rather_long_name_` + strings.Repeat("x", 200) + string(rune('a'+i%26)) + strings.Repeat("y", i) + `":1`)
	}
	sb.WriteString("}")
	err := Validate([]byte(sb.String()))
	vs := violationsOf(t, err)
	if len(vs) != maxViolations {
		t.Errorf("got %d violations, want the cap %d", len(vs), maxViolations)
	}
	if last := vs[len(vs)-1]; !strings.Contains(last.Message, "201 more violations not listed") {
		t.Errorf("last violation = %+v, want the count of the rest", last)
	}
	if n := len(err.Error()); n > maxErrorStringBytes+32 {
		t.Errorf("Error() is %d bytes", n)
	}
	if !strings.Contains(err.Error(), "more") {
		t.Errorf("Error() does not say that violations were left out: %s", err)
	}
	for _, v := range vs {
		if len(v.Message) > maxMessageBytes {
			t.Errorf("message of %d bytes", len(v.Message))
		}
	}
}

func TestErrorIsOneLine(t *testing.T) {
	body := strings.Replace(specTestVectorBody, `{"event"`, `{"a\nb\u2028c":1,"event"`, 1)
	err := Validate([]byte(body))
	vs := violationsOf(t, err)
	if len(vs) != 1 || vs[0].Path != "/a\nb\u2028c" {
		t.Fatalf("violations = %q", vs)
	}
	if strings.ContainsFunc(err.Error(), isLineBreaking) {
		t.Fatalf("Error() spans lines: %q", err.Error())
	}
	if !strings.Contains(err.Error(), `/a\u000ab\u2028c: unknown key`) {
		t.Fatalf("Error() = %q", err.Error())
	}
}

func TestConcurrentUse(t *testing.T) {
	bodies := [][]byte{[]byte(specTestVectorBody), readFile(t, "examples/valid/completed-malicious-with-findings.json")}
	invalid := readFile(t, "examples/invalid/many-violations.json")
	done := make(chan error)
	for g := range 8 {
		go func() {
			for i := range 200 {
				if err := Validate(bodies[(g+i)%2]); err != nil {
					done <- err
					return
				}
				if Validate(invalid) == nil {
					done <- errors.New("invalid body accepted")
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestSchemaFilesDeclareDraftAndID(t *testing.T) {
	// Each schema file declares draft 2020-12 and an $id under SchemaBaseURL
	// named after the file, so third parties can load the folder as-is.
	for _, file := range globExamples(t, "*.schema.json", 5) {
		var doc struct {
			Schema string `json:"$schema"`
			ID     string `json:"$id"`
		}
		if err := json.Unmarshal(readFile(t, file), &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if doc.Schema != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema = %q", file, doc.Schema)
		}
		if doc.ID != SchemaBaseURL+filepath.Base(file) {
			t.Errorf("%s: $id = %q", file, doc.ID)
		}
	}
}
