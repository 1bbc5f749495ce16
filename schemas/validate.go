package schemas

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// The schema files are the contract's machine-readable form; they are
// embedded so the binary validates exactly what this package documents.
//
//go:embed *.schema.json
var schemaFiles embed.FS

// SchemaBaseURL is the base of every schema's $id. The $ids are identifiers
// that let the files reference each other; nothing is fetched from them.
const SchemaBaseURL = "https://blazelock.com/schemas/webhooks/v1/"

// Limits on what a ValidationError carries, so one hostile body cannot make
// a huge rejection record or log line.
const (
	maxViolations       = 100
	maxMessageBytes     = 300
	maxErrorStringBytes = 512
)

// Violation is one reason a body or data object is invalid.
type Violation struct {
	// Path is an RFC 6901 JSON pointer to the offending value, relative to
	// the validated document ("/data/file_size" for Validate, "/file_size"
	// for ValidateData); "" is the document itself. For a missing or
	// unknown key it is the path of that key.
	Path    string
	Message string
}

// ValidationError lists every violation found, sorted by path.
type ValidationError struct {
	Violations []Violation
}

// Error summarises the violations on one line of bounded length.
func (e *ValidationError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "invalid event: %d violation", len(e.Violations))
	if len(e.Violations) != 1 {
		sb.WriteByte('s')
	}
	sb.WriteString(": ")
	for i, v := range e.Violations {
		part := oneLine(v.Message)
		if v.Path != "" {
			part = oneLine(v.Path) + ": " + part
		}
		if i > 0 {
			part = "; " + part
		}
		if sb.Len()+len(part) > maxErrorStringBytes {
			if i == 0 {
				sb.WriteString(truncate(part, maxErrorStringBytes-sb.Len()))
				i++
			}
			if rest := len(e.Violations) - i; rest > 0 {
				fmt.Fprintf(&sb, "; and %d more", rest)
			}
			break
		}
		sb.WriteString(part)
	}
	return sb.String()
}

// Validate checks a webhook body (docs/contract.md, Envelope) as it is
// published and delivered: valid UTF-8; strict JSON with no duplicate keys, no
// escaped lone surrogates and no key inside data that differs from a defined
// field name only in letter case; compact (no insignificant whitespace
// anywhere); the four envelope keys in their contract order; the envelope
// schema; and data against the schema of the named event. It returns nil or a
// *ValidationError listing every violation. It is safe for concurrent use.
func Validate(body []byte) error {
	return loadSchemas().validateBody(body)
}

// ValidateData checks a file scan object against the schema of event, for
// publishers before they wrap it in an envelope. Whitespace is allowed here
// (json.Marshal compacts a json.RawMessage when the envelope is built); every
// other rule of Validate applies. Violation paths are relative to data.
func ValidateData(event string, data []byte) error {
	return loadSchemas().validateData(event, data)
}

func (s *compiledSchemas) validateBody(body []byte) error {
	return s.validate(body, decodeMode{envelope: true, compact: true, names: &s.names}, s.envelope)
}

func (s *compiledSchemas) validateData(event string, data []byte) error {
	sch, ok := s.data[event]
	if !ok {
		return &ValidationError{Violations: []Violation{{
			Message: truncate(fmt.Sprintf("unknown event %q: want one of %s", event, strings.Join(EventNames, ", ")), maxMessageBytes),
		}}}
	}
	return s.validate(data, decodeMode{names: &s.names}, sch)
}

// compiledSchemas is immutable after compilation and shared by all callers.
type compiledSchemas struct {
	// envelope checks the top level. In the fast form it only requires data
	// to be an object and validate picks data[event] in Go; in the published
	// form it is envelope.schema.json as written, if/then included.
	envelope *jsonschema.Schema
	data     map[string]*jsonschema.Schema
	dispatch bool // fast form: validate data against data[event] in Go
	// shortcut lets bodies that acceptsEnvelope vouches for skip the
	// generic pass (shortcut.go). Off for the published form, which the
	// tests compare with.
	shortcut bool
	names    fieldNames
	// descriptions maps the location of a schema that has a pattern to its
	// description, which reads as a noun phrase ("a UUID in lowercase
	// canonical form") and turns a pattern mismatch into a message a
	// publisher understands.
	descriptions map[string]string
	printer      *message.Printer
}

// loadSchemas compiles the embedded schemas once, on first use. They are
// fixed at build time and covered by the tests, so failing to compile them
// is a programming error, not a runtime condition.
var loadSchemas = sync.OnceValue(func() *compiledSchemas {
	s, err := compileSchemas(schemaFiles, true)
	if err != nil {
		panic(fmt.Sprintf("schemas: embedded JSON Schemas do not compile: %v", err))
	}
	s.shortcut = true
	return s
})

// fastBaseURL names the inlined documents of the fast form.
const fastBaseURL = SchemaBaseURL + "inlined/"

