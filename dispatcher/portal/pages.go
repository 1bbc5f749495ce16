package portal

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/blazelock/webhooks/dispatcher/delivery"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/replay"
	"github.com/blazelock/webhooks/dispatcher/webhooks"
	"github.com/blazelock/webhooks/schemas"
)

// maxFormBytes bounds a form body; the largest form is a webhook's
// settings, well under 3 KiB.
const maxFormBytes = 64 << 10

func integrationPath(id string) string { return Prefix + "integrations/" + id }

// withSession runs h for a request with a live session. Without one, a
// page view goes to the sign-in page and a change is refused with 401.
func (s *Server) withSession(h func(http.ResponseWriter, *http.Request, Session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.session(r)
		switch {
		case errors.Is(err, ErrNoSession) && r.Method == http.MethodGet:
			http.Redirect(w, r, Prefix+"sign-in?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		case errors.Is(err, ErrNoSession):
			s.errorPage(w, r, http.StatusUnauthorized, pageSessionEnded)
		case err != nil:
			s.unavailable(w, r, "read session", err)
		default:
			h(w, r, sess)
		}
	})
}

func (s *Server) session(r *http.Request) (Session, error) {
	c, err := r.Cookie(s.cookieName(r))
	if err != nil {
		return Session{}, ErrNoSession
	}
	return s.deps.Access.Session(r.Context(), c.Value)
}

// withIntegration runs h for an integration the session may see. Any other
// answers 404, exactly as an id that does not exist.
func (s *Server) withIntegration(h func(http.ResponseWriter, *http.Request, Session, string)) http.Handler {
	return s.withSession(func(w http.ResponseWriter, r *http.Request, sess Session) {
		id := strings.ToLower(r.PathValue("id"))
		if !isUUID(id) || !sess.Allows(id) {
			s.errorPage(w, r, http.StatusNotFound, pageNotFound)
			return
		}
		h(w, r, sess, id)
	})
}

// isUUID accepts the 36-character hyphenated form, as the API does.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ---- Sign-in and sign-out ----

type signInData struct {
	Next    string
	Problem string
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	if sess, err := s.session(r); err == nil && sess.Operator() {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "sign-in", view{
		Title: "Sign in", Notice: notices[r.URL.Query().Get("notice")],
		Data: signInData{Next: safeNext(r.URL.Query().Get("next"))},
	})
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, errorText{Title: "Bad request", Detail: "The form could not be read."})
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	if !s.validToken(strings.TrimSpace(r.PostForm.Get("token"))) {
		s.log.WarnContext(r.Context(), "portal sign-in refused: wrong admin token")
		s.render(w, r, http.StatusUnauthorized, "sign-in", view{
			Title: "Sign in", Data: signInData{Next: next, Problem: "This is not the admin token. Check it and try again."},
		})
		return
	}
	cookie, sess, err := s.deps.Access.SignIn(r.Context())
	if err != nil {
		s.unavailable(w, r, "open session", err)
		return
	}
	s.setSessionCookie(w, r, cookie, sess.ExpiresAt)
	s.audit(r.Context(), sess, "", "session.signed_in")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// safeNext keeps a post-sign-in destination on this site's pages: an
// absolute path under Prefix, never "//host" or another scheme.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" || u.User != nil || strings.ContainsAny(next, "\\\r\n\t") ||
		strings.Contains(strings.ToLower(u.RawPath), "%2e") {
		return Prefix
	}
	// The path as a browser would resolve it ("/portal/../x" is "/x").
	clean := path.Clean(u.Path)
	if strings.HasSuffix(u.Path, "/") && clean != "/" {
		clean += "/"
	}
	if clean != u.Path || !strings.HasPrefix(clean, Prefix) {
		return Prefix
	}
	return next
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(s.cookieName(r)); err == nil {
		sess, sessErr := s.deps.Access.Session(r.Context(), c.Value)
		if err := s.deps.Access.SignOut(r.Context(), c.Value); err != nil {
			s.unavailable(w, r, "end session", err)
			return
		}
		if sessErr == nil {
			s.audit(r.Context(), sess, sess.IntegrationID, "session.signed_out")
		}
	}
	s.clearSessionCookie(w, r)
	http.Redirect(w, r, Prefix+"sign-in?notice=signed-out", http.StatusSeeOther)
}

