package schemas

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxNestingDepth bounds recursion. The deepest defined field is at depth 4
// (/data/result/findings/0/name); 64 leaves room for unknown forward-compatible
// fields while keeping a hostile body from growing the stack.
const maxNestingDepth = 64

// envelopeKeys is the top-level key order (docs/contract.md, Envelope).
var envelopeKeys = [...]string{"event", "integration_id", "occurred_at", "data"}

// Bounds on number literals (see decoder.number).
const (
	maxNumberLen      = 64
	maxNumberExponent = 400
)

// syntaxError aborts decoding: the body is not JSON we can build a value
// from, or (refused) it holds a value too costly to validate.
type syntaxError struct {
	offset  int
	path    string
	msg     string
	refused bool // valid JSON, refused by a bound of this decoder
}

func (e *syntaxError) Error() string {
	if e.refused {
		return fmt.Sprintf("%s (byte offset %d)", e.msg, e.offset)
	}
	return fmt.Sprintf("malformed JSON at byte offset %d: %s", e.offset, e.msg)
}

// decodeMode says which byte-level rules apply on top of the JSON grammar.
type decodeMode struct {
	envelope bool // top level is the envelope: check its key order, data starts at /data
	compact  bool // refuse insignificant whitespace
	names    *fieldNames
}

// fieldNames are the property names the embedded schemas define.
type fieldNames struct {
	intern map[string]string   // every defined name, envelope included: keys cost no allocation
	data   map[string]struct{} // names defined inside data
	list   []string            // the same, for the letter-case scan
}

// decoder is a strict single-pass JSON parser. It builds the same values as
// encoding/json with UseNumber (map[string]any, []any, json.Number, string,
// bool, nil) so the schema validator can consume them, and on the same pass
// reports what encoding/json cannot see: duplicate keys, keys that differ
// from a defined field name only in letter case, escaped lone surrogates,
// insignificant whitespace and the envelope's key order. Those are recorded
// as violations and decoding goes on, so every problem is listed at once;
// only grammar errors abort.
type decoder struct {
	buf        []byte
	pos        int
	depth      int
	mode       decodeMode
	path       []string // JSON pointer tokens (unescaped) of the value being parsed
	inData     bool     // inside the file scan object: apply the letter-case rule
	wsReported bool
	violations []Violation
}

func (d *decoder) addViolation(path, msg string) {
	d.violations = append(d.violations, Violation{Path: path, Message: msg})
}

func (d *decoder) pointer() string { return pointerOf(d.path) }

// pointerOf renders unescaped tokens as an RFC 6901 JSON pointer.
func pointerOf(tokens []string) string {
	if len(tokens) == 0 {
		return ""
	}
	var sb strings.Builder
	for _, tok := range tokens {
		sb.WriteByte('/')
		sb.WriteString(escapeToken(tok))
	}
	return sb.String()
}

