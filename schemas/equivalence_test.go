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
