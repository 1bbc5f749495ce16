package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/blazelock/webhooks/schemas"
)

// DefaultMaxBodyBytes caps the body an Authenticator reads when MaxBodyBytes
// is zero. Blazelock's events are far smaller (the dispatcher refuses events
// over 256 KiB), so 1 MiB leaves room without letting a client make the
// receiver buffer an unbounded body.
const DefaultMaxBodyBytes = 1 << 20

// More sentinel errors, returned by an Authenticator.
var (
	// ErrBodyTooLarge: the body is larger than the configured limit.
	ErrBodyTooLarge = errors.New("webhook body too large")
	// ErrUnknownIntegration: no secret is configured for the body's
	// integration_id (or the body has none). SecretLookup implementations
	// return it (wrapped or not) for ids they do not know.
	ErrUnknownIntegration = errors.New("unknown integration")
	// ErrMalformedEnvelope: the request verified, but its body is not a
	// webhook envelope (docs/contract.md, Envelope).
	ErrMalformedEnvelope = errors.New("malformed webhook envelope")
)

// SecretLookup returns the webhook secret of an integration. It is called
// with the integration_id read from the not yet verified body, so it must
// treat the id as untrusted input: return an error wrapping
// ErrUnknownIntegration for ids it does not know, and any other error when it
// cannot answer now (the request is then refused with 503 so the sender
// retries).
type SecretLookup func(ctx context.Context, integrationID string) (string, error)

// FixedSecret verifies every request with one secret, whatever integration the
// body names.
func FixedSecret(secret string) SecretLookup {
	return func(context.Context, string) (string, error) { return secret, nil }
}

// StaticSecrets looks secrets up in a fixed integration id → secret map. The
// map is copied, so later changes to it have no effect.
func StaticSecrets(secrets map[string]string) SecretLookup {
	own := make(map[string]string, len(secrets))
	for id, secret := range secrets {
		own[id] = secret
	}
	return func(_ context.Context, integrationID string) (string, error) {
		if secret, ok := own[integrationID]; ok {
			return secret, nil
		}
		return "", fmt.Errorf("%w: %q", ErrUnknownIntegration, truncate(integrationID))
	}
}

// Event is a verified webhook: its envelope, and the request details a
// receiver needs beside it.
type Event struct {
	// Envelope is the decoded body. Data stays raw JSON; decode it into a
	// schemas.FileScan if you need its fields.
	Envelope schemas.Envelope
	// Body is the raw body, exactly as signed. Do not modify it.
	Body []byte
	// WebhookID is the X-Blazelock-Webhook-Id header: the event id, stable
	// across attempts, for de-duplication. It is not covered by the
	// signature (see the package README).
	WebhookID string
	// Attempt is the X-Blazelock-Webhook-Attempt header (1 to 10); 0 when it
	// is absent or not a positive number. Not covered by the signature.
	Attempt int
	// SentAt is the verified X-Blazelock-Webhook-Timestamp.
	SentAt time.Time
}

type eventContextKey struct{}

// ContextWithEvent returns a copy of ctx carrying ev, as the middleware does.
// Handlers' tests can use it to call a handler without signing a request.
func ContextWithEvent(ctx context.Context, ev *Event) context.Context {
	return context.WithValue(ctx, eventContextKey{}, ev)
}

// EventFromContext returns the verified event the middleware put in the
// request context.
func EventFromContext(ctx context.Context) (*Event, bool) {
	ev, ok := ctx.Value(eventContextKey{}).(*Event)
	return ev, ok && ev != nil
}

// Authenticator verifies whole webhook requests: body size, headers, timestamp
// tolerance, the signature with the secret of the body's integration, and the
// envelope. Set Secrets; the other fields have working zero values. It is safe
// for concurrent use as long as its fields are not changed.
type Authenticator struct {
	// Secrets finds the secret for the body's integration_id. Required.
	Secrets SecretLookup
	// Verifier holds the timestamp tolerance and the clock.
	Verifier Verifier
	// MaxBodyBytes caps the body; larger requests get 413. Zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// OnReject, when set, is called for every refused request with the
	// detailed error (the client only sees the error class). Use it to log
	// or count; it must not write to the response.
	OnReject func(r *http.Request, err error)
}

