package schemas

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// publishedSchemas compiles the schema files exactly as written, with the
// envelope choosing the data schema through if/then, as a third party would.
var publishedSchemas = sync.OnceValue(func() *compiledSchemas {
	s, err := compileSchemas(schemaFiles, false)
	if err != nil {
		panic(err)
	}
	return s
})

func violationList(t testing.TB, err error) []Violation {
	t.Helper()
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	return ve.Violations
}

// checkSameAsPublished fails when the fast form and the published schemas
// disagree on body (or on its data, validated with ValidateData).
func checkSameAsPublished(t testing.TB, body []byte) {
	t.Helper()
	fast, published := loadSchemas(), publishedSchemas()
	got := violationList(t, fast.validateBody(body))
	want := violationList(t, published.validateBody(body))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast form and published schemas disagree on %q\n fast:      %+v\n published: %+v", body, got, want)
	}
	var env struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	if json.Unmarshal(body, &env) != nil || env.Data == nil {
		return
	}
	got = violationList(t, fast.validateData(env.Event, env.Data))
	want = violationList(t, published.validateData(env.Event, env.Data))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast form and published schemas disagree on data %q of %q\n fast:      %+v\n published: %+v", env.Data, env.Event, got, want)
	}
}

func TestFastPathMatchesPublishedSchemas(t *testing.T) {
	files := globExamples(t, "examples/*/*.json", 40)
	for _, file := range files {
		body := readFile(t, file)
		checkSameAsPublished(t, body)
		// Every event name under every example's data, and data that is
		// not an object or is missing, to cover each if/then branch.
		for _, event := range append(EventNames, "file_scan.unknown", "") {
			var m map[string]json.RawMessage
			if json.Unmarshal(body, &m) != nil {
				continue
			}
			for _, data := range []string{string(m["data"]), `[]`, `null`, `{}`} {
				swapped := strings.Replace(string(body), `"event":`+string(m["event"]), `"event":"`+event+`"`, 1)
				if data != string(m["data"]) && m["data"] != nil {
					swapped = strings.Replace(swapped, `"data":`+string(m["data"]), `"data":`+data, 1)
				}
				checkSameAsPublished(t, []byte(swapped))
			}
			checkSameAsPublished(t, []byte(strings.Replace(string(body), `,"data":`, `,"dat":`, 1)))
		}
		// Every field of data, and of the objects in it, set to a value of
		// each JSON type.
		var env map[string]any
		if json.Unmarshal(body, &env) != nil {
			continue
		}
		data, ok := env["data"].(map[string]any)
		if !ok {
			continue
		}
		objects := []map[string]any{data}
		for _, v := range data {
			if m, ok := v.(map[string]any); ok {
				objects = append(objects, m)
			}
		}
		for _, obj := range objects {
			for key, orig := range obj {
				for _, replacement := range []any{5, -1, 1.5, "x", "", nil, true, map[string]any{}, []any{}, []any{map[string]any{}}} {
					obj[key] = replacement
					mutated, err := json.Marshal(env)
					if err != nil {
						t.Fatal(err)
					}
					checkSameAsPublished(t, mutated)
				}
				obj[key] = orig
			}
		}
	}
}

// TestShortcutTakesValidExamples: every valid example is accepted by the
// shortcut itself, so the hot path really skips the generic pass (the
// soundness side, never accepting more than the schemas, is
// TestFastPathMatchesPublishedSchemas and FuzzValidate, which compare
// Validate, shortcut included, with the schema files as published).
func TestShortcutTakesValidExamples(t *testing.T) {
	for _, file := range globExamples(t, "examples/valid/*.json", 5) {
		d := decoder{buf: readFile(t, file), mode: decodeMode{envelope: true, compact: true, names: &loadSchemas().names}}
		value, err := d.decodeDocument()
		if err != nil || len(d.violations) > 0 {
			t.Fatalf("%s: %v %v", file, err, d.violations)
		}
		if !acceptsEnvelope(value) {
			t.Errorf("%s: valid, but the shortcut sends it to the generic validator", file)
		}
	}
}

// TestShortcutBoundaries: values at the edge of each rule the shortcut
// restates, each checked against the published schemas.
func TestShortcutBoundaries(t *testing.T) {
	base := string(readFile(t, "examples/valid/completed-malicious-with-findings.json"))
	var env map[string]any
	if err := json.Unmarshal([]byte(base), &env); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]any{
		"file_size":     {json.Number("0"), json.Number("9007199254740991"), json.Number("9007199254740992"), json.Number("1.0"), json.Number("1e3"), json.Number("-0")},
		"submitted_at":  {"2026-02-28T23:59:59.999Z", "2026-02-29T00:00:00.000Z", "2024-02-29T00:00:00.000Z", "2026-03-09T24:00:00.000Z", "2026-03-09T12:34:56.000+00:00", "2026-03-09T12:34:56Z", "2026-03-09t12:34:56.000Z"},
		"file_type":     {"a/b", "application/pdf; charset=binary", "a/", "/b", "-a/b", "a/-b", "a b/c", "ä/b"},
		"id":            {"0195A0C1-7E2F-7A10-8C3D-2B4E6F8A9C01", "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c0", "0195a0c1x7e2f-7a10-8c3d-2b4e6f8a9c01"},
		"file_name":     {"", " ", "ſ"},
		"status":        {"completed", "Completed", "processing"},
		"scan_duration": {json.Number("0"), json.Number("12"), nil},
	}
	for field, values := range cases {
		for _, v := range values {
			data := env["data"].(map[string]any)
			orig := data[field]
			data[field] = v
			body, err := json.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			checkSameAsPublished(t, body)
			data[field] = orig
		}
	}
}
