package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/blazelock/webhooks/dispatcher/webhooks"
	"github.com/blazelock/webhooks/schemas"
)

// WebhookStore is what the webhook routes need from webhooks.Store.
type WebhookStore interface {
	Get(ctx context.Context, integrationID string) (webhooks.Webhook, error)
	Put(ctx context.Context, integrationID string, set webhooks.Settings) (cfg webhooks.Webhook, created bool, err error)
	Delete(ctx context.Context, integrationID string) error
	RotateSecret(ctx context.Context, integrationID string) (webhooks.Webhook, error)
}

const (
	// maxBodyBytes bounds a request body; a webhook config is well under
	// 3 KiB (MaxURLLen + three event names).
	maxBodyBytes = 64 << 10
	webhookPath  = "/v1/integrations/{id}/webhook"
)

// Webhook is the JSON of a webhook configuration. The secret is masked:
// "whsec_…" and its last four characters, so a user can tell secrets apart
// without the answer revealing one. Events are in the canonical order
// (docs/contract.md, Events). Timestamps are RFC 3339 UTC with
// milliseconds.
//
//	{"integration_id": "0195a0c1-…", "enabled": true,
//	 "url": "https://example.com/hooks/blazelock",
//	 "events": ["file_scan.submitted", "file_scan.completed"],
//	 "secret": "whsec_…x9Qa",
//	 "created_at": "2026-03-09T12:34:56.000Z", "updated_at": "2026-03-09T12:34:56.000Z"}
type Webhook struct {
	IntegrationID string            `json:"integration_id"`
	Enabled       bool              `json:"enabled"`
	URL           string            `json:"url"`
	Events        []string          `json:"events"`
	Secret        string            `json:"secret"`
	CreatedAt     schemas.Timestamp `json:"created_at"`
	UpdatedAt     schemas.Timestamp `json:"updated_at"`
}

// SecretBody is the answer of the two secret routes, the only answers that
// carry a secret in full.
type SecretBody struct {
	Secret string `json:"secret"`
}

func webhookJSON(c webhooks.Webhook) Webhook {
	events := c.Events
	if events == nil {
		events = []string{}
	}
	return Webhook{
		IntegrationID: c.IntegrationID, Enabled: c.Enabled, URL: c.URL, Events: events,
		Secret: webhooks.MaskSecret(c.Secret), CreatedAt: schemas.At(c.CreatedAt), UpdatedAt: schemas.At(c.UpdatedAt),
	}
}

func (s *Server) webhookRoutes() {
	s.Handle(http.MethodPut, webhookPath, http.HandlerFunc(s.putWebhook))
	s.Handle(http.MethodGet, webhookPath, http.HandlerFunc(s.getWebhook))
	s.Handle(http.MethodDelete, webhookPath, http.HandlerFunc(s.deleteWebhook))
	s.Handle(http.MethodGet, webhookPath+"/secret", http.HandlerFunc(s.getSecret))
	s.Handle(http.MethodPost, webhookPath+"/secret/rotate", http.HandlerFunc(s.rotateSecret))
}

func (s *Server) putWebhook(w http.ResponseWriter, r *http.Request) {
	id, ok := integrationID(w, r)
	if !ok {
		return
	}
	body, ok := readJSONBody(w, r)
	if !ok {
		return
	}
	set, problems := parseSettings(body)
	if set.URL != "" {
		if reason := webhooks.CheckURL(r.Context(), set.URL, s.deps.URLPolicy, s.deps.Resolver); reason != "" {
			problems["url"] = append(problems["url"], reason)
		}
	}
	if len(problems) > 0 {
		writeValidation(w, problems)
		return
	}
	cfg, created, err := s.deps.Webhooks.Put(r.Context(), id, set)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/integrations/"+id+"/webhook")
	}
	writeJSON(w, status, webhookJSON(cfg))
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request) {
	id, ok := integrationID(w, r)
	if !ok {
		return
	}
	cfg, err := s.deps.Webhooks.Get(r.Context(), id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, webhookJSON(cfg))
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	id, ok := integrationID(w, r)
	if !ok {
		return
	}
	if err := s.deps.Webhooks.Delete(r.Context(), id); err != nil {
		s.storeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) {
	id, ok := integrationID(w, r)
	if !ok {
		return
	}
	noStore(w)
	cfg, err := s.deps.Webhooks.Get(r.Context(), id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, SecretBody{Secret: cfg.Secret})
}

func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request) {
	id, ok := integrationID(w, r)
	if !ok {
		return
	}
	noStore(w)
	cfg, err := s.deps.Webhooks.RotateSecret(r.Context(), id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, SecretBody{Secret: cfg.Secret})
}

// noStore keeps secrets out of every cache between the API and its caller.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// integrationID returns the {id} path value in lower case, or answers 400.
func integrationID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !isUUID(id) {
		writeError(w, http.StatusBadRequest, "invalid_integration_id",
			"the integration id must be a UUID such as 0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01")
		return "", false
	}
	return strings.ToLower(id), true
}

// isUUID accepts the 36-character hyphenated form only (not the URN,
// braced or hyphen-less forms uuid.Parse also takes): one spelling per id,
// give or take case.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// readJSONBody checks the media type and size, or answers 415 / 413.
func readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the body as JSON with Content-Type: application/json")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body must be at most %d bytes", maxBodyBytes))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "bad_request", "the body could not be read")
		return nil, false
	}
	return body, true
}