// escapeToken escapes one JSON pointer token (RFC 6901).
func escapeToken(tok string) string {
	if !strings.ContainsAny(tok, "~/") {
		return tok
	}
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

func (d *decoder) fail(offset int, format string, args ...any) error {
	return &syntaxError{offset: offset, msg: fmt.Sprintf(format, args...)}
}

// decodeDocument parses one complete JSON document.
func (d *decoder) decodeDocument() (any, error) {
	d.skipSpace()
	if d.pos >= len(d.buf) {
		return nil, d.fail(d.pos, "unexpected end of input, expected a JSON value")
	}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos < len(d.buf) {
		return nil, d.fail(d.pos, "unexpected %s after the top-level value", quoteByte(d.buf[d.pos]))
	}
	return v, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *decoder) skipSpace() {
	start := d.pos
	for d.pos < len(d.buf) && isSpace(d.buf[d.pos]) {
		d.pos++
	}
	if d.pos > start && d.mode.compact && !d.wsReported {
		d.wsReported = true
		d.addViolation("", fmt.Sprintf("insignificant whitespace at byte offset %d: the body must be compact JSON, with no whitespace outside strings", start))
	}
}

func quoteByte(c byte) string {
	if c < utf8.RuneSelf {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

func (d *decoder) value() (any, error) {
	if d.pos >= len(d.buf) {
		return nil, d.fail(d.pos, "unexpected end of input, expected a JSON value")
	}
	switch c := d.buf[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.str(false)
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	default:
		return nil, d.fail(d.pos, "invalid character %s looking for the beginning of a value", quoteByte(c))
	}
}

func (d *decoder) literal(lit string) error {
	if len(d.buf)-d.pos >= len(lit) && string(d.buf[d.pos:d.pos+len(lit)]) == lit {
		d.pos += len(lit)
		return nil
	}
	return d.fail(d.pos, "invalid literal, expected %q", lit)
}

func (d *decoder) enter() error {
	d.depth++
	if d.depth > maxNestingDepth {
		return &syntaxError{offset: d.pos, path: d.pointer(), refused: true,
			msg: fmt.Sprintf("nesting deeper than %d levels is refused", maxNestingDepth)}
	}
	return nil
}

func (d *decoder) object() (any, error) {
	start := d.pos
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '{'
	topLevel := d.depth == 1
	m := make(map[string]any, 8)
	lastEnvelopeKey := -1 // index in envelopeKeys of the previous known top-level key
	orderReported := false
	d.skipSpace()
	if d.pos < len(d.buf) && d.buf[d.pos] == '}' {
		d.pos++
		d.depth--
		return m, nil
	}
	for {
		if d.pos >= len(d.buf) {
			return nil, d.fail(d.pos, "unexpected end of input in the object starting at byte offset %d", start)
		}
		if d.buf[d.pos] != '"' {
			return nil, d.fail(d.pos, "invalid character %s, expected a string key", quoteByte(d.buf[d.pos]))
		}
		keyOffset := d.pos
		key, err := d.str(true)
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.buf) || d.buf[d.pos] != ':' {
			return nil, d.fail(d.pos, "expected ':' after the object key")
		}
		d.pos++
		d.skipSpace()

		d.path = append(d.path, key)
		_, dup := m[key]
		if dup {
			d.addViolation(d.pointer(), fmt.Sprintf("duplicate key at byte offset %d: receivers' JSON parsers disagree on which value wins", keyOffset))
		}
		if d.inData {
			d.checkLetterCase(key)
		}
		wasInData := d.inData
		if topLevel && d.mode.envelope {
			idx := envelopeIndex(key)
			if idx >= 0 {
				if idx < lastEnvelopeKey && !orderReported {
					orderReported = true
					d.addViolation("", fmt.Sprintf("top-level key %q out of order: the keys must appear as %s", key, strings.Join(envelopeKeys[:], ", ")))
				}
				lastEnvelopeKey = max(lastEnvelopeKey, idx)
			}
			d.inData = key == "data"
		}
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.inData = wasInData
		d.path = d.path[:len(d.path)-1]
		if !dup {
			// The first value is the one validated: later duplicates are
			// already refused, and validating them too only adds noise.
			m[key] = v
		}

		d.skipSpace()
		if d.pos >= len(d.buf) {
			return nil, d.fail(d.pos, "unexpected end of input in the object starting at byte offset %d", start)
		}
		switch d.buf[d.pos] {
		case ',':
			d.pos++
			d.skipSpace()
		case '}':
			d.pos++
			d.depth--
			return m, nil
		default:
			return nil, d.fail(d.pos, "invalid character %s after an object value, expected ',' or '}'", quoteByte(d.buf[d.pos]))
		}
	}
}

func envelopeIndex(key string) int {
	for i, k := range envelopeKeys {
		if k == key {
			return i
		}
	}
	return -1
}

// checkLetterCase refuses a key that is not a defined field name but equals
// one under Unicode case folding ("Status", "FILE_SIZE", "ſtatus"). Go's
// encoding/json and other case-insensitive decoders would read it as the
// defined field, overriding or forging it, while the schema sees an unknown,
// allowed key.
func (d *decoder) checkLetterCase(key string) {
	if _, defined := d.mode.names.data[key]; defined {
		return
	}
	for _, name := range d.mode.names.list {
		if strings.EqualFold(key, name) {
			d.addViolation(d.pointer(), fmt.Sprintf("key differs from the defined field %q only in letter case: case-insensitive decoders would read it as that field", name))
			return
		}
	}
}

func (d *decoder) array() (any, error) {
	start := d.pos
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '['
	arr := make([]any, 0, 4)
	d.skipSpace()
	if d.pos < len(d.buf) && d.buf[d.pos] == ']' {
		d.pos++
		d.depth--
		return arr, nil
	}
	for {
		d.path = append(d.path, strconv.Itoa(len(arr)))
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.path = d.path[:len(d.path)-1]
		arr = append(arr, v)
		d.skipSpace()
		if d.pos >= len(d.buf) {
			return nil, d.fail(d.pos, "unexpected end of input in the array starting at byte offset %d", start)
		}
		switch d.buf[d.pos] {
		case ',':
			d.pos++
			d.skipSpace()
		case ']':
			d.pos++
			d.depth--
			return arr, nil
		default:
			return nil, d.fail(d.pos, "invalid character %s after an array element, expected ',' or ']'", quoteByte(d.buf[d.pos]))
		}
	}
}

// number checks the RFC 8259 number grammar and keeps the literal.
func (d *decoder) number() (any, error) {
	start := d.pos
	b := d.buf
	i := d.pos
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return nil, d.fail(i, "invalid number: expected a digit")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, d.fail(i, "invalid number: expected a digit after the decimal point")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	exponent := 0
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, d.fail(i, "invalid number: expected a digit in the exponent")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			exponent = min(exponent*10+int(b[i]-'0'), maxNumberExponent+1)
			i++
		}
	}
	// The schema validator compares numbers as big.Rat, whose cost grows
	// with 10^exponent: 1e999999 takes ~50 ms. No producer writes such
	// numbers and no receiver's float64 can hold them, so refuse them
	// before they reach the validator.
	if exponent > maxNumberExponent || i-start > maxNumberLen {
		return nil, &syntaxError{offset: start, path: d.pointer(), refused: true,
			msg: fmt.Sprintf("number %s is refused: longer than %d characters or exponent beyond ±%d", truncate(string(b[start:i]), 24), maxNumberLen, maxNumberExponent)}
	}
	d.pos = i
	return json.Number(b[start:i]), nil
}

