// Package verify checks that a webhook request really comes from Blazelock
// (docs/contract.md, Signature and Verification): the
// X-Blazelock-Webhook-Signature header must be the HMAC-SHA256, keyed with the
// integration's webhook secret, of the X-Blazelock-Webhook-Timestamp header
// value, a "." and the raw request body, and the timestamp must be recent.
//
// Verify the raw bytes exactly as received: re-encoding a decoded JSON body
// changes the bytes and breaks the signature. Use [Verify] or a [Verifier]
// when you already have the body, or [Authenticator.Middleware] to protect an
// http.Handler: it reads the body with a size limit, picks the secret by the
// body's integration_id, verifies, and hands the typed [Event] to the next
// handler through the request context.
//
// Decisions this package takes:
//   - The signature is compared in constant time on the decoded 32 bytes, so
//     hex case does not matter: Blazelock sends lowercase, and uppercase or mixed-case
//     hex of the right MAC is accepted (it is the same MAC; hex decoding is
//     case-insensitive). Anything that is not exactly 64 hex digits is rejected.
//   - The timestamp must be whole Unix seconds written as ASCII digits only (no
//     sign, no spaces, no fraction). It may be at most Tolerance (default 5
//     minutes) in the past or in the future; the boundary itself is accepted.
//   - The timestamp is checked before the MAC is computed, so a stale replay is
//     refused without hashing its body.
//   - An empty secret is refused: anyone could compute an HMAC keyed with it.
package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Header names of a Blazelock webhook request (docs/contract.md, Headers).
// Only the timestamp and the body are covered by the signature; the id and
// attempt headers are not signed.
const (
	HeaderTimestamp = "X-Blazelock-Webhook-Timestamp"
	HeaderSignature = "X-Blazelock-Webhook-Signature"
	HeaderID        = "X-Blazelock-Webhook-Id"
	HeaderAttempt   = "X-Blazelock-Webhook-Attempt"
)

// DefaultTolerance is how far the timestamp may be from the receiver's clock,
// in either direction, when a Verifier leaves Tolerance at zero.
const DefaultTolerance = 5 * time.Minute

// Sentinel errors, for errors.Is. The errors returned wrap them with detail.
var (
	// ErrMissingHeader: the timestamp or signature header is absent or empty.
	// The returned error is a *MissingHeaderError naming the header.
	ErrMissingHeader = errors.New("missing webhook header")
	// ErrMalformedTimestamp: the timestamp header is not whole Unix seconds.
	ErrMalformedTimestamp = errors.New("malformed webhook timestamp")
	// ErrTimestampTooOld: the timestamp is more than the tolerance in the past
	// (a stale or replayed request).
	ErrTimestampTooOld = errors.New("webhook timestamp too old")
	// ErrTimestampInFuture: the timestamp is more than the tolerance ahead of
	// the receiver's clock.
	ErrTimestampInFuture = errors.New("webhook timestamp in the future")
	// ErrBadSignature: the signature is not 64 hex digits or does not match
	// the body, the timestamp and the secret.
	ErrBadSignature = errors.New("webhook signature mismatch")
	// ErrNoSecret: the secret to verify with is empty.
	ErrNoSecret = errors.New("no webhook secret to verify with")
)

// MissingHeaderError says which header is missing. It matches
// ErrMissingHeader with errors.Is.
type MissingHeaderError struct {
	Header string
}

func (e *MissingHeaderError) Error() string {
	return fmt.Sprintf("%s: %s", ErrMissingHeader, e.Header)
}

// Is reports whether target is ErrMissingHeader.
func (e *MissingHeaderError) Is(target error) bool { return target == ErrMissingHeader }

// signatureHexLen is the length of a hex-encoded HMAC-SHA256.
const signatureHexLen = 2 * sha256.Size

// Sign returns the lowercase hex HMAC-SHA256 of timestamp + "." + body keyed
// with the secret string's bytes: the value of X-Blazelock-Webhook-Signature.
func Sign(secret, timestamp string, body []byte) string {
	var sum [sha256.Size]byte
	mac(&sum, secret, timestamp, body)
	return hex.EncodeToString(sum[:])
}

func mac(dst *[sha256.Size]byte, secret, timestamp string, body []byte) {
	h := hmac.New(sha256.New, []byte(secret))
	// One write for timestamp + "." (a stack buffer for the usual 10 digits).
	var prefix [24]byte
	h.Write(append(append(prefix[:0], timestamp...), '.'))
	h.Write(body)
	h.Sum(dst[:0])
}

