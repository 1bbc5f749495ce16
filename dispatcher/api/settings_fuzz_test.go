package api

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/blazelock/webhooks/schemas"
)

// FuzzParseSettings feeds the PUT /v1/integrations/{id}/webhook body parser
// arbitrary bytes (the body is untrusted and up to 64 KiB). It must never
// panic, must report problems by field with a message each ("body" alone
// for a body that is not one JSON object), and whatever it accepts must be
// exactly what a strict encoding/json decode of the same body gives, and
// valid per docs/contract.md, Webhook configuration: a non-empty URL, known
// events without repeats, and at least one event while enabled.
func FuzzParseSettings(f *testing.F) {
	for _, seed := range []string{
		`{"enabled": true, "url": "https://hooks.example.com/in", "events": ["file_scan.completed"]}`,
		`{"enabled": false, "url": "https://hooks.example.com/in"}`,
		`{"enabled": true, "url": "https://hooks.example.com/in", "events": ["file_scan.submitted", "file_scan.completed", "file_scan.failed"]}`,
		`{"enabled": true, "url": "https://x", "events": ["file_scan.completed", "file_scan.completed"]}`,
		`{"enabled": true, "enabled": false, "url": "https://x", "events": ["file_scan.failed"]}`,
		`{"\u0065nabled": true, "url": "https://x", "events": ["file_scan.failed"]}`,
		`{"Enabled": true, "URL": "https://x", "Events": ["file_scan.failed"]}`,
		`{"enabled": 1, "url": null, "events": {}}`,
		`{"enabled": true, "url": "", "events": []}`,
		`{"enabled": true, "url": "https://x", "events": [null, 7, "nope"]}`,
		`{"enabled": true, "url": "https://x", "events": ["file_scan.failed"]} {}`,
		`{"enabled": true,`, `[]`, `"x"`, `null`, ``, " \n\t", `{`, `{}`, `{"a":{"b":[1,2,{"c":null}]}}`,
		"{\"enabled\": true, \"url\": \"https://x\xff\", \"events\": [\"file_scan.failed\"]}",
		`{"enabled": true, "url": "https://x", "events": ["file_scan.failed"], "secret": "whsec_x"}`,
		strings.Repeat("[", 10000),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		set, problems := parseSettings(body)
		if problems == nil {
			t.Fatal("problems must be a map, even when empty")
		}
		for field, msgs := range problems {
			if len(msgs) == 0 {
				t.Fatalf("field %q has an empty list of problems", field)
			}
			for _, m := range msgs {
				if m == "" || !utf8.ValidString(m) {
					t.Fatalf("field %q: empty or invalid UTF-8 message %q", field, m)
				}
			}
		}
		if _, whole := problems["body"]; whole && len(problems) != 1 {
			t.Fatalf("a body problem comes alone, got %v", problems)
		}
		if len(problems) > 0 {
			return
		}

		// Accepted: valid per docs/contract.md, Webhook configuration.
		if set.URL == "" {
			t.Fatal("accepted an empty url")
		}
		if set.Enabled && len(set.Events) == 0 {
			t.Fatal("accepted an enabled webhook without events")
		}
		for i, e := range set.Events {
			if !schemas.IsEventName(e) || slices.Contains(set.Events[:i], e) {
				t.Fatalf("accepted events %q", set.Events)
			}
		}

		// And the same as a strict standard decode. (encoding/json matches
		// field names case-insensitively and takes the last of repeated
		// keys; parseSettings refuses both, so on what it accepts the two
		// must agree.)
		var std struct {
			Enabled *bool     `json:"enabled"`
			URL     *string   `json:"url"`
			Events  *[]string `json:"events"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&std); err != nil {
			t.Fatalf("accepted %q, but encoding/json refuses it: %v", body, err)
		}
		if _, err := dec.Token(); err == nil {
			t.Fatalf("accepted %q with trailing data", body)
		}
		if std.Enabled == nil || std.URL == nil || *std.Enabled != set.Enabled || *std.URL != set.URL {
			t.Fatalf("accepted %+v, encoding/json reads enabled=%v url=%v", set, std.Enabled, std.URL)
		}
		var stdEvents []string
		if std.Events != nil {
			stdEvents = *std.Events
		}
		if !slices.Equal(stdEvents, set.Events) {
			t.Fatalf("accepted events %q, encoding/json reads %q", set.Events, stdEvents)
		}
	})
}