// ---- Index (operators) ----

// indexPageSize is how many integrations the index shows at once.
const indexPageSize = 50

type indexRow struct {
	webhooks.Webhook
	Problem string // the config could not be read
}

type indexData struct {
	Query     string
	Rows      []indexRow
	Total     int
	NextAfter string
}

func (s *Server) index(w http.ResponseWriter, r *http.Request, sess Session) {
	if !sess.Operator() {
		http.Redirect(w, r, integrationPath(sess.IntegrationID), http.StatusSeeOther)
		return
	}
	ids, err := s.deps.Webhooks.IDs(r.Context())
	if err != nil {
		s.unavailable(w, r, "list webhooks", err)
		return
	}
	q := r.URL.Query()
	query := strings.ToLower(strings.TrimSpace(q.Get("q")))
	if query != "" {
		ids = slices.DeleteFunc(ids, func(id string) bool { return !strings.Contains(id, query) })
	}
	data := indexData{Query: query, Total: len(ids)}
	if after := q.Get("after"); after != "" {
		i, _ := slices.BinarySearch(ids, after)
		if i < len(ids) && ids[i] == after {
			i++
		}
		ids = ids[i:]
	}
	if len(ids) > indexPageSize {
		ids = ids[:indexPageSize]
		data.NextAfter = ids[len(ids)-1]
	}
	for _, id := range ids {
		cfg, err := s.deps.Webhooks.Get(r.Context(), id)
		switch {
		case errors.Is(err, webhooks.ErrNotFound):
			continue // deleted since the listing
		case err != nil:
			data.Rows = append(data.Rows, indexRow{Webhook: webhooks.Webhook{IntegrationID: id}, Problem: "could not be read"})
		default:
			data.Rows = append(data.Rows, indexRow{Webhook: cfg})
		}
	}
	s.render(w, r, http.StatusOK, "index", view{Title: "Integrations", Session: &sess, Data: data})
}

// openIntegration answers the index's "open by id" form.
func (s *Server) openIntegration(w http.ResponseWriter, r *http.Request, sess Session) {
	id := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("id")))
	if !isUUID(id) || !sess.Allows(id) {
		s.errorPage(w, r, http.StatusNotFound, errorText{
			Title: "Not an integration id", Detail: "An integration id is a UUID such as 0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01.",
		})
		return
	}
	http.Redirect(w, r, integrationPath(id), http.StatusSeeOther)
}

// ---- Settings and secret ----

// eventInfo describes an event on the settings form.
type eventInfo struct{ Name, Description string }

var eventInfos = []eventInfo{
	{schemas.EventSubmitted, "A file was submitted and its scan has started."},
	{schemas.EventCompleted, "A scan finished; the result says whether malware was found."},
	{schemas.EventFailed, "A scan could not be finished."},
}

type settingsData struct {
	Exists  bool
	Enabled bool
	URL     string
	Events  []eventOption
	// Problems are field messages by field name ("url", "events").
	Problems map[string][]string
	Masked   string
	// Secret is set only on the answer to Reveal.
	Secret string
}

type eventOption struct {
	eventInfo
	Checked bool
}

func eventOptions(selected []string) []eventOption {
	out := make([]eventOption, len(eventInfos))
	for i, e := range eventInfos {
		out[i] = eventOption{eventInfo: e, Checked: slices.Contains(selected, e.Name)}
	}
	return out
}