// Verifier verifies signed requests. The zero value is ready to use: 5 minutes
// of tolerance against time.Now. A Verifier is safe for concurrent use as long
// as its fields are not changed.
type Verifier struct {
	// Tolerance is the largest accepted distance between the timestamp and
	// Now, in either direction. Zero or negative means DefaultTolerance.
	Tolerance time.Duration
	// Now returns the current time; nil means time.Now. Tests inject a clock.
	Now func() time.Time
}

// Verify checks a request's timestamp and signature headers against its raw
// body with the default Verifier.
func Verify(secret string, header http.Header, body []byte) error {
	var v Verifier
	return v.Verify(secret, header, body)
}

// Verify checks the request's timestamp and signature headers against its raw
// body and secret. It returns nil or an error matching one of the package's
// sentinel errors.
func (v *Verifier) Verify(secret string, header http.Header, body []byte) error {
	return v.VerifySignature(secret, header.Get(HeaderTimestamp), header.Get(HeaderSignature), body)
}

// VerifySignature checks the two header values against the raw body and
// secret. It returns nil or an error matching one of the package's sentinel
// errors.
func (v *Verifier) VerifySignature(secret, timestamp, signature string, body []byte) error {
	if _, err := v.CheckTimestamp(timestamp, signature); err != nil {
		return err
	}
	return checkMAC(secret, timestamp, signature, body)
}

// CheckTimestamp checks what can be checked without the secret: both header
// values are present, and the timestamp is well formed and within tolerance.
// It returns the parsed timestamp. Use it to refuse stale requests before
// looking up a secret.
func (v *Verifier) CheckTimestamp(timestamp, signature string) (time.Time, error) {
	if timestamp == "" {
		return time.Time{}, &MissingHeaderError{Header: HeaderTimestamp}
	}
	if signature == "" {
		return time.Time{}, &MissingHeaderError{Header: HeaderSignature}
	}
	sentAt, err := ParseTimestamp(timestamp)
	if err != nil {
		return time.Time{}, err
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tolerance := v.Tolerance
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	// Compare whole seconds: the header has no fraction, so a sub-second
	// clock reading must not push a request sent exactly at the boundary out,
	// and seconds cannot overflow the way nanosecond Durations would for a
	// far-off timestamp.
	ageSeconds := now().Unix() - sentAt.Unix()
	toleranceSeconds := int64(tolerance / time.Second)
	switch {
	case ageSeconds > toleranceSeconds:
		return sentAt, fmt.Errorf("%w: sent %ds ago, tolerance %s", ErrTimestampTooOld, ageSeconds, tolerance)
	case ageSeconds < -toleranceSeconds:
		return sentAt, fmt.Errorf("%w: sent %ds ahead of the receiver's clock, tolerance %s", ErrTimestampInFuture, -ageSeconds, tolerance)
	}
	return sentAt, nil
}

// maxTimestampDigits keeps the seconds far from int64 overflow when they are
// turned into a time and compared (year ~33658 at 12 digits, plenty).
const maxTimestampDigits = 12

// ParseTimestamp parses an X-Blazelock-Webhook-Timestamp value: whole Unix
// seconds as ASCII digits only.
func ParseTimestamp(timestamp string) (time.Time, error) {
	if timestamp == "" || len(timestamp) > maxTimestampDigits {
		return time.Time{}, fmt.Errorf("%w: %q is not whole Unix seconds", ErrMalformedTimestamp, truncate(timestamp))
	}
	for i := 0; i < len(timestamp); i++ {
		if c := timestamp[i]; c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("%w: %q is not whole Unix seconds", ErrMalformedTimestamp, truncate(timestamp))
		}
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil { // unreachable with the checks above; kept for safety
		return time.Time{}, fmt.Errorf("%w: %v", ErrMalformedTimestamp, err)
	}
	return time.Unix(sec, 0), nil
}

func checkMAC(secret, timestamp, signature string, body []byte) error {
	if secret == "" {
		return ErrNoSecret
	}
	if len(signature) != signatureHexLen {
		return fmt.Errorf("%w: expected %d hex digits, got %d characters", ErrBadSignature, signatureHexLen, len(signature))
	}
	var got [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(signature)); err != nil {
		return fmt.Errorf("%w: not hex", ErrBadSignature)
	}
	var want [sha256.Size]byte
	mac(&want, secret, timestamp, body)
	if !hmac.Equal(got[:], want[:]) {
		return ErrBadSignature
	}
	return nil
}

// truncate keeps attacker-supplied values short in error messages and logs.
func truncate(s string) string {
	const limit = 32
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