// str parses a string starting at the opening quote. The input is known to be
// valid UTF-8 (checked before decoding). Keys that are defined field names are
// interned so they cost no allocation.
func (d *decoder) str(isKey bool) (string, error) {
	start := d.pos
	i := d.pos + 1
	b := d.buf
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			raw := b[start+1 : i]
			d.pos = i + 1
			if isKey {
				if s, ok := d.mode.names.intern[string(raw)]; ok {
					return s, nil
				}
			}
			return string(raw), nil
		case c == '\\':
			return d.escapedStr(start)
		case c < 0x20:
			return "", d.fail(i, "invalid control character 0x%02x in a string (it must be escaped)", c)
		}
		i++
	}
	return "", d.fail(len(b), "unexpected end of input in the string starting at byte offset %d", start)
}

// escapedStr is the slow path for strings containing backslash escapes.
func (d *decoder) escapedStr(start int) (string, error) {
	b := d.buf
	out := make([]byte, 0, 64)
	loneSurrogate := false
	i := start + 1
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			d.pos = i + 1
			if loneSurrogate {
				d.addViolation(d.pointer(), fmt.Sprintf("string at byte offset %d contains an escaped lone UTF-16 surrogate: receivers' JSON parsers disagree on it", start))
			}
			return string(out), nil
		case c < 0x20:
			return "", d.fail(i, "invalid control character 0x%02x in a string (it must be escaped)", c)
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		// c == '\\'
		if i+1 >= len(b) {
			return "", d.fail(i, "unterminated escape sequence")
		}
		switch e := b[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
			i += 2
		case 'b':
			out = append(out, '\b')
			i += 2
		case 'f':
			out = append(out, '\f')
			i += 2
		case 'n':
			out = append(out, '\n')
			i += 2
		case 'r':
			out = append(out, '\r')
			i += 2
		case 't':
			out = append(out, '\t')
			i += 2
		case 'u':
			r, ok := hex4(b, i+2)
			if !ok {
				return "", d.fail(i, "invalid \\u escape: expected four hex digits")
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if r2, ok2 := hex4After(b, i); ok2 {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						out = utf8.AppendRune(out, dec)
						i += 6
						continue
					}
				}
				// encoding/json substitutes U+FFFD here; do the same
				// so the value is well defined, but refuse the body.
				loneSurrogate = true
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", d.fail(i, "invalid escape sequence \\%s in a string", string(rune(e)))
		}
	}
	return "", d.fail(len(b), "unexpected end of input in the string starting at byte offset %d", start)
}

// hex4After parses a `\uXXXX` sequence at b[i:].
func hex4After(b []byte, i int) (rune, bool) {
	if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
		return hex4(b, i+2)
	}
	return 0, false
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
