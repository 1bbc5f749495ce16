package schemas

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzValidate: Validate never panics, always answers nil or a well-formed
// *ValidationError, agrees with the schema files as published, and whatever
// it accepts is something every consumer of the shared types can read: JSON
// that unmarshals into Envelope and FileScan, whose status matches the event,
// and whose data passes ValidateData.
func FuzzValidate(f *testing.F) {
	files, err := filepath.Glob("examples/*/*.json")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed examples: %v", err)
	}
	for _, file := range files {
		f.Add(readFile(f, file))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkSameAsPublished(t, body)
		err := Validate(body)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
			}
			if len(ve.Violations) == 0 || len(ve.Violations) > maxViolations {
				t.Fatalf("%d violations", len(ve.Violations))
			}
			for _, v := range ve.Violations {
				if v.Message == "" || (v.Path != "" && !strings.HasPrefix(v.Path, "/")) {
					t.Fatalf("bad violation %+v", v)
				}
			}
			if len(err.Error()) > maxErrorStringBytes+32 || strings.ContainsFunc(err.Error(), isLineBreaking) {
				t.Fatalf("Error() is not one bounded line: %q", err.Error())
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		env, _ := decodeTyped(t, body)
		if !IsEventName(env.Event) {
			t.Fatalf("accepted unknown event %q", env.Event)
		}
		if err := ValidateData(env.Event, env.Data); err != nil {
			t.Fatalf("accepted body whose data fails ValidateData: %v", err)
		}
	})
}
