// Package api is the management API (docs/contract.md, Management API):
// webhook configuration and secrets per integration, the delivery routes
// and portal links, behind a bearer admin token. Health and metrics are
// mounted by the program, not here.
//
// Every answer is JSON. Errors are
//
//	{"code": "...", "message": "...", "validation": {"field": ["message", ...]}}
//
// with validation only on 422. Codes: unauthorized (401, with
// WWW-Authenticate: Bearer), invalid_integration_id (400: {id} must be a
// UUID in its 36-character form, either case; it is used in lower case),
// bad_request (400: the body could not be read), not_found (404),
// method_not_allowed (405, with Allow), conflict (409), gone (410: a retried
// delivery's event has left the events stream), body_too_large (413:
// bodies are limited to 64 KiB), unsupported_media_type (415: PUT needs
// Content-Type application/json, parameters allowed), validation_failed
// (422), internal (500), unavailable (503, with Retry-After). The table of
// docs/contract.md, Errors, says when each is answered.
//
// PUT /v1/integrations/{id}/webhook takes {"enabled", "url", "events"}:
// enabled and url are required; events is required and non-empty while
// enabled is true and may be omitted while it is false. Validation reports
// every problem at once, keyed by field: unknown or repeated fields, wrong
// JSON types (naming the type received), unknown event names (each one),
// repeated event names, and the URL policy's reason for a refused url.
// Problems with the body as a whole (empty, malformed with its line and
// column, not an object, trailing data) are keyed "body". The answer is the
// configuration with the secret masked (see Webhook): 201 with Location
// when created, 200 when replaced.
package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/blazelock/webhooks/dispatcher/target"
)

// Deps are what the server needs.
type Deps struct {
	Webhooks WebhookStore
	// AdminToken is the bearer token every route requires. Empty refuses
	// every request.
	AdminToken string
	// URLPolicy and Resolver check webhook URLs when they are saved (the
	// delivery transport checks again at connect time). A nil Resolver
	// uses the system resolver.
	URLPolicy target.Policy
	Resolver  target.Resolver
	Logger    *slog.Logger
	// Deliveries serves the delivery routes (deliveries.go; docs/contract.md,
	// Delivery routes);
	// nil leaves them out.
	Deliveries DeliveryService
	// PortalLinks creates the Webhook section's portal links
	// (portallinks.go); nil leaves the route out.
	PortalLinks PortalLinker
}

// Server is the management API.
type Server struct {
	deps      Deps
	log       *slog.Logger
	mux       *http.ServeMux
	handler   http.Handler
	tokenHash [sha256.Size]byte
	tokenSet  bool

	mu      sync.Mutex
	methods map[string][]string // path pattern → registered methods, for 405 Allow
}

// New returns a Server with its routes registered.
func New(deps Deps) *Server {
	s := &Server{
		deps:    deps,
		log:     deps.Logger,
		mux:     http.NewServeMux(),
		methods: map[string][]string{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "api")
	if deps.AdminToken == "" {
		s.log.Error("no admin token configured: the management API refuses every request")
	} else {
		// Hashing makes the comparison fixed-length, so its time says
		// nothing about the token's length either.
		s.tokenHash = sha256.Sum256([]byte(deps.AdminToken))
		s.tokenSet = true
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route")
	})
	s.routes()
	s.handler = s.logRequests(s.recoverPanics(s.authenticate(s.mux)))
	return s
}

// routes registers every route of this package.
func (s *Server) routes() {
	s.webhookRoutes()
	s.deliveryRoutes()
	s.portalLinkRoutes()
}

// Handler returns the API's handler: authentication, one log line per
// request, then the routes.
func (s *Server) Handler() http.Handler { return s.handler }

// Handle registers a route behind the same authentication, request log and
// JSON errors. method is an HTTP method, path a ServeMux path pattern such
// as "/v1/deliveries/{delivery_id}". Another method on a registered path
// answers 405 with an Allow header listing the registered ones.
func (s *Server) Handle(method, path string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, known := s.methods[path]; !known {
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", s.allow(path))
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; allowed: "+s.allow(path))
		})
	}
	s.methods[path] = append(s.methods[path], method)
	s.mux.Handle(method+" "+path, h)
}

func (s *Server) allow(path string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := slices.Clone(s.methods[path])
	if slices.Contains(m, http.MethodGet) && !slices.Contains(m, http.MethodHead) {
		m = append(m, http.MethodHead) // ServeMux answers HEAD with GET routes
	}
	slices.Sort(m)
	return strings.Join(m, ", ")
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch given, ok := bearerToken(r); {
		case !ok:
			w.Header().Set("WWW-Authenticate", `Bearer realm="blazelock"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "this API needs the header Authorization: Bearer <admin token>")
		case !s.validToken(given):
			w.Header().Set("WWW-Authenticate", `Bearer realm="blazelock", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "the bearer token is not valid")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// bearerToken returns the token of a single "Authorization: Bearer <token>"
// header (the scheme is case-insensitive, RFC 9110 §11.1).
func bearerToken(r *http.Request) (string, bool) {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	token = strings.TrimLeft(token, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

func (s *Server) validToken(given string) bool {
	sum := sha256.Sum256([]byte(given))
	return subtle.ConstantTimeCompare(sum[:], s.tokenHash[:]) == 1 && s.tokenSet
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in API handler", "method", r.Method, "panic", v)
				writeError(w, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// logRequests writes one line per request: method, route pattern, status
// and duration. Never the path's values, the body or any header.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		_, route := s.mux.Handler(r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "api request",
			slog.String("method", r.Method), slog.String("route", route),
			slog.Int("status", rec.status), slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// errorBody is the JSON of every error answer.
type errorBody struct {
	Code       string              `json:"code"`
	Message    string              `json:"message"`
	Validation map[string][]string `json:"validation,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, errorBody{Code: code, Message: message})
}

func writeValidation(w http.ResponseWriter, problems map[string][]string) {
	writeJSON(w, http.StatusUnprocessableEntity, errorBody{
		Code: "validation_failed", Message: "the request has invalid fields; see validation", Validation: problems,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"internal","message":"could not encode the answer"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