// Middleware returns a handler that answers unverified requests itself (401,
// 413, 400 or 503 with a small JSON error, see WriteError) and calls next for
// verified ones, with the *Event in the request context (EventFromContext)
// and r.Body replaced by a reader over the same raw bytes.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := ReadBody(r, a.MaxBodyBytes)
		var ev *Event
		if err == nil {
			ev, err = a.Authenticate(r.Context(), r.Header, body)
		}
		if err != nil {
			if a.OnReject != nil {
				a.OnReject(r, err)
			}
			WriteError(w, err)
			return
		}
		r = r.WithContext(ContextWithEvent(r.Context(), ev))
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// ReadBody reads the request body, refusing more than maxBodyBytes (zero means
// DefaultMaxBodyBytes) with an error wrapping ErrBodyTooLarge.
func ReadBody(r *http.Request, maxBodyBytes int64) ([]byte, error) {
	if maxBodyBytes <= 0 {
		maxBodyBytes = DefaultMaxBodyBytes
	}
	if r.ContentLength > maxBodyBytes {
		return nil, fmt.Errorf("%w: Content-Length %d exceeds %d bytes", ErrBodyTooLarge, r.ContentLength, maxBodyBytes)
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength >= 0 {
		// The common case: one allocation of exactly the declared size
		// (net/http never returns more than Content-Length bytes).
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, fmt.Errorf("read webhook body: %w", err)
		}
		return body, nil
	}
	// Unknown length (chunked): read one byte past the limit to tell
	// "exactly at the limit" from "over it".
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read webhook body: %w", err)
	}
	if int64(len(body)) > maxBodyBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, maxBodyBytes)
	}
	return body, nil
}

// wireEnvelope is the envelope as read before verification: integration_id
// is needed to pick the secret, and everything else stays untrusted until the
// signature checks out. Parsing once serves both steps.
type wireEnvelope struct {
	Event         string          `json:"event"`
	IntegrationID string          `json:"integration_id"`
	OccurredAt    json.RawMessage `json:"occurred_at"`
	Data          json.RawMessage `json:"data"`
}

// Authenticate verifies one request from its headers and raw body, in this
// order: headers present, timestamp well formed and within tolerance (no
// secret needed, so stale replays cost no lookup and no hashing), secret
// lookup by the body's integration_id, signature, envelope shape. The
// integration_id is used for the lookup only; nothing else in the body is
// looked at before the signature verifies.
func (a *Authenticator) Authenticate(ctx context.Context, header http.Header, body []byte) (*Event, error) {
	timestamp, signature := header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	sentAt, err := a.Verifier.CheckTimestamp(timestamp, signature)
	if err != nil {
		return nil, err
	}
	if a.Secrets == nil {
		return nil, fmt.Errorf("verify webhook: %w: Authenticator.Secrets is nil", ErrNoSecret)
	}
	var wire wireEnvelope
	parseErr := json.Unmarshal(body, &wire)
	secret, err := a.Secrets(ctx, wire.IntegrationID)
	if err != nil {
		if errors.Is(err, ErrUnknownIntegration) {
			return nil, err
		}
		return nil, fmt.Errorf("look up webhook secret: %w", err)
	}
	if err := checkMAC(secret, timestamp, signature, body); err != nil {
		return nil, err
	}
	// From here on the body is authentic: it came from the holder of the
	// secret, so its content may be trusted and reported in detail.
	env, err := envelopeFrom(&wire, parseErr)
	if err != nil {
		return nil, err
	}
	return &Event{
		Envelope:  env,
		Body:      body,
		WebhookID: header.Get(HeaderID),
		Attempt:   parseAttempt(header.Get(HeaderAttempt)),
		SentAt:    sentAt,
	}, nil
}

func envelopeFrom(wire *wireEnvelope, parseErr error) (schemas.Envelope, error) {
	if parseErr != nil {
		return schemas.Envelope{}, fmt.Errorf("%w: %v", ErrMalformedEnvelope, parseErr)
	}
	var missing []string
	if wire.Event == "" {
		missing = append(missing, "event")
	}
	if wire.IntegrationID == "" {
		missing = append(missing, "integration_id")
	}
	if len(wire.OccurredAt) == 0 {
		missing = append(missing, "occurred_at")
	}
	if len(wire.Data) == 0 || wire.Data[0] != '{' {
		missing = append(missing, "data (an object)")
	}
	if missing != nil {
		return schemas.Envelope{}, fmt.Errorf("%w: missing or empty %v", ErrMalformedEnvelope, missing)
	}
	occurredAt, err := parseOccurredAt(wire.OccurredAt)
	if err != nil {
		return schemas.Envelope{}, fmt.Errorf("%w: occurred_at: %v", ErrMalformedEnvelope, err)
	}
	return schemas.Envelope{
		Event:         wire.Event,
		IntegrationID: wire.IntegrationID,
		OccurredAt:    occurredAt,
		Data:          wire.Data,
	}, nil
}

