package schemas

import (
	"encoding/json"
	"strconv"
	"time"
)

// The shortcut accepts, in plain Go, the bodies the schemas certainly
// accept, so the dispatcher's hot path skips the generic JSON Schema pass
// (about a tenth of its CPU per delivery). It only ever says "certainly
// valid"; anything else, including every invalid body, goes through the
// generic validator, which alone words the violations. So the shortcut may
// be stricter than the schemas but never looser: a body it accepts must be
// one the schema files accept. TestShortcut* and FuzzValidate (which
// compares Validate with the schema files as published) hold it to that.
//
// The rules below restate common.schema.json, envelope.schema.json and the
// three data schemas; a change there needs the same change here (the
// tests fail until it is made).

// eventStatus is the status each event's schema requires.
var eventStatus = map[string]string{
	EventSubmitted: "processing",
	EventCompleted: "completed",
	EventFailed:    "failed",
}

// requiredData lists the data fields each event requires: fileScan's own,
// then the event's.
var requiredData = map[string][]string{
	EventSubmitted: {"id", "external_reference_id", "status", "execution_mode", "file_name", "file_size", "submitted_at"},
	EventCompleted: {"id", "external_reference_id", "status", "execution_mode", "file_name", "file_size", "submitted_at",
		"file_type", "file_hash", "result", "completed_at", "scan_duration"},
	EventFailed: {"id", "external_reference_id", "status", "execution_mode", "file_name", "file_size", "submitted_at",
		"failed_at", "error"},
}

// acceptsEnvelope reports whether a decoded body certainly passes the
// envelope schema and its event's data schema.
func acceptsEnvelope(v any) bool {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 4 { // exactly the four keys: additionalProperties false
		return false
	}
	event, _ := m["event"].(string)
	data, ok := m["data"].(map[string]any)
	return ok && eventStatus[event] != "" && isUUIDValue(m["integration_id"]) && isTimestampValue(m["occurred_at"]) &&
		acceptsData(event, data)
}

func acceptsData(event string, d map[string]any) bool {
	for _, k := range requiredData[event] {
		if _, ok := d[k]; !ok {
			return false
		}
	}
	for k, v := range d {
		ok := true
		switch k {
		case "id":
			ok = isUUIDValue(v)
		case "external_reference_id":
			_, isString := v.(string)
			ok = isString || v == nil
		case "status":
			ok = v == eventStatus[event]
		case "execution_mode":
			ok = v == "async" || v == "sync"
		case "file_name":
			s, isString := v.(string)
			ok = isString && s != ""
		case "file_size", "scan_duration":
			ok = isCount(v)
		case "submitted_at", "completed_at", "failed_at":
			ok = isTimestampValue(v)
		case "file_type":
			s, isString := v.(string)
			ok = isString && isMIMEType(s)
		case "file_hash":
			ok = acceptsFileHash(v)
		case "result":
			ok = acceptsResult(v)
		case "error":
			ok = acceptsScanError(v)
		}
		// Other keys are allowed: data is open for forward compatibility.
		if !ok {
			return false
		}
	}
	return true
}

// digests are file_hash's required fields and their lengths in hex.
var digests = [...]struct {
	name   string
	hexLen int
}{{"md5", 32}, {"sha1", 40}, {"sha256", 64}}

func acceptsFileHash(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for _, d := range digests {
		s, ok := m[d.name].(string)
		if !ok || len(s) != d.hexLen || !isLowerHex(s) {
			return false
		}
	}
	return true
}

func acceptsResult(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	_, safe := m["safe"].(bool)
	findings, isArray := m["findings"].([]any)
	if !safe || !isArray || (m["detailed"] != "clean" && m["detailed"] != "malicious") {
		return false
	}
	for _, f := range findings {
		fm, ok := f.(map[string]any)
		if !ok {
			return false
		}
		_, name := fm["name"].(string)
		_, category := fm["category"].(string)
		if !name || !category {
			return false
		}
	}
	return true
}

func acceptsScanError(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	code, _ := m["code"].(string)
	_, message := m["message"].(string)
	return code != "" && message
}

// maxCount is 2^53-1, the schema's maximum for counts.
const maxCount = 1<<53 - 1

// isCount: a plain non-negative integer literal up to maxCount (the decoder
// has already checked the number's JSON syntax).
func isCount(v any) bool {
	n, ok := v.(json.Number)
	if !ok || len(n) == 0 || len(n) > 16 {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] < '0' || n[i] > '9' {
			return false
		}
	}
	u, err := strconv.ParseUint(string(n), 10, 64)
	return err == nil && u <= maxCount
}

func isUUIDValue(v any) bool {
	s, ok := v.(string)
	if !ok || len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !isLowerHexByte(s[i]) {
			return false
		}
	}
	return true
}

// isTimestampValue: the pattern YYYY-MM-DDTHH:MM:SS.mmmZ and a real date
// and time (the date-time format).
func isTimestampValue(v any) bool {
	s, ok := v.(string)
	if !ok || len(s) != 24 {
		return false
	}
	for i := 0; i < len(s); i++ {
		var want byte
		switch i {
		case 4, 7:
			want = '-'
		case 10:
			want = 'T'
		case 13, 16:
			want = ':'
		case 19:
			want = '.'
		case 23:
			want = 'Z'
		default:
			if s[i] < '0' || s[i] > '9' {
				return false
			}
			continue
		}
		if s[i] != want {
			return false
		}
	}
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}

// isMIMEType: the schema's pattern, ^tok/tok (parameters may follow), where
// a token starts with a letter or digit.
func isMIMEType(s string) bool {
	i := 0
	for part := 0; part < 2; part++ {
		if i >= len(s) || !isAlnum(s[i]) {
			return false
		}
		for i < len(s) && isMIMETokenByte(s[i]) {
			i++
		}
		if part == 0 {
			if i >= len(s) || s[i] != '/' {
				return false
			}
			i++
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isMIMETokenByte(c byte) bool {
	switch c {
	case '!', '#', '$', '&', '^', '_', '.', '+', '-':
		return true
	}
	return isAlnum(c)
}

func isLowerHexByte(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLowerHexByte(s[i]) {
			return false
		}
	}
	return true
}
