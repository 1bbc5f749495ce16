package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/blazelock/webhooks/dispatcher/delivery"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/replay"
)

// DeliveryService is what the delivery routes need (package replay).
type DeliveryService interface {
	List(ctx context.Context, integrationID string, o deliverylog.ListOptions) ([]*deliverylog.Delivery, string, error)
	Get(ctx context.Context, deliveryID string) (*deliverylog.Delivery, error)
	Retry(ctx context.Context, deliveryID string) (*deliverylog.Delivery, error)
}

// Page sizes of GET /v1/integrations/{id}/deliveries.
const (
	defaultDeliveriesLimit = 20
	maxDeliveriesLimit     = 100
)

// Delivery is a delivery as the list route answers it (docs/contract.md,
// Delivery routes).
type Delivery struct {
	ID             string  `json:"id"`
	EventID        *string `json:"event_id"`
	Event          *string `json:"event"`
	IntegrationID  string  `json:"integration_id"`
	State          string  `json:"state"`
	AttemptCount   int     `json:"attempt_count"`
	LastStatusCode *int    `json:"last_status_code"`
	LastError      *string `json:"last_error"`
	NextAttemptAt  *string `json:"next_attempt_at"`
	CreatedAt      string  `json:"created_at"`
	UpdatedAt      string  `json:"updated_at"`
}

// DeliveryWithAttempts is the single-delivery route's answer.
type DeliveryWithAttempts struct {
	Delivery
	Attempts []Attempt `json:"attempts"`
}

// Attempt is one attempt of a delivery.
type Attempt struct {
	Number          int     `json:"number"`
	StartedAt       string  `json:"started_at"`
	DurationMillis  int64   `json:"duration_ms"`
	StatusCode      *int    `json:"status_code"`
	Error           *string `json:"error"`
	ResponseExcerpt *string `json:"response_excerpt"`
}

// DeliveryPage is the list route's answer.
type DeliveryPage struct {
	Deliveries []Delivery `json:"deliveries"`
	NextCursor *string    `json:"next_cursor"`
}

func (s *Server) deliveryRoutes() {
	if s.deps.Deliveries == nil {
		return
	}
	s.Handle(http.MethodGet, "/v1/integrations/{id}/deliveries", http.HandlerFunc(s.listDeliveries))
	s.Handle(http.MethodGet, "/v1/deliveries/{delivery_id}", http.HandlerFunc(s.getDelivery))
	s.Handle(http.MethodPost, "/v1/deliveries/{delivery_id}/retry", http.HandlerFunc(s.retryDelivery))
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request) {
	id, ok := integrationID(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	opts := deliverylog.ListOptions{State: q.Get("state"), Limit: defaultDeliveriesLimit, Cursor: q.Get("cursor")}
	problems := map[string][]string{}
	if opts.State != "" && !slices.Contains(deliverylog.States, opts.State) {
		problems["state"] = append(problems["state"], "must be one of "+strings.Join(deliverylog.States, ", "))
	}
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxDeliveriesLimit {
			problems["limit"] = append(problems["limit"], "must be an integer from 1 to "+strconv.Itoa(maxDeliveriesLimit))
		}
		opts.Limit = n
	}
	if opts.Cursor != "" && !isUUID(opts.Cursor) {
		problems["cursor"] = append(problems["cursor"], "must be the next_cursor of a previous page")
	}
	if len(problems) > 0 {
		writeValidation(w, problems)
		return
	}
	list, next, err := s.deps.Deliveries.List(r.Context(), id, opts)
	if err != nil {
		s.deliveryError(w, r, err)
		return
	}
	page := DeliveryPage{Deliveries: make([]Delivery, 0, len(list))}
	for _, d := range list {
		page.Deliveries = append(page.Deliveries, deliveryJSON(d))
	}
	if next != "" {
		page.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) getDelivery(w http.ResponseWriter, r *http.Request) {
	d, err := s.deps.Deliveries.Get(r.Context(), r.PathValue("delivery_id"))
	if err != nil {
		s.deliveryError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, deliveryWithAttempts(d))
}

func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request) {
	d, err := s.deps.Deliveries.Retry(r.Context(), r.PathValue("delivery_id"))
	if err != nil {
		s.deliveryError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, deliveryWithAttempts(d))
}

func (s *Server) deliveryError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, deliverylog.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such delivery (deliveries are kept for DISPATCHER_EVENT_RETENTION)")
	case errors.Is(err, delivery.ErrNotRetryable):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, replay.ErrEventExpired):
		writeError(w, http.StatusGone, "gone", err.Error())
	default:
		if r.Context().Err() == nil {
			s.log.ErrorContext(r.Context(), "delivery log failed", "error", err)
		}
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the delivery log is unavailable; retry later")
	}
}

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func deliveryJSON(d *deliverylog.Delivery) Delivery {
	out := Delivery{
		ID: d.ID, EventID: d.EventID, Event: d.Event, IntegrationID: d.IntegrationID, State: d.State,
		AttemptCount: d.AttemptCount, LastStatusCode: d.LastStatusCode, LastError: d.LastError,
		CreatedAt: d.CreatedAt.UTC().Format(timeLayout), UpdatedAt: d.UpdatedAt.UTC().Format(timeLayout),
	}
	if d.NextAttemptAt != nil {
		next := d.NextAttemptAt.UTC().Format(timeLayout)
		out.NextAttemptAt = &next
	}
	return out
}

func deliveryWithAttempts(d *deliverylog.Delivery) DeliveryWithAttempts {
	out := DeliveryWithAttempts{Delivery: deliveryJSON(d), Attempts: make([]Attempt, 0, len(d.Attempts))}
	for _, a := range d.Attempts {
		out.Attempts = append(out.Attempts, Attempt{
			Number: a.Number, StartedAt: a.StartedAt.UTC().Format(timeLayout), DurationMillis: a.DurationMillis,
			StatusCode: a.StatusCode, Error: a.Error, ResponseExcerpt: a.ResponseExcerpt,
		})
	}
	return out
}
