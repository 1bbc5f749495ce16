package schemas

import (
	"encoding/json"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// validateDateTime is the "date-time" format: a real RFC 3339 date and time.
// It replaces the validator's built-in check, which accepts a leap second
// (23:59:60) that Go's time package, and therefore Timestamp, cannot parse.
// The shape docs/contract.md, Envelope, requires (UTC, milliseconds) is the
// schema's pattern; this adds what a pattern cannot see: February 30th, hour
// 24, and so on.
func validateDateTime(v any) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		var pe *time.ParseError
		if errors.As(err, &pe) && pe.Message != "" {
			return errors.New(strings.TrimPrefix(pe.Message, ": "))
		}
		return errors.New("not an RFC 3339 date and time")
	}
	return nil
}

// validateInt64Literal is the "int64" format (the name OpenAPI uses): an
// integer written as an integer literal that fits in 64 bits. JSON Schema's
// "integer" type accepts 1.0 and 1e3, which typed decoders on the receiving
// side (Go's int64, Rust's u64, ...) reject; non-integral numbers are left to
// the "type" keyword so they are reported once.
func validateInt64Literal(v any) error {
	n, ok := v.(json.Number)
	if !ok {
		return nil
	}
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return errors.New("outside the 64-bit integer range")
		}
		return nil
	}
	// The decoder bounds number literals, so this big.Rat is cheap.
	if r, ok := new(big.Rat).SetString(s); ok && r.IsInt() {
		return errors.New("an integer must be written without fraction or exponent")
	}
	return nil
}