func (s *Server) settingsPage(w http.ResponseWriter, r *http.Request, sess Session, id string) {
	cfg, err := s.deps.Webhooks.Get(r.Context(), id)
	if err != nil && !errors.Is(err, webhooks.ErrNotFound) {
		s.storeError(w, r, "read webhook", err)
		return
	}
	s.renderSettings(w, r, http.StatusOK, sess, id, view{Notice: notices[r.URL.Query().Get("notice")]}, cfg, err == nil, "")
}

// renderSettings shows the settings page for cfg (exists: a webhook is
// configured); secret is shown in full only when non-empty.
func (s *Server) renderSettings(w http.ResponseWriter, r *http.Request, status int, sess Session, id string, v view, cfg webhooks.Webhook, exists bool, secret string) {
	v.Title, v.Session, v.IntegrationID = "Webhook", &sess, id
	v.Data = settingsData{
		Exists: exists, Enabled: cfg.Enabled, URL: cfg.URL, Events: eventOptions(cfg.Events),
		Masked: webhooks.MaskSecret(cfg.Secret), Secret: secret,
	}
	s.render(w, r, status, "settings", v)
}

func (s *Server) saveSettings(w http.ResponseWriter, r *http.Request, sess Session, id string) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, errorText{Title: "Bad request", Detail: "The form could not be read."})
		return
	}
	set := webhooks.Settings{
		Enabled: r.PostForm.Get("enabled") == "on",
		URL:     strings.TrimSpace(r.PostForm.Get("url")),
	}
	problems := map[string][]string{}
	if reason := webhooks.CheckURL(r.Context(), set.URL, s.deps.URLPolicy, s.deps.Resolver); reason != "" {
		problems["url"] = []string{reason}
	}
	events, eventProblems := webhooks.CheckEventNames(r.PostForm["events"])
	set.Events = events
	problems["events"] = eventProblems
	if set.Enabled && len(r.PostForm["events"]) == 0 {
		problems["events"] = append(problems["events"], "must include at least one event while the webhook is enabled")
	}
	if len(problems["events"]) == 0 {
		delete(problems, "events")
	}
	previous, getErr := s.deps.Webhooks.Get(r.Context(), id)
	exists := getErr == nil
	if getErr != nil && !errors.Is(getErr, webhooks.ErrNotFound) {
		s.storeError(w, r, "read webhook", getErr)
		return
	}
	if len(problems) > 0 {
		s.renderFormProblems(w, r, http.StatusUnprocessableEntity, sess, id, set, problems, previous, exists, "")
		return
	}
	cfg, created, err := s.deps.Webhooks.Put(r.Context(), id, set)
	if errors.Is(err, webhooks.ErrConflict) {
		s.renderFormProblems(w, r, http.StatusConflict, sess, id, set, nil, previous, exists,
			"The webhook was changed at the same moment elsewhere, so nothing was saved. Check the values and save again.")
		return
	}
	if err != nil {
		s.storeError(w, r, "save webhook", err)
		return
	}
	s.audit(r.Context(), sess, id, "webhook.saved", "created", created, "changes", changes(previous, exists, cfg))
	notice := "saved"
	switch {
	case created:
		notice = "created"
	case !cfg.Enabled && previous.Enabled:
		notice = "disabled"
	}
	http.Redirect(w, r, integrationPath(id)+"?notice="+notice, http.StatusSeeOther)
}

// renderFormProblems shows the form as submitted with its problems; the
// secret section reflects what is stored, since nothing was saved.
func (s *Server) renderFormProblems(w http.ResponseWriter, r *http.Request, status int, sess Session, id string,
	set webhooks.Settings, problems map[string][]string, stored webhooks.Webhook, exists bool, message string) {
	v := view{Title: "Webhook", Session: &sess, IntegrationID: id, Error: message}
	if len(problems) > 0 {
		v.Error = "Nothing was saved: correct the fields marked below."
	}
	v.Data = settingsData{
		Exists: exists, Enabled: set.Enabled, URL: set.URL, Events: eventOptions(r.PostForm["events"]),
		Problems: problems, Masked: webhooks.MaskSecret(stored.Secret),
	}
	s.render(w, r, status, "settings", v)
}

