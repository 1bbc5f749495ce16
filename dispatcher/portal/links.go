package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// CreateLink creates a portal link for integrationID and returns its
// address: under the configured public URL, or else the API request's
// host. It is what POST /v1/integrations/{id}/portal-links answers.
func (s *Server) CreateLink(ctx context.Context, r *http.Request, integrationID string) (string, time.Time, error) {
	integrationID = strings.ToLower(integrationID)
	if !isUUID(integrationID) {
		return "", time.Time{}, fmt.Errorf("portal link: integration id %q is not a UUID", integrationID)
	}
	token, expires, err := s.deps.Access.NewLink(ctx, integrationID)
	if err != nil {
		return "", time.Time{}, err
	}
	return s.base(r) + Prefix + "links/" + token, expires, nil
}

// OperatorLink is a one-time operator sign-in link for the embedded
// default's start-up banner; base is the listener's address.
func (s *Server) OperatorLink(ctx context.Context, base string) (string, time.Time, error) {
	token, expires, err := s.deps.Access.NewLink(ctx, "")
	if err != nil {
		return "", time.Time{}, err
	}
	if s.deps.PublicURL != "" {
		base = s.deps.PublicURL
	}
	return base + Prefix + "links/" + token, expires, nil
}

func (s *Server) base(r *http.Request) string {
	if s.deps.PublicURL != "" {
		return s.deps.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return (&url.URL{Scheme: scheme, Host: r.Host}).String()
}

// redeemLink opens the link's session. The answer is a page that moves on
// at once with a meta refresh rather than a 303: after a navigation that
// started on another site (an email, the dashboard on another site), a
// browser does not send a SameSite=Strict cookie on the redirect's target,
// while a refresh started by this page is same-site. Either way the token
// leaves the address bar at once, and it cannot be used again.
func (s *Server) redeemLink(w http.ResponseWriter, r *http.Request) {
	cookie, sess, err := s.deps.Access.Redeem(r.Context(), r.PathValue("token"))
	switch {
	case errors.Is(err, ErrLinkInvalid):
		s.errorPage(w, r, http.StatusNotFound, errorText{
			Title:  "This link is not valid",
			Detail: "The address is incomplete or was changed. Open the Webhook section again from your Blazelock dashboard to get a new link.",
		})
		return
	case errors.Is(err, ErrLinkUsed):
		s.errorPage(w, r, http.StatusGone, errorText{
			Title:  "This link has already been used",
			Detail: "Each link opens the Webhook section once. Open it again from your Blazelock dashboard to get a new link.",
		})
		return
	case errors.Is(err, ErrLinkExpired):
		s.errorPage(w, r, http.StatusGone, errorText{
			Title:  "This link has expired",
			Detail: "Links work for a short time only. Open the Webhook section again from your Blazelock dashboard to get a new link.",
		})
		return
	case err != nil:
		s.unavailable(w, r, "redeem portal link", err)
		return
	}
	s.setSessionCookie(w, r, cookie, sess.ExpiresAt)
	next := Prefix
	if !sess.Operator() {
		next = integrationPath(sess.IntegrationID)
	}
	s.audit(r.Context(), sess, sess.IntegrationID, "session.opened_by_link")
	s.render(w, r, http.StatusOK, "continue", view{Title: "Signed in", Continue: next})
}
