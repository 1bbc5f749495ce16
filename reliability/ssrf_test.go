package reliability

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// TestSSRF runs three dispatchers' worth of SSRF attempts against real
// processes, with the system resolver (no network: names resolve from
// /etc/hosts):
//
//  1. At save time, a dispatcher with the production policy
//     (DISPATCHER_ALLOW_PRIVATE_TARGETS=false) refuses, with 422 and
//     nothing stored, URLs naming loopback, private, link-local, CGNAT,
//     multicast, unspecified and metadata addresses in every spelling
//     (IPv4 shorthand, octal, hex, decimal, IPv4-mapped IPv6, zones),
//     localhost and its variants, this machine's host name (which resolves
//     to a local address), http and credentials.
//  2. Redirects are never followed: endpoints answering 301, 302, 303, 307
//     and 308 with a Location on a private address get their deliveries
//     marked failed (http_3xx) until dead, and the private target behind
//     the Location sees nothing, even with private targets allowed (so a
//     followed redirect would have reached it).
//  3. At connect time (DNS rebinding): URLs stored while private targets
//     were allowed, naming hosts that resolve to loopback, are refused by
//     the production dispatcher's dialer (ssrf_refused); the endpoint sees
//     nothing.
func TestSSRF(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]string{"DISPATCHER_RETRY_SCHEDULE": "1s"})
	strict := c.startDispatcher("strict", map[string]string{"DISPATCHER_ALLOW_PRIVATE_TARGETS": "false"})

	// 1. Save time.
	refused := []string{
		"https://127.0.0.1/hook", "https://127.0.0.1:8443/hook", "https://127.1/hook", "https://0177.0.0.1/hook",
		"https://0x7f.0.0.1/hook", "https://0x7f000001/hook", "https://2130706433/hook", "https://127.000.000.001/hook",
		"https://[::1]/hook", "https://[0:0:0:0:0:0:0:1]/hook", "https://[::ffff:127.0.0.1]/hook", "https://[::ffff:7f00:1]/hook",
		"https://[::127.0.0.1]/hook", "https://[64:ff9b::127.0.0.1]/hook",
		"https://localhost/hook", "https://LOCALHOST/hook", "https://localhost./hook", "https://api.localhost/hook",
		"https://10.0.0.1/hook", "https://172.16.0.1/hook", "https://192.168.1.1/hook", "https://100.64.0.1/hook",
		"https://[fd00::1]/hook", "https://[fc00::1]/hook", "https://169.254.169.254/latest/meta-data/",
		"https://[fd00:ec2::254]/latest/meta-data/", "https://169.254.170.2/v2/credentials", "https://[fe80::1]/hook",
		"https://[fe80::1%25eth0]/hook", "https://0.0.0.0/hook", "https://[::]/hook", "https://224.0.0.1/hook",
		"https://255.255.255.255/hook", "http://hooks.example.com/hook", "https://user:pass@hooks.example.com/hook",
		"https://metadata.google.internal/computeMetadata/v1/", "ftp://hooks.example.com/hook", "file:///etc/passwd",
		"gopher://127.0.0.1:6379/_FLUSHALL",
	}
	if host, err := os.Hostname(); err == nil && resolvesLocally(host) {
		refused = append(refused, "https://"+host+"/hook", "https://"+strings.ToUpper(host)+":8443/hook")
	} else {
		// Package target's TestCheckURL and api's TestURLPolicy cover names
		// that resolve privately with an injected resolver; here only a name
		// this machine resolves itself can be used.
		t.Logf("NOTE: host name %q does not resolve to a local address here (%v); only localhost names are tried", host, err)
	}
	for _, u := range refused {
		id := uuid.Must(uuid.NewV7()).String()
		var e struct {
			Code       string              `json:"code"`
			Validation map[string][]string `json:"validation"`
		}
		code := strict.api("PUT", "/v1/integrations/"+id+"/webhook", map[string]any{"enabled": true, "url": u, "events": schemas.EventNames}, &e)
		if code != http.StatusUnprocessableEntity || len(e.Validation["url"]) == 0 {
			t.Errorf("PUT url %s: %d %+v, want 422 with a url message", u, code, e)
			continue
		}
		if strings.Contains(strings.Join(e.Validation["url"], " "), "pass") {
			t.Errorf("PUT url %s: the message repeats the credentials", u)
		}
		if code := strict.api("GET", "/v1/integrations/"+id+"/webhook", nil, nil); code != http.StatusNotFound {
			t.Errorf("PUT url %s was refused but something was stored: GET %d", u, code)
		}
	}

	// 2. Redirects, with a permissive dispatcher alone on the consumer.
	var canaryHits atomic.Int64
	canary := newHandlerEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		canaryHits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	lax := c.startDispatcher("lax", nil)
	strict.Terminate(20 * time.Second)
	want, by := map[string]outcome{}, map[string][]string{}
	var redirectHits atomic.Int64
	for _, status := range []int{301, 302, 303, 307, 308} {
		redirector := newHandlerEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			redirectHits.Add(1)
			http.Redirect(w, r, canary.base()+"/internal/admin?from="+r.URL.Path, status)
		}))
		id := uuid.Must(uuid.NewV7()).String()
		c.putWebhook(lax, id, true, redirector.base()+"/hook", schemas.EventNames)
		ev := c.publish(id, schemas.EventCompleted)
		want[ev.ID] = outcome{State: deliverylog.StateDead, Reason: "http_3xx"}
		by[id] = append(by[id], ev.ID)
	}
	c.awaitOutcomes(lax, want, by, time.Minute)
	if n := redirectHits.Load(); n != 5*2 {
		t.Errorf("redirecting endpoints got %d requests, want 10 (2 attempts × 5)", n)
	}
	if n := canaryHits.Load(); n != 0 {
		t.Errorf("the private target behind the redirects received %d requests: a redirect was followed", n)
	}

	// 3. Connect time: stored while allowed, delivered under the
	// production policy.
	target := newEndpoint(t, receiver.Faults{})
	hosts := []string{"localhost", "127.0.0.1"}
	if host, err := os.Hostname(); err == nil && resolvesLocally(host) {
		hosts = append(hosts, host)
	}
	want, by = map[string]outcome{}, map[string][]string{}
	for _, h := range hosts {
		id := uuid.Must(uuid.NewV7()).String()
		c.putWebhook(lax, id, true, strings.Replace(target.base(), "127.0.0.1", h, 1)+"/webhooks/"+id, schemas.EventNames)
		target.SetSecret(id, c.secret(lax, id))
		by[id] = nil
	}
	lax.Terminate(20 * time.Second)
	strict.Start()
	for id := range by {
		ev := c.publish(id, schemas.EventSubmitted)
		want[ev.ID] = outcome{State: deliverylog.StateDead, Reason: "ssrf_refused"}
		by[id] = append(by[id], ev.ID)
	}
	got := c.awaitOutcomes(strict, want, by, time.Minute)
	for _, d := range got {
		full := strict.deliveryWithAttempts(d.ID)
		for _, at := range full.Attempts {
			if !strings.HasPrefix(deref(at.Error), "ssrf_refused") {
				t.Errorf("delivery %s attempt %d: %q, want ssrf_refused", d.ID, at.Number, deref(at.Error))
			}
		}
	}
	if n := len(target.Deliveries()); n != 0 {
		t.Errorf("the loopback endpoint received %d requests from the production dispatcher", n)
	}
	t.Logf("%d URLs refused at save time; 5 redirects not followed; %d rebinding hosts refused at connect time", len(refused), len(hosts))
}

// resolvesLocally reports whether host resolves, on this machine, only to
// loopback or private addresses.
func resolvesLocally(host string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		a = a.Unmap()
		if !(a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || netip.MustParsePrefix("100.64.0.0/10").Contains(a)) {
			return false
		}
	}
	return true
}
