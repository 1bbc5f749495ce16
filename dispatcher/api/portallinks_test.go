package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/api"
	"github.com/blazelock/webhooks/dispatcher/portal"
	"github.com/blazelock/webhooks/internal/natsinfra"
)

// withPortal serves the portal-links route over a real portal bucket.
func withPortal(linkTTL time.Duration) func(*api.Deps, jetstream.JetStream) {
	return func(d *api.Deps, js jetstream.JetStream) {
		kv, err := js.KeyValue(context.Background(), natsinfra.PortalBucket)
		if err != nil {
			panic(err)
		}
		d.PortalLinks = portal.New(portal.Deps{
			Access: portal.NewAccess(kv, portal.AccessOptions{SessionTTL: time.Hour, LinkTTL: linkTTL}), AdminToken: adminToken,
		})
	}
}

func TestPortalLinks(t *testing.T) {
	e := newAPI(t, withPortal(15*time.Minute))
	id := uuid.NewString()
	route := "/v1/integrations/" + id + "/portal-links"

	before := time.Now()
	r := e.request("POST", route, "", "Authorization", "Bearer "+adminToken)
	var link api.PortalLink
	if err := json.Unmarshal(r.body, &link); err != nil || r.status != http.StatusCreated {
		t.Fatalf("POST portal-links: %d %s", r.status, r.body)
	}
	if !strings.HasPrefix(link.URL, e.base+"/portal/links/") || len(link.URL) <= len(e.base+"/portal/links/") {
		t.Errorf("url %q is not a link under the request's host %s", link.URL, e.base)
	}
	if ttl := link.ExpiresAt.Sub(before); ttl < 15*time.Minute-time.Second || ttl > 15*time.Minute+time.Second {
		t.Errorf("expires_at is %s after the request, want 15m", ttl)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q: a link is a credential", cc)
	}
	second := e.request("POST", route, "", "Authorization", "Bearer "+adminToken)
	var other api.PortalLink
	_ = json.Unmarshal(second.body, &other)
	if other.URL == link.URL {
		t.Error("two requests returned the same link")
	}
	token := link.URL[strings.LastIndexByte(link.URL, '/')+1:]
	t.Cleanup(func() {
		if strings.Contains(e.logs.String(), token) {
			t.Error("a link token was logged")
		}
	})

	cases := []struct {
		method, path string
		header       []string
		status       int
		code         string
	}{
		{"POST", route, []string{"Authorization", ""}, 401, "unauthorized"},
		{"POST", route, []string{"Authorization", "Bearer wrong-token"}, 401, "unauthorized"},
		{"GET", route, []string{"Authorization", "Bearer " + adminToken}, 405, "method_not_allowed"},
		{"POST", "/v1/integrations/not-a-uuid/portal-links", []string{"Authorization", "Bearer " + adminToken}, 400, "invalid_integration_id"},
	}
	for _, tc := range cases {
		r := e.request(tc.method, tc.path, "", tc.header...)
		if code, _, _ := r.errorBody(t); r.status != tc.status || code != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, r.status, code, tc.status, tc.code)
		}
	}
}