// parseSettings decodes a PUT body and returns every problem it finds, by
// field: "body" for JSON that is not an object or is malformed (with the
// line and column), the field's name otherwise. enabled and url are always
// required; events is required and non-empty while enabled is true, and may
// be omitted (stored as []) while it is false. Unknown fields, repeated
// fields, unknown event names and repeated event names are errors. The URL
// policy check is the caller's.
func parseSettings(body []byte) (webhooks.Settings, map[string][]string) {
	problems := map[string][]string{}
	add := func(field, msg string) { problems[field] = append(problems[field], msg) }
	fields, bodyProblem := splitObject(body)
	if bodyProblem != "" {
		add("body", bodyProblem)
		return webhooks.Settings{}, problems
	}
	var set webhooks.Settings
	for name, raws := range fields {
		if len(raws) > 1 {
			add(name, "appears more than once")
		}
		switch name {
		case "enabled", "url", "events":
		default:
			add(name, "is not a known field (known: enabled, url, events)")
		}
	}

	enabledKnown := false
	if raw, ok := fields["enabled"]; !ok {
		add("enabled", "is required (true or false)")
	} else if err := json.Unmarshal(raw[0], &set.Enabled); err != nil || jsonType(raw[0]) != "boolean" {
		add("enabled", "must be a boolean, got "+jsonType(raw[0]))
	} else {
		enabledKnown = true
	}

	if raw, ok := fields["url"]; !ok {
		add("url", "is required")
	} else if err := json.Unmarshal(raw[0], &set.URL); err != nil || jsonType(raw[0]) != "string" {
		add("url", "must be a string, got "+jsonType(raw[0]))
		set.URL = ""
	} else if set.URL == "" {
		add("url", "must not be empty")
	}

	raw, ok := fields["events"]
	switch {
	case !ok:
		if enabledKnown && set.Enabled {
			add("events", "is required while enabled is true: a non-empty list of "+webhooks.KnownEvents)
		}
	case jsonType(raw[0]) != "array":
		add("events", "must be an array of event names, got "+jsonType(raw[0]))
	default:
		var items []json.RawMessage
		_ = json.Unmarshal(raw[0], &items) // an array: it decodes
		var names []string
		for i, item := range items {
			var name string
			if jsonType(item) != "string" || json.Unmarshal(item, &name) != nil {
				add("events", fmt.Sprintf("item %d must be a string, got %s", i, jsonType(item)))
				continue
			}
			names = append(names, name)
		}
		events, eventProblems := webhooks.CheckEventNames(names)
		set.Events = events
		for _, p := range eventProblems {
			add("events", p)
		}
		if len(items) == 0 && enabledKnown && set.Enabled {
			add("events", "must not be empty while enabled is true")
		}
	}
	return set, problems
}

// splitObject parses body as one JSON object and returns its members'
// raw values by name (several for a repeated name), or why it is not one.
func splitObject(body []byte) (map[string][]json.RawMessage, string) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, `is empty: send a JSON object such as {"enabled": true, "url": "https://…", "events": ["file_scan.completed"]}`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	syntax := func(err error) string {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			line, col := position(body, se.Offset)
			return fmt.Sprintf("is not valid JSON: %s (line %d, column %d)", se.Error(), line, col)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			line, col := position(body, int64(len(body)))
			return fmt.Sprintf("is not valid JSON: it ends early (line %d, column %d)", line, col)
		}
		return "is not valid JSON: " + err.Error()
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, "must be a JSON object, got " + tokenType(tok)
	}
	fields := map[string][]json.RawMessage{}
	for dec.More() {
		keyTok, err := dec.Token()
		if err != nil {
			return nil, syntax(err)
		}
		key, _ := keyTok.(string) // object keys are strings
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, syntax(err)
		}
		fields[key] = append(fields[key], v)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, syntax(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		line, col := position(body, dec.InputOffset())
		return nil, fmt.Sprintf("has data after the JSON object (line %d, column %d)", line, col)
	}
	return fields, ""
}

// position turns a byte offset into a 1-based line and column.
func position(body []byte, offset int64) (line, col int) {
	if offset > int64(len(body)) {
		offset = int64(len(body))
	}
	before := body[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

func jsonType(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

func tokenType(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	default:
		return "number"
	}
}

// storeError answers a store failure. Store errors never contain a secret;
// the detail of 5xx goes to the log, not to the caller.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, webhooks.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no webhook is configured for this integration")
	case errors.Is(err, webhooks.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", "the webhook was changed concurrently; retry the request")
	case errors.Is(err, webhooks.ErrInvalidSettings):
		writeError(w, http.StatusUnprocessableEntity, "validation_failed", err.Error())
	case errors.Is(err, webhooks.ErrNotConfirmed):
		s.log.ErrorContext(r.Context(), "webhook change not confirmed in the cache", "error", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable",
			"the change was stored but could not be confirmed on every dispatcher; retry the request")
	case errors.Is(err, webhooks.ErrSecretKey):
		s.log.ErrorContext(r.Context(), "webhook secret does not decrypt", "error", err)
		writeError(w, http.StatusInternalServerError, "internal",
			"the stored webhook secret does not decrypt with this dispatcher's DISPATCHER_SECRET_KEY")
	default:
		if r.Context().Err() == nil {
			s.log.ErrorContext(r.Context(), "webhook store failed", "error", err)
		}
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the configuration store is unavailable; retry later")
	}
}
