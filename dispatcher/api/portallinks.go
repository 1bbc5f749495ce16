package api

import (
	"context"
	"net/http"
	"time"

	"github.com/blazelock/webhooks/schemas"
)

// PortalLinker creates single-use links into the Webhook section (package
// portal). r is the API request, whose host the link uses when no public
// URL is configured.
type PortalLinker interface {
	CreateLink(ctx context.Context, r *http.Request, integrationID string) (url string, expiresAt time.Time, err error)
}

// PortalLink is the answer of POST /v1/integrations/{id}/portal-links: a
// link that opens a session limited to this integration, once, until
// expires_at. The integration needs no webhook yet: the Webhook section is
// where its customer creates one. The link is a credential: hand it to the
// customer's browser (a redirect) and do not store or log it.
//
//	{"url": "https://webhooks.example.com/portal/links/…", "expires_at": "2026-03-09T12:49:56.000Z"}
type PortalLink struct {
	URL       string            `json:"url"`
	ExpiresAt schemas.Timestamp `json:"expires_at"`
}

func (s *Server) portalLinkRoutes() {
	if s.deps.PortalLinks == nil {
		return
	}
	s.Handle(http.MethodPost, "/v1/integrations/{id}/portal-links", http.HandlerFunc(s.createPortalLink))
}

func (s *Server) createPortalLink(w http.ResponseWriter, r *http.Request) {
	id, ok := integrationID(w, r)
	if !ok {
		return
	}
	noStore(w)
	url, expires, err := s.deps.PortalLinks.CreateLink(r.Context(), r, id)
	if err != nil {
		if r.Context().Err() == nil {
			s.log.ErrorContext(r.Context(), "portal link not created", "error", err)
		}
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the link store is unavailable; retry later")
		return
	}
	writeJSON(w, http.StatusCreated, PortalLink{URL: url, ExpiresAt: schemas.At(expires)})
}