// changes describes a save for the audit line: each changed field's old
// and new value (URLs and event names are not secrets).
func changes(before webhooks.Webhook, existed bool, after webhooks.Webhook) string {
	if !existed {
		return fmt.Sprintf("enabled=%t url=%s events=%s", after.Enabled, auditURL(after.URL), strings.Join(after.Events, ","))
	}
	var parts []string
	if before.Enabled != after.Enabled {
		parts = append(parts, fmt.Sprintf("enabled %t→%t", before.Enabled, after.Enabled))
	}
	if before.URL != after.URL {
		parts = append(parts, fmt.Sprintf("url %s→%s", auditURL(before.URL), auditURL(after.URL)))
	}
	if !slices.Equal(before.Events, after.Events) {
		parts = append(parts, fmt.Sprintf("events %s→%s", strings.Join(before.Events, ","), strings.Join(after.Events, ",")))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// auditURL is a webhook URL for the log: customers put tokens in query
// strings, so the query is replaced by "?…" (a changed query still shows
// as a change, without its value).
func auditURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	redacted := u.Scheme + "://" + u.Host + u.EscapedPath()
	if u.RawQuery != "" || u.ForceQuery {
		redacted += "?…"
	}
	return redacted
}

// revealSecret answers the secret: JSON for the page's script, or the
// settings page with the secret shown when scripts are off. Never cached.
func (s *Server) revealSecret(w http.ResponseWriter, r *http.Request, sess Session, id string) {
	w.Header().Set("Cache-Control", "no-store")
	cfg, err := s.deps.Webhooks.Get(r.Context(), id)
	if err != nil {
		s.storeError(w, r, "read webhook", err)
		return
	}
	s.audit(r.Context(), sess, id, "secret.revealed")
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, "{\"secret\":%q}\n", cfg.Secret) // whsec_ + base64: nothing to escape
		return
	}
	s.renderSettings(w, r, http.StatusOK, sess, id, view{}, cfg, true, cfg.Secret)
}

func (s *Server) regeneratePage(w http.ResponseWriter, r *http.Request, sess Session, id string) {
	cfg, err := s.deps.Webhooks.Get(r.Context(), id)
	if err != nil {
		s.storeError(w, r, "read webhook", err)
		return
	}
	s.render(w, r, http.StatusOK, "regenerate", view{
		Title: "Regenerate the secret", Session: &sess, IntegrationID: id, Data: webhooks.MaskSecret(cfg.Secret),
	})
}

func (s *Server) regenerate(w http.ResponseWriter, r *http.Request, sess Session, id string) {
	if _, err := s.deps.Webhooks.RotateSecret(r.Context(), id); err != nil {
		s.storeError(w, r, "regenerate secret", err)
		return
	}
	s.audit(r.Context(), sess, id, "secret.regenerated")
	http.Redirect(w, r, integrationPath(id)+"?notice=regenerated", http.StatusSeeOther)
}

// storeError answers a webhook store failure.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, op string, err error) {
	switch {
	case errors.Is(err, webhooks.ErrNotFound):
		s.errorPage(w, r, http.StatusNotFound, errorText{
			Title: "No webhook yet", Detail: "This integration has no webhook. Save its settings first.",
		})
	case errors.Is(err, webhooks.ErrConflict):
		s.errorPage(w, r, http.StatusConflict, errorText{
			Title: "Changed elsewhere", Detail: "The webhook was changed at the same moment elsewhere, so nothing was done. Go back and try again.",
		})
	default:
		s.unavailable(w, r, op, err)
	}
}

// ---- Deliveries ----

// deliveriesPageSize is how many deliveries a page lists.
const deliveriesPageSize = 20

type deliveriesData struct {
	State, Event string
	States       []string
	EventNames   []string
	Deliveries   []*deliverylog.Delivery
	// Cursor is this page's cursor ("" on the first), NextCursor the next
	// page's ("" on the last).
	Cursor, NextCursor string
	Problem            string
}

