// Package portal serves the Webhook section: the web pages where an
// integration's webhook is configured (status, URL, events), its secret
// revealed, copied and regenerated, and its deliveries watched and retried.
// It is the product surface over the same stores as the management API
// (package api) and uses the same validation (webhooks.CheckURL,
// webhooks.CheckEventNames).
//
// # Who can see what
//
// Operators sign in with the admin token and get a session that sees every
// integration. Blazelock's dashboard sends a customer with a portal link
// (POST /v1/integrations/{id}/portal-links): a single-use, short-lived
// token whose session sees only that integration; any other integration
// answers 404, as if it did not exist. Sessions and links live in a KV
// bucket shared by every dispatcher (access.go).
//
// # Browser security
//
//   - The session cookie is HttpOnly, SameSite=Strict, Secure (and
//     __Host-) when the dispatcher is reached over https, with a bounded
//     lifetime that use does not extend.
//   - Every state-changing request passes net/http's CrossOriginProtection
//     (Sec-Fetch-Site / Origin); SameSite=Strict covers older browsers.
//   - Content-Security-Policy allows scripts, styles and fetches from this
//     origin only (no inline script), forms to post here only, and frames
//     from the configured frame ancestors only (none by default).
//   - Referrer-Policy: no-referrer, so no URL of the pages leaks outward.
//   - Pages are html/template: values from customers' servers (response
//     excerpts, errors) are escaped text.
//   - Secrets are never in a page's initial HTML; Reveal fetches the
//     secret with a POST, answered no-store. Secrets are never logged.
//
// Every change made through the pages is logged as one "portal audit" line:
// who (operator or portal session, by a short reference), what changed.
package portal

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/target"
	"github.com/blazelock/webhooks/dispatcher/webhooks"
)

// WebhookStore is what the pages need from webhooks.Store.
type WebhookStore interface {
	Get(ctx context.Context, integrationID string) (webhooks.Webhook, error)
	Put(ctx context.Context, integrationID string, set webhooks.Settings) (cfg webhooks.Webhook, created bool, err error)
	RotateSecret(ctx context.Context, integrationID string) (webhooks.Webhook, error)
	IDs(ctx context.Context) ([]string, error)
}

// DeliveryService is what the pages need from replay.Service.
type DeliveryService interface {
	List(ctx context.Context, integrationID string, o deliverylog.ListOptions) ([]*deliverylog.Delivery, string, error)
	Get(ctx context.Context, deliveryID string) (*deliverylog.Delivery, error)
	Retry(ctx context.Context, deliveryID string) (*deliverylog.Delivery, error)
}

// Deps are what the pages need.
type Deps struct {
	Webhooks   WebhookStore
	Deliveries DeliveryService
	Access     *Access
	// AdminToken signs operators in. Empty refuses every sign-in.
	AdminToken string
	URLPolicy  target.Policy
	Resolver   target.Resolver
	// PublicURL is scheme://host[:port] as browsers reach the dispatcher;
	// empty builds links from the request's Host over http.
	PublicURL string
	// FrameAncestors are the origins allowed to embed the pages.
	FrameAncestors []string
	Logger         *slog.Logger
}

// Prefix is where the pages live on the dispatcher's listener.
const Prefix = "/portal/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Server serves the pages.
type Server struct {
	deps      Deps
	log       *slog.Logger
	pages     *pages
	handler   http.Handler
	tokenHash [sha256.Size]byte
	csp       string
	secure    bool
}