// compileSchemas compiles the schema files as published (fast false) or in
// the equivalent inlined form (fast true; see inline.go).
func compileSchemas(files fs.FS, fast bool) (*compiledSchemas, error) {
	s := &compiledSchemas{
		data:         make(map[string]*jsonschema.Schema, len(EventNames)),
		dispatch:     fast,
		descriptions: make(map[string]string),
		printer:      message.NewPrinter(language.English),
		names: fieldNames{
			intern: make(map[string]string),
			data:   make(map[string]struct{}),
		},
	}
	fileNames, err := fs.Glob(files, "*.schema.json")
	if err != nil {
		return nil, fmt.Errorf("list schema files: %w", err)
	}
	docs := make(map[string]any, len(fileNames))
	for _, name := range fileNames {
		f, err := files.Open(name)
		if err != nil {
			return nil, fmt.Errorf("open schema %s: %w", name, err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parse schema %s: %w", name, err)
		}
		docs[SchemaBaseURL+name] = doc
		s.collectNames(doc, name != "envelope.schema.json")
	}
	for name := range s.names.data {
		s.names.list = append(s.names.list, name)
	}
	sort.Strings(s.names.list)

	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.RegisterFormat(&jsonschema.Format{Name: "date-time", Validate: validateDateTime})
	c.RegisterFormat(&jsonschema.Format{Name: "int64", Validate: validateInt64Literal})
	base := SchemaBaseURL
	if fast {
		base = fastBaseURL
		inlined := make(map[string]any, len(docs))
		for _, name := range append(slices.Clone(EventNames), "envelope") {
			docURL := SchemaBaseURL + name + ".schema.json"
			doc, err := inlinedDocument(docs, docURL)
			if err != nil {
				return nil, err
			}
			inlined[fastBaseURL+name+".schema.json"] = doc
		}
		env := inlined[fastBaseURL+"envelope.schema.json"].(map[string]any)
		if _, ok := env["allOf"]; !ok {
			return nil, errors.New("envelope schema has no allOf choosing the data schema: the fast form would drop nothing, check inline.go")
		}
		delete(env, "allOf") // the event dispatch, done in Go
		docs = inlined
	}
	for docURL, doc := range docs {
		s.collectDescriptions(docURL, "", doc)
		if err := c.AddResource(docURL, doc); err != nil {
			return nil, fmt.Errorf("add schema %s: %w", docURL, err)
		}
	}
	if s.envelope, err = c.Compile(base + "envelope.schema.json"); err != nil {
		return nil, fmt.Errorf("compile envelope schema: %w", err)
	}
	for _, event := range EventNames {
		sch, err := c.Compile(base + event + ".schema.json")
		if err != nil {
			return nil, fmt.Errorf("compile %s schema: %w", event, err)
		}
		s.data[event] = sch
	}
	return s, nil
}

// collectNames records every key of every "properties" object in a schema
// document: all become interned, and those of data schemas become subject
// to the letter-case rule.
func (s *compiledSchemas) collectNames(node any, inData bool) {
	switch n := node.(type) {
	case map[string]any:
		if props, ok := n["properties"].(map[string]any); ok {
			for name := range props {
				s.names.intern[name] = name
				if inData {
					s.names.data[name] = struct{}{}
				}
			}
		}
		for _, child := range n {
			s.collectNames(child, inData)
		}
	case []any:
		for _, child := range n {
			s.collectNames(child, inData)
		}
	}
}

// collectDescriptions records the description of every schema with a
// pattern, under the location the validator reports for it.
func (s *compiledSchemas) collectDescriptions(docURL, ptr string, node any) {
	switch n := node.(type) {
	case map[string]any:
		if d, ok := n["description"].(string); ok {
			if _, ok := n["pattern"]; ok {
				s.descriptions[docURL+"#"+ptr] = d
			}
		}
		for k, child := range n {
			if k == "enum" || k == "const" {
				continue // values, not schemas
			}
			s.collectDescriptions(docURL, ptr+"/"+escapeToken(k), child)
		}
	case []any:
		for i, child := range n {
			s.collectDescriptions(docURL, ptr+"/"+strconv.Itoa(i), child)
		}
	}
}

func (s *compiledSchemas) validate(doc []byte, mode decodeMode, sch *jsonschema.Schema) error {
	if !utf8.Valid(doc) {
		return &ValidationError{Violations: []Violation{{
			Message: fmt.Sprintf("not valid UTF-8: first invalid byte at offset %d", invalidUTF8Offset(doc)),
		}}}
	}
	d := decoder{buf: doc, mode: mode, inData: !mode.envelope, path: make([]string, 0, 8)}
	value, err := d.decodeDocument()
	if err != nil {
		var se *syntaxError
		if !errors.As(err, &se) {
			return fmt.Errorf("decode document: %w", err)
		}
		return &ValidationError{Violations: []Violation{{Path: se.path, Message: se.Error()}}}
	}
	if s.shortcut && mode.envelope && len(d.violations) == 0 && acceptsEnvelope(value) {
		return nil
	}
	violations, err := s.check(d.violations, sch, value, nil)
	if err != nil {
		return err
	}
	if mode.envelope && s.dispatch {
		// What envelope.schema.json's allOf/if/then says: when event names
		// one of the events and data is present, data must match that
		// event's schema.
		if m, ok := value.(map[string]any); ok {
			event, _ := m["event"].(string)
			data, hasData := m["data"]
			if sch, known := s.data[event]; known && hasData {
				if violations, err = s.check(violations, sch, data, []string{"data"}); err != nil {
					return err
				}
			}
		}
	}
	if len(violations) == 0 {
		return nil
	}
	return newValidationError(violations)
}

// check validates value against sch and appends the violations, with paths
// under prefix.
func (s *compiledSchemas) check(out []Violation, sch *jsonschema.Schema, value any, prefix []string) ([]Violation, error) {
	err := sch.Validate(value)
	if err == nil {
		return out, nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil, fmt.Errorf("validate against schema: %w", err)
	}
	return s.appendSchemaViolations(out, ve, prefix), nil
}

func newValidationError(violations []Violation) *ValidationError {
	slices.SortStableFunc(violations, func(a, b Violation) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
	violations = slices.CompactFunc(violations, func(a, b Violation) bool { return a == b })
	if len(violations) > maxViolations {
		more := len(violations) - (maxViolations - 1)
		violations = append(violations[:maxViolations-1], Violation{
			Message: fmt.Sprintf("%d more violations not listed", more),
		})
	}
	return &ValidationError{Violations: violations}
}

// appendSchemaViolations flattens the validator's error tree to its leaves,
// one violation per missing or unknown key.
func (s *compiledSchemas) appendSchemaViolations(out []Violation, e *jsonschema.ValidationError, prefix []string) []Violation {
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			if _, isFormat := c.ErrorKind.(*kind.Format); isFormat && hasPatternSibling(e.Causes, c) {
				// The pattern message already says what the value must
				// look like; "not a date-time" on top of it is noise.
				continue
			}
			out = s.appendSchemaViolations(out, c, prefix)
		}
		return out
	}
	loc := append(slices.Clip(prefix), e.InstanceLocation...)
	at := func(key string) string {
		return pointerOf(append(slices.Clip(loc), key))
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		for _, key := range k.Missing {
			out = append(out, Violation{Path: at(key), Message: "required key is missing"})
		}
		return out
	case *kind.AdditionalProperties:
		for _, key := range k.Properties {
			out = append(out, Violation{Path: at(key), Message: "unknown key is not allowed here"})
		}
		return out
	}
	var msg string
	switch k := e.ErrorKind.(type) {
	case *kind.Pattern:
		if desc, ok := s.descriptions[e.SchemaURL]; ok {
			msg = fmt.Sprintf("must be %s, got %q", desc, k.Got)
		}
	case *kind.Format:
		got := fmt.Sprint(k.Got)
		if str, ok := k.Got.(string); ok {
			got = strconv.Quote(str)
		}
		msg = fmt.Sprintf("%s is not a valid %s: %v", got, k.Want, k.Err)
	case *kind.Minimum:
		msg = fmt.Sprintf("must be at least %s, got %s", k.Want.RatString(), k.Got.RatString())
	case *kind.Maximum:
		msg = fmt.Sprintf("must be at most %s, got %s", k.Want.RatString(), k.Got.RatString())
	case *kind.MinLength:
		msg = fmt.Sprintf("must be at least %d characters long, got %d", k.Want, k.Got)
	}
	if msg == "" {
		msg = e.ErrorKind.LocalizedString(s.printer)
	}
	return append(out, Violation{Path: pointerOf(loc), Message: truncate(msg, maxMessageBytes)})
}

func hasPatternSibling(siblings []*jsonschema.ValidationError, self *jsonschema.ValidationError) bool {
	for _, sib := range siblings {
		if _, ok := sib.ErrorKind.(*kind.Pattern); ok && slices.Equal(sib.InstanceLocation, self.InstanceLocation) {
			return true
		}
	}
	return false
}

// oneLine escapes control characters and line separators (a key may contain
// any of them), so Error() stays on one line.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, isLineBreaking) {
		return s
	}
	var sb strings.Builder
	for _, r := range s {
		if isLineBreaking(r) {
			fmt.Fprintf(&sb, "\\u%04x", r)
			continue
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

func isLineBreaking(r rune) bool {
	return r < 0x20 || r == 0x7f || r == '\u0085' || r == '\u2028' || r == '\u2029'
}

// truncate shortens s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(b)
}