func (s *Server) deliveriesPage(w http.ResponseWriter, r *http.Request, sess Session, id string) {
	q := r.URL.Query()
	data := deliveriesData{
		State: q.Get("state"), Event: q.Get("event"), Cursor: q.Get("cursor"),
		States: deliverylog.States, EventNames: schemas.EventNames,
	}
	v := view{Title: "Deliveries", Session: &sess, IntegrationID: id}
	var problems []string
	if data.State != "" && !slices.Contains(deliverylog.States, data.State) {
		problems, data.State = append(problems, "Unknown state: showing every state."), ""
	}
	if data.Event != "" && !schemas.IsEventName(data.Event) {
		problems, data.Event = append(problems, "Unknown event: showing every event."), ""
	}
	if data.Cursor != "" && !isUUID(data.Cursor) {
		problems, data.Cursor = append(problems, "That page does not exist: showing the newest deliveries."), ""
	}
	v.Error = strings.Join(problems, " ")
	list, next, err := s.deps.Deliveries.List(r.Context(), id, deliverylog.ListOptions{
		State: data.State, Event: data.Event, Cursor: data.Cursor, Limit: deliveriesPageSize,
	})
	if err != nil {
		s.unavailable(w, r, "list deliveries", err)
		return
	}
	data.Deliveries, data.NextCursor = list, next
	v.Data = data
	s.render(w, r, http.StatusOK, "deliveries", v)
}

type deliveryData struct {
	*deliverylog.Delivery
	Retryable bool
}

// loadDelivery returns the integration's delivery, or answers 404 for a
// delivery of another integration as for one that does not exist.
func (s *Server) loadDelivery(w http.ResponseWriter, r *http.Request, id string) (*deliverylog.Delivery, bool) {
	deliveryID := r.PathValue("delivery_id")
	var d *deliverylog.Delivery
	err := deliverylog.ErrNotFound
	if isUUID(deliveryID) {
		d, err = s.deps.Deliveries.Get(r.Context(), deliveryID)
	}
	switch {
	case errors.Is(err, deliverylog.ErrNotFound) || err == nil && d.IntegrationID != id:
		s.errorPage(w, r, http.StatusNotFound, errorText{
			Title:  "No such delivery",
			Detail: "This delivery does not exist for this integration, or it is older than the retention period.",
		})
		return nil, false
	case err != nil:
		s.unavailable(w, r, "read delivery", err)
		return nil, false
	}
	return d, true
}

func (s *Server) deliveryPage(w http.ResponseWriter, r *http.Request, sess Session, id string) {
	d, ok := s.loadDelivery(w, r, id)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, "delivery", view{
		Title: "Delivery", Session: &sess, IntegrationID: id, Notice: notices[r.URL.Query().Get("notice")],
		Data: deliveryData{Delivery: d, Retryable: delivery.Replayable(d.State)},
	})
}

func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request, sess Session, id string) {
	d, ok := s.loadDelivery(w, r, id)
	if !ok {
		return
	}
	_, err := s.deps.Deliveries.Retry(r.Context(), d.ID)
	switch {
	case errors.Is(err, delivery.ErrNotRetryable):
		s.errorPage(w, r, http.StatusConflict, errorText{
			Title: "This delivery cannot be retried", Detail: "It is " + d.State + ": only finished deliveries (succeeded, dead or skipped) can be retried.",
		})
		return
	case errors.Is(err, replay.ErrEventExpired):
		s.errorPage(w, r, http.StatusGone, errorText{
			Title: "The event is no longer stored", Detail: "Events are kept for the retention period only; this one can no longer be sent.",
		})
		return
	case err != nil:
		s.unavailable(w, r, "retry delivery", err)
		return
	}
	s.audit(r.Context(), sess, id, "delivery.retried", "delivery_id", d.ID)
	http.Redirect(w, r, integrationPath(id)+"/deliveries/"+d.ID+"?notice=retried", http.StatusSeeOther)
}
