package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// API is a client of one dispatcher's management API (docs/contract.md).
type API struct {
	base  string
	token string
	http  *http.Client
}

// NewAPI returns a client of the API at addr (host:port) that
// authenticates with the admin token.
func NewAPI(addr, adminToken string) *API {
	return &API{base: "http://" + addr, token: adminToken, http: &http.Client{Timeout: 20 * time.Second}}
}

// Response is an answer of the API, whatever its status.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Request sends one request with exactly the given headers (no token: for
// checks of the API's own authentication) and returns the answer,
// whatever its status.
func (a *API) Request(ctx context.Context, method, path string, body []byte, header http.Header) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}, nil
}

// Call sends in as JSON (nil: no body) with the admin token, decodes a
// non-empty answer into out (unless out is nil) and returns the status.
// Only a failed exchange or an undecodable answer is an error: the caller
// judges the status.
func (a *API) Call(ctx context.Context, method, path string, in, out any) (int, error) {
	resp, err := a.send(ctx, method, path, in)
	if err != nil {
		return 0, err
	}
	if out != nil && len(resp.Body) > 0 {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return resp.Status, fmt.Errorf("%s %s: decode %q: %w", method, path, resp.Body, err)
		}
	}
	return resp.Status, nil
}

// send sends in as JSON (nil: no body) with the admin token.
func (a *API) send(ctx context.Context, method, path string, in any) (*Response, error) {
	h := http.Header{"Authorization": {"Bearer " + a.token}}
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, err
		}
		h.Set("Content-Type", "application/json")
	}
	return a.Request(ctx, method, path, body, h)
}

// Webhook is an integration's webhook as PUT .../webhook takes it.
type Webhook struct {
	Enabled bool     `json:"enabled"`
	URL     string   `json:"url"`
	Events  []string `json:"events"`
}

// PutWebhook creates or replaces the integration's webhook.
func (a *API) PutWebhook(ctx context.Context, integration string, w Webhook) error {
	path := "/v1/integrations/" + integration + "/webhook"
	resp, err := a.send(ctx, http.MethodPut, path, w)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK && resp.Status != http.StatusCreated {
		return fmt.Errorf("PUT %s: HTTP %d: %s", path, resp.Status, resp.Body)
	}
	return nil
}

// Secret reads the integration's signing secret.
func (a *API) Secret(ctx context.Context, integration string) (string, error) {
	path := "/v1/integrations/" + integration + "/webhook/secret"
	var answer struct{ Secret string }
	code, err := a.Call(ctx, http.MethodGet, path, nil, &answer)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK || answer.Secret == "" {
		return "", fmt.Errorf("GET %s: HTTP %d without a secret", path, code)
	}
	return answer.Secret, nil
}

// Deliveries lists every delivery of the integration, following the
// cursor through all pages, each decoded into a T (the caller's view of a
// delivery: black-box tests read the JSON as it is).
func Deliveries[T any](ctx context.Context, a *API, integration string) ([]T, error) {
	var all []T
	cursor := ""
	for {
		var page struct {
			Deliveries []T     `json:"deliveries"`
			NextCursor *string `json:"next_cursor"`
		}
		path := "/v1/integrations/" + integration + "/deliveries?limit=100"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		code, err := a.Call(ctx, http.MethodGet, path, nil, &page)
		if err != nil {
			return nil, err
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("list deliveries of %s: HTTP %d", integration, code)
		}
		all = append(all, page.Deliveries...)
		if page.NextCursor == nil {
			return all, nil
		}
		cursor = *page.NextCursor
	}
}
