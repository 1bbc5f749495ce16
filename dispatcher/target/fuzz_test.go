package target

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// literalResolver answers with what the host literally is when it is an IP
// address, and otherwise with an address derived from a hash of the name,
// spread over all of IPv4 and IPv6 so refused and allowed answers both occur.
// It records every address it returned.
type literalResolver struct{ returned []netip.Addr }

func (r *literalResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	var ip netip.Addr
	if a, err := netip.ParseAddr(strings.TrimSuffix(host, ".")); err == nil {
		ip = a
	} else {
		h := sha256.Sum256([]byte(strings.ToLower(strings.TrimSuffix(host, "."))))
		if h[0]&1 == 0 {
			ip = netip.AddrFrom4([4]byte(h[1:5]))
		} else {
			ip = netip.AddrFrom16([16]byte(h[1:17]))
		}
	}
	r.returned = append(r.returned, ip)
	return []net.IPAddr{{IP: ip.AsSlice(), Zone: ip.Zone()}}, nil
}

func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/hook", "http://example.com/", "https://127.0.0.1/", "https://[::ffff:127.0.0.1]/",
		"https://2130706433/", "https://0x7f.1/", "https://0177.0.0.1/", "https://localhost./", "https://LOCALHOST/",
		"https://foo.localhost/", "https://user:pw@example.com/", "https://[fe80::1%25eth0]/", "https://[64:ff9b::7f00:1]/",
		"https://[2002:7f00:1::1]/", "https://93.184.216.34:8443/x?y=z", "javascript:alert(1)", "https:foo", "https://@x/",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, private bool) {
		p := Policy{AllowPrivate: private}
		r := &literalResolver{}
		err := p.CheckURL(context.Background(), raw, r)
		if err != nil {
			if _, ok := errors.AsType[*URLError](err); !ok {
				t.Fatalf("CheckURL(%q) = %T %v, want a *URLError", raw, err, err)
			}
			if i := strings.IndexByte(raw, '?'); i >= 0 && len(raw)-i > 1 && strings.Contains(err.Error(), raw[i:]) {
				t.Fatalf("CheckURL(%q) error %q echoes the query", raw, err)
			}
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			t.Fatalf("CheckURL accepted %q, which does not parse: %v", raw, perr)
		}
		if u.Scheme != "https" && !(private && u.Scheme == "http") {
			t.Fatalf("CheckURL(private=%v) accepted scheme %q in %q", private, u.Scheme, raw)
		}
		if u.User != nil || u.Hostname() == "" || u.Opaque != "" {
			t.Fatalf("CheckURL accepted %q: user %v, host %q, opaque %q", raw, u.User, u.Hostname(), u.Opaque)
		}
		name := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
		if !private && (name == "localhost" || strings.HasSuffix(name, ".localhost")) {
			t.Fatalf("CheckURL accepted localhost URL %q", raw)
		}
		// Every address the host is, or resolves to, passes CheckAddr.
		addrs := r.returned
		if ip, err := netip.ParseAddr(strings.TrimSuffix(u.Hostname(), ".")); err == nil {
			addrs = append(addrs, ip)
		} else if len(r.returned) == 0 {
			t.Fatalf("CheckURL accepted %q without resolving its host", raw)
		}
		for _, ip := range addrs {
			if err := p.CheckAddr(ip); err != nil {
				t.Fatalf("CheckURL accepted %q, which resolves to a refused address: %v", raw, err)
			}
		}
		// Private mode only ever widens what is accepted.
		if !private {
			if err := (Policy{AllowPrivate: true}).CheckURL(context.Background(), raw, &literalResolver{}); err != nil {
				t.Fatalf("%q accepted by default but refused in private mode: %v", raw, err)
			}
		}
	})
}