// parseOccurredAt reads the contract's timestamp (docs/contract.md, Envelope).
// The plain case (a quoted string without escapes, which is what Blazelock
// sends) is parsed directly, as schemas.Timestamp would, without its extra
// JSON decoding allocations.
func parseOccurredAt(raw json.RawMessage) (schemas.Timestamp, error) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		t, err := time.Parse(schemas.TimestampLayout, string(raw[1:n-1]))
		if err != nil {
			return schemas.Timestamp{}, fmt.Errorf("%q is not RFC 3339 UTC with milliseconds (%s)", raw[1:n-1], schemas.TimestampLayout)
		}
		return schemas.Timestamp{Time: t}, nil
	}
	var ts schemas.Timestamp
	err := ts.UnmarshalJSON(raw)
	return ts, err
}

func parseAttempt(s string) int {
	if s == "" || len(s) > 9 || s[0] < '1' || s[0] > '9' { // also spares Atoi's error allocation
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// Error classes, as sent in the "code" of error responses and usable as
// low-cardinality metric labels.
const (
	CodeMissingHeader      = "missing_header"
	CodeMalformedTimestamp = "malformed_timestamp"
	CodeTimestampTooOld    = "timestamp_too_old"
	CodeTimestampInFuture  = "timestamp_in_future"
	CodeInvalidSignature   = "invalid_signature"
	CodeBodyTooLarge       = "body_too_large"
	CodeMalformedEnvelope  = "malformed_envelope"
	CodeUnavailable        = "unavailable"
)

// Classify maps an error from this package to the HTTP status, the code and
// the message a client may see. Unknown integrations, empty secrets and
// malformed signatures all look like "invalid_signature" from outside, so a
// caller cannot probe which integration ids exist; OnReject gets the detail.
func Classify(err error) (status int, code, message string) {
	var missing *MissingHeaderError
	switch {
	case errors.As(err, &missing):
		return http.StatusUnauthorized, CodeMissingHeader, "missing header " + missing.Header
	case errors.Is(err, ErrMalformedTimestamp):
		return http.StatusUnauthorized, CodeMalformedTimestamp, "the timestamp header must be whole Unix seconds"
	case errors.Is(err, ErrTimestampTooOld):
		return http.StatusUnauthorized, CodeTimestampTooOld, "the timestamp is too old (stale or replayed request)"
	case errors.Is(err, ErrTimestampInFuture):
		return http.StatusUnauthorized, CodeTimestampInFuture, "the timestamp is too far in the future"
	case errors.Is(err, ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "the body is too large"
	case errors.Is(err, ErrBadSignature), errors.Is(err, ErrUnknownIntegration), errors.Is(err, ErrNoSecret):
		return http.StatusUnauthorized, CodeInvalidSignature, "the signature does not verify"
	case errors.Is(err, ErrMalformedEnvelope):
		return http.StatusBadRequest, CodeMalformedEnvelope, "the body is not a webhook envelope"
	default: // secret lookup failures, read errors: temporary, let the sender retry
		return http.StatusServiceUnavailable, CodeUnavailable, "the webhook cannot be verified right now"
	}
}

// Reason is a finer, still low-cardinality label for metrics and logs than
// the client-facing code: it tells unknown integrations and missing secrets
// apart from signature mismatches.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrUnknownIntegration):
		return "unknown_integration"
	case errors.Is(err, ErrNoSecret):
		return "no_secret"
	}
	_, code, _ := Classify(err)
	return code
}

// WriteError answers a refused request: the status and code from Classify and
// a JSON body {"code": ..., "message": ...} (the error shape of the Blazelock
// management API), without the error's internal detail.
func WriteError(w http.ResponseWriter, err error) {
	status, code, message := Classify(err)
	body, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, message})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
