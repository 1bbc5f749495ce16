package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// decodeLoose runs the decoder with no byte-level rules beyond the grammar,
// as ValidateData does, but outside data (no letter-case rule).
func decodeLoose(doc []byte) (any, []Violation, error) {
	d := decoder{buf: doc, mode: decodeMode{names: &loadSchemas().names}}
	v, err := d.decodeDocument()
	return v, d.violations, err
}

// checkAgreesWithEncodingJSON is the decoder's correctness oracle: on valid
// UTF-8 it accepts exactly what encoding/json accepts (apart from its own
// documented bounds) and builds the same value as a UseNumber decode.
func checkAgreesWithEncodingJSON(t *testing.T, doc []byte) {
	t.Helper()
	if !utf8.Valid(doc) {
		return // refused before decoding; encoding/json would replace the bytes
	}
	got, violations, err := decodeLoose(doc)
	stdValid := json.Valid(doc)
	if err != nil {
		var se *syntaxError
		if !errors.As(err, &se) {
			t.Fatalf("decoder returned %T: %v", err, err)
		}
		if se.refused {
			return // valid JSON beyond a documented bound
		}
		if stdValid {
			t.Fatalf("decoder rejects what encoding/json accepts: %v\n%q", err, doc)
		}
		if se.offset < 0 || se.offset > len(doc) {
			t.Fatalf("syntax error offset %d outside the %d-byte input", se.offset, len(doc))
		}
		return
	}
	if !stdValid {
		t.Fatalf("decoder accepts what encoding/json rejects:\n%q", doc)
	}
	for _, v := range violations {
		if strings.HasPrefix(v.Message, "duplicate key") {
			return // the decoder keeps the first value, encoding/json the last
		}
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var want any
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded values differ\n got %#v\nwant %#v\ninput %q", got, want, doc)
	}
}

var decoderCases = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `-0.5e-3`, `1E+2`, `true`, `false`, `null`,
	` {"a" : [1, 2.5, "x", null, true, {"b": {}}] } `,
	`{"a":"\"\\\/\b\f\n\r\t\u00e9\u20ac\ud83d\udcc4"}`,
	`{"a":"\ud800"}`, `{"a":"\udc00\ud800x"}`, `{"a":"\ud800\u0041"}`,
	`{"a":1,"a":2}`, `{"a":"é","b":"\u0000"}`,
	// malformed
	``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{"a":1 "b":2}`,
	`01`, `1.`, `.5`, `-`, `1e`, `1e+`, `+1`, `0x10`, `NaN`, `Infinity`, `tru`, `nul`, `truex`,
	`"abc`, `"a\x"`, `"\u12"`, `"\u12G4"`, "\"a\tb\"", "\"a\nb\"", `{'a':1}`, `{a:1}`, `{} {}`, `[] x`,
	`{"a":1}/`, `"\`, `[`, `[[[`, `{"a":[}`,
}

func TestDecoderAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range decoderCases {
		checkAgreesWithEncodingJSON(t, []byte(c))
	}
	for _, file := range globExamples(t, "examples/*/*.json", 40) {
		checkAgreesWithEncodingJSON(t, readFile(t, file))
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range decoderCases {
		f.Add([]byte(c))
	}
	files, _ := filepath.Glob("examples/*/*.json")
	for _, file := range files {
		f.Add(readFile(f, file))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkAgreesWithEncodingJSON(t, doc)
	})
}

func TestDecoderBounds(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		refused bool
	}{
		{"depth at the limit", strings.Repeat("[", maxNestingDepth) + strings.Repeat("]", maxNestingDepth), false},
		{"depth beyond the limit", strings.Repeat("[", maxNestingDepth+1) + strings.Repeat("]", maxNestingDepth+1), true},
		{"object depth beyond the limit", strings.Repeat(`{"a":`, maxNestingDepth+1) + "1" + strings.Repeat("}", maxNestingDepth+1), true},
		{"exponent at the limit", `1e400`, false},
		{"negative exponent at the limit", `1e-400`, false},
		{"exponent beyond the limit", `1e401`, true},
		{"exponent with leading zeros", `1e0000000000000000001`, false},
		{"huge exponent", `1e99999999999999999999`, true},
		{"number at the length limit", strings.Repeat("1", maxNumberLen), false},
		{"number beyond the length limit", strings.Repeat("1", maxNumberLen+1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decodeLoose([]byte(tt.doc))
			var se *syntaxError
			refused := errors.As(err, &se) && se.refused
			if refused != tt.refused {
				t.Fatalf("refused = %v (err %v), want %v", refused, err, tt.refused)
			}
			if !tt.refused && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
		})
	}
	// A refusal inside data carries the path of the value.
	body := strings.Replace(specTestVectorBody, "245761", "1e401", 1)
	vs := violationsOf(t, Validate([]byte(body)))
	if len(vs) != 1 || vs[0].Path != "/data/file_size" || !strings.Contains(vs[0].Message, "refused") {
		t.Fatalf("violations = %+v", vs)
	}
}

func TestDecoderRules(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []Violation
	}{
		{"duplicate after escape decoding", `{"a":1,"\u0061":2}`, []Violation{{Path: "/a"}}},
		{"duplicate nested", `{"x":[{"k":1,"k":1}]}`, []Violation{{Path: "/x/0/k"}}},
		{"pointer escaping", `{"a/b~c":{"q":1,"q":2}}`, []Violation{{Path: "/a~1b~0c/q"}}},
		{"lone surrogate", `{"s":["ok","\udfff"]}`, []Violation{{Path: "/s/1"}}},
		{"surrogate pair is fine", `{"s":"\ud83d\udcc4"}`, nil},
		{"case-fold names outside data are not checked here", `{"Status":1,"status":2}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, vs, err := decodeLoose([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != len(tt.want) {
				t.Fatalf("violations = %+v, want paths %+v", vs, tt.want)
			}
			for i := range vs {
				if vs[i].Path != tt.want[i].Path {
					t.Errorf("violation %d path = %q, want %q", i, vs[i].Path, tt.want[i].Path)
				}
			}
		})
	}
}

func TestDefinedNamesComeFromSchemas(t *testing.T) {
	names := loadSchemas().names
	for _, name := range []string{"id", "status", "file_size", "md5", "sha256", "findings", "name", "category", "code", "message", "scan_duration"} {
		if _, ok := names.data[name]; !ok {
			t.Errorf("data field %q not collected from the schemas", name)
		}
	}
	for _, name := range []string{"event", "integration_id", "occurred_at"} {
		if _, ok := names.data[name]; ok {
			t.Errorf("envelope key %q counted as a data field", name)
		}
		if _, ok := names.intern[name]; !ok {
			t.Errorf("envelope key %q not interned", name)
		}
	}
}
