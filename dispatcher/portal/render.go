package portal

import (
	"bytes"
	"html/template"
	"net/http"
	"time"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
)

// view is what every template gets: the layout's fields and the page's own
// Data.
type view struct {
	Title string
	// Session is nil on pages shown without one (sign-in, errors).
	Session *Session
	// IntegrationID, when set, shows the integration's navigation.
	IntegrationID string
	// Notice is a success message, announced through the live region.
	Notice string
	// Error is a problem with the whole request, shown above the content.
	Error string
	// Continue is the address the "continue" page moves on to.
	Continue string
	Data     any
}

// errorText is an error page's content.
type errorText struct{ Title, Detail string }

var (
	pageNotFound = errorText{
		Title:  "Not found",
		Detail: "There is nothing here, or it is not part of the integration this session can see.",
	}
	pageInternal = errorText{
		Title:  "Something went wrong",
		Detail: "The dispatcher could not answer. Try again; if it keeps failing, tell your Blazelock contact.",
	}
	pageUnavailable = errorText{
		Title:  "Temporarily unavailable",
		Detail: "The dispatcher could not reach its storage. Nothing was changed. Try again in a moment.",
	}
	pageSessionEnded = errorText{
		Title:  "Your session has ended",
		Detail: "Nothing was changed. Sign in again, or open the Webhook section again from your Blazelock dashboard.",
	}
)

// pages are the parsed templates: each page with the layout.
type pages struct{ byName map[string]*template.Template }

var pageNames = []string{"sign-in", "index", "settings", "regenerate", "deliveries", "delivery", "error", "continue"}

func parsePages() *pages {
	funcs := template.FuncMap{
		"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"lastAttempt": func(d *deliverylog.Delivery) *time.Time {
			if len(d.Attempts) == 0 {
				return nil
			}
			return &d.Attempts[len(d.Attempts)-1].StartedAt
		},
	}
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range pageNames {
		p.byName[name] = template.Must(template.New("layout.html").Funcs(funcs).
			ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return p
}

// render writes a page. The page is built in memory first, so a template
// error gives a clean 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	var buf bytes.Buffer
	if err := s.pages.byName[name].Execute(&buf, v); err != nil {
		s.log.ErrorContext(r.Context(), "portal template failed", "page", name, "err", err)
		status, buf = http.StatusInternalServerError, bytes.Buffer{}
		_ = s.pages.byName["error"].Execute(&buf, view{Title: pageInternal.Title, Data: pageInternal})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, e errorText) {
	s.render(w, r, status, "error", view{Title: e.Title, Data: e})
}

// unavailable answers a storage failure; the detail goes to the log only.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, op string, err error) {
	if r.Context().Err() == nil {
		s.log.ErrorContext(r.Context(), "portal storage failed", "op", op, "err", err)
	}
	w.Header().Set("Retry-After", "1")
	s.errorPage(w, r, http.StatusServiceUnavailable, pageUnavailable)
}

// notices are the success messages a redirect can ask for (?notice=…):
// fixed texts, so nothing from the address is ever shown.
var notices = map[string]string{
	"created":     "Webhook saved. Deliveries start with the next event.",
	"saved":       "Webhook saved. The change applies to every delivery from now on.",
	"disabled":    "Webhook saved and disabled. Deliveries have stopped.",
	"regenerated": "Secret regenerated. The previous secret no longer works: update your endpoint now.",
	"retried":     "Retry started. The delivery is pending until its new attempt finishes.",
	"signed-out":  "You are signed out.",
}