// New returns a Server with its routes registered.
func New(deps Deps) *Server {
	s := &Server{deps: deps, log: deps.Logger, pages: parsePages()}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "portal")
	s.tokenHash = sha256.Sum256([]byte(deps.AdminToken))
	s.secure = strings.HasPrefix(deps.PublicURL, "https://")
	ancestors := "'none'"
	if len(deps.FrameAncestors) > 0 {
		ancestors = strings.Join(deps.FrameAncestors, " ")
	}
	s.csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
		"form-action 'self'; base-uri 'none'; frame-ancestors " + ancestors

	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /portal/static/", http.StripPrefix("/portal/static/", s.noListing(http.FileServerFS(static))))
	mux.HandleFunc("GET /portal/sign-in", s.signInPage)
	mux.HandleFunc("POST /portal/sign-in", s.signIn)
	mux.HandleFunc("POST /portal/sign-out", s.signOut)
	mux.HandleFunc("GET /portal/links/{token}", s.redeemLink)
	mux.Handle("GET /portal/{$}", s.withSession(s.index))
	mux.Handle("GET /portal/integrations/{$}", s.withSession(s.openIntegration))
	mux.Handle("GET /portal/integrations/{id}", s.withIntegration(s.settingsPage))
	mux.Handle("POST /portal/integrations/{id}/webhook", s.withIntegration(s.saveSettings))
	mux.Handle("POST /portal/integrations/{id}/secret", s.withIntegration(s.revealSecret))
	mux.Handle("GET /portal/integrations/{id}/secret/regenerate", s.withIntegration(s.regeneratePage))
	mux.Handle("POST /portal/integrations/{id}/secret/regenerate", s.withIntegration(s.regenerate))
	mux.Handle("GET /portal/integrations/{id}/deliveries", s.withIntegration(s.deliveriesPage))
	mux.Handle("GET /portal/integrations/{id}/deliveries/{delivery_id}", s.withIntegration(s.deliveryPage))
	mux.Handle("POST /portal/integrations/{id}/deliveries/{delivery_id}/retry", s.withIntegration(s.retryDelivery))
	mux.HandleFunc("/portal/", func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusNotFound, pageNotFound)
	})

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.WarnContext(r.Context(), "portal refused a cross-origin request", "method", r.Method, "path_pattern", pattern(mux, r))
		s.errorPage(w, r, http.StatusForbidden, errorText{
			Title:  "Request refused",
			Detail: "This change came from another site, so it was refused. Open the Webhook section itself and try again.",
		})
	}))
	s.handler = s.headers(s.recoverPanics(cop.Handler(mux)))
	return s
}

// noListing answers 404 for directories instead of listing them.
func (s *Server) noListing(files http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			s.errorPage(w, r, http.StatusNotFound, pageNotFound)
			return
		}
		files.ServeHTTP(w, r)
	})
}

// Handler returns the pages' handler, for the paths under Prefix.
func (s *Server) Handler() http.Handler { return s.handler }

// headers sets the security headers of every answer.
func (s *Server) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", s.csp)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		if len(s.deps.FrameAncestors) == 0 {
			h.Set("X-Frame-Options", "DENY") // for browsers without CSP frame-ancestors
		}
		if !strings.HasPrefix(r.URL.Path, "/portal/static/") {
			// Pages show per-session data: no shared cache keeps them.
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in portal handler", "method", r.Method, "panic", v)
				s.errorPage(w, r, http.StatusInternalServerError, pageInternal)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// pattern is the route pattern of r, for logs: never the path itself,
// which may hold a link token.
func pattern(mux *http.ServeMux, r *http.Request) string {
	_, p := mux.Handler(r)
	return p
}

func (s *Server) validToken(given string) bool {
	sum := sha256.Sum256([]byte(given))
	// Hashing makes the comparison fixed-length, so its time says nothing
	// about the token's length either.
	return subtle.ConstantTimeCompare(sum[:], s.tokenHash[:]) == 1 && s.deps.AdminToken != ""
}

// Cookie names: the __Host- prefix (Secure, no Domain, Path=/) needs TLS.
const (
	cookieName       = "blazelock_session"
	secureCookieName = "__Host-blazelock_session"
)

func (s *Server) cookieName(r *http.Request) string {
	if s.secureRequest(r) {
		return secureCookieName
	}
	return cookieName
}

func (s *Server) secureRequest(r *http.Request) bool { return s.secure || r.TLS != nil }

func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, value string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(r), Value: value, Path: "/", Expires: expires,
		MaxAge:   int(time.Until(expires).Seconds()),
		HttpOnly: true, Secure: s.secureRequest(r), SameSite: http.SameSiteStrictMode,
	})
}

func (s *Server) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(r), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secureRequest(r), SameSite: http.SameSiteStrictMode,
	})
}

// audit logs one change made through the pages: who, what, on which
// integration. Callers pass no secret.
func (s *Server) audit(ctx context.Context, sess Session, integrationID, action string, attrs ...any) {
	s.log.InfoContext(ctx, "portal audit", append([]any{
		"actor", sess.Actor(), "integration_id", integrationID, "action", action,
	}, attrs...)...)
}
