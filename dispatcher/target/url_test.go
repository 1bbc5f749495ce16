package target

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// fakeResolver answers from a fixed table and records the names it was asked.
type fakeResolver struct {
	mu      sync.Mutex
	records map[string][]string // lower-case name without trailing dot → addresses
	asked   []string
}

func (f *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	f.mu.Lock()
	f.asked = append(f.asked, host)
	f.mu.Unlock()
	addrs, ok := f.records[strings.ToLower(strings.TrimSuffix(host, "."))]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]net.IPAddr, 0, len(addrs))
	for _, a := range addrs {
		ip := netip.MustParseAddr(a)
		out = append(out, net.IPAddr{IP: ip.AsSlice(), Zone: ip.Zone()})
	}
	return out, nil
}

var _ Resolver = (*net.Resolver)(nil)

func newFakeResolver() *fakeResolver {
	return &fakeResolver{records: map[string][]string{
		"example.com":              {"93.184.216.34"},
		"v6.example.com":           {"2606:4700::1111"},
		"dual.example.com":         {"93.184.216.34", "2606:4700::1111"},
		"internal.example.com":     {"10.0.0.5"},
		"mixed.example.com":        {"93.184.216.34", "10.0.0.1"},
		"mixed-meta.example.com":   {"93.184.216.34", "169.254.169.254"},
		"mapped.example.com":       {"::ffff:127.0.0.1"},
		"metadata.google.internal": {"169.254.169.254"},
		"linklocal.example.com":    {"fe80::1%eth0"},
		"localhost":                {"127.0.0.1", "::1"},
		"foo.localhost":            {"127.0.0.1"},
		"empty.example.com":        {},
		"1.2.3.4.nip.example":      {"1.2.3.4"},
		"cafe.be":                  {"93.184.216.34"}, // all hex letters, but a real name
	}}
}

func TestCheckURL(t *testing.T) {
	// want: "" = accepted; otherwise a substring of URLError.Reason. Every
	// rejection must match ErrRefused except resolution failures.
	tests := []struct {
		url         string
		wantDefault string
		wantPrivate string
	}{
		// Accepted.
		{"https://example.com/hook", "", ""},
		{"https://example.com:8443/hooks/blazelock?token=abc#frag", "", ""},
		{"HTTPS://Example.COM./x", "", ""},
		{"https://example.com:/x", "", ""},
		{"https://v6.example.com/", "", ""},
		{"https://dual.example.com/", "", ""},
		{"https://cafe.be/", "", ""},
		{"https://1.2.3.4.nip.example/", "", ""},
		{"https://93.184.216.34/", "", ""},
		{"https://[2606:4700::1111]:443/", "", ""},
		{"https://[::ffff:93.184.216.34]/", "", ""},

		// Scheme.
		{"http://example.com/", "must use https", ""},
		{"ftp://example.com/", "must use https", "must use http or https"},
		{"ws://example.com/", "must use https", "must use http or https"},
		{"javascript:alert(1)", "must use https", "must use http or https"},
		{"/relative/path", "must use https", "must use http or https"},
		{"example.com/hook", "must use https", "must use http or https"},
		{"", "must use https", "must use http or https"},

		// Shape.
		{"https:example.com", "must include a host", "must include a host"},
		{"https:///path", "must include a host", "must include a host"},
		{"https://:443/", "must include a host", "must include a host"},
		{"https://user:pw@example.com/", "credentials", "credentials"},
		{"https://user@example.com/", "credentials", "credentials"},
		{"https://@example.com/", "credentials", "credentials"},
		{"https://example.com:0/", "port between 1 and 65535", "port between 1 and 65535"},
		{"https://example.com:65536/", "port between 1 and 65535", "port between 1 and 65535"},
		{"https://exa mple.com/", "not a valid URL", "not a valid URL"},
		{"https://example.com/%zz", "not a valid URL", "not a valid URL"},
		{"https://[127.0.0.1]/", "not a valid URL", "not a valid URL"},
		{"https://" + strings.Repeat("a", MaxURLLen) + ".com/", "at most 2048", "at most 2048"},
		{"https://bücher.de/", "ASCII (xn--) form", "ASCII (xn--) form"},
		{"https://a..b/", "invalid host name", "invalid host name"},
		{"https://.example.com/", "invalid host name", "invalid host name"},
		{"https://exa$mple.com/", "invalid host name", "invalid host name"},
		{"https://" + strings.Repeat("a", 64) + ".com/", "invalid host name", "invalid host name"},

		// localhost.
		{"https://localhost/", "localhost", ""},
		{"https://LOCALHOST/", "localhost", ""},
		{"https://localhost./", "localhost", ""},
		{"https://foo.localhost/", "localhost", ""},
		{"https://Foo.LocalHost.:8443/", "localhost", ""},
		{"http://localhost:8080/", "must use https", ""},

		// IP literals.
		{"https://127.0.0.1/", "loopback", ""},
		{"https://127.0.0.1./", "loopback", ""},
		{"https://10.1.2.3:8443/", "RFC 1918", ""},
		{"https://[::1]/", "loopback", ""},
		{"https://[::ffff:127.0.0.1]/", "loopback", ""},
		{"https://[::ffff:7f00:1]/", "loopback", ""},
		{"https://[::ffff:169.254.169.254]/", "cloud metadata", "cloud metadata"},
		{"https://169.254.169.254/latest/meta-data/", "cloud metadata", "cloud metadata"},
		{"https://100.100.100.200/", "cloud metadata", "cloud metadata"},
		{"https://[fd00:ec2::254]/", "cloud metadata", "cloud metadata"},
		{"https://0.0.0.0/", "0.0.0.0/8", "0.0.0.0/8"},
		{"https://[::]/", "unspecified", "unspecified"},
		{"https://[::127.0.0.1]/", "IPv4-compatible", "IPv4-compatible"},
		{"https://[64:ff9b::7f00:1]/", "NAT64", "NAT64"},
		{"https://[2002:7f00:1::1]/", "6to4", "6to4"},
		{"https://[2001::1]/", "Teredo", "Teredo"},
		{"https://[fe80::1%25eth0]/", "IPv6 zone", "IPv6 zone"},
		{"https://224.0.0.1/", "multicast", "multicast"},

		// Alternate IPv4 spellings: refused whatever they would decode to.
		{"https://2130706433/", "four decimal numbers", "four decimal numbers"},
		{"https://0x7f.1/", "four decimal numbers", "four decimal numbers"},
		{"https://0x7f000001/", "four decimal numbers", "four decimal numbers"},
		{"https://0177.0.0.1/", "four decimal numbers", "four decimal numbers"},
		{"https://127.1/", "four decimal numbers", "four decimal numbers"},
		{"https://0X7F.0.0.1/", "four decimal numbers", "four decimal numbers"},
		{"https://1.2.3.4.5/", "four decimal numbers", "four decimal numbers"},
		{"https://08.8.8.8/", "four decimal numbers", "four decimal numbers"},
		{"https://3627734734/", "four decimal numbers", "four decimal numbers"}, // 216.58.214.206: public, still refused
		{"https://foo.0x/", "four decimal numbers", "four decimal numbers"},

		// Names resolving to refused addresses (the fake resolver answers).
		{"https://internal.example.com/", "must not resolve to a private address (RFC 1918) (10.0.0.5)", ""},
		{"https://mixed.example.com/", "(10.0.0.1)", ""},
		{"https://mixed-meta.example.com/", "cloud metadata address (169.254.169.254)", "cloud metadata"},
		{"https://mapped.example.com/", "loopback", ""},
		{"https://metadata.google.internal/computeMetadata/v1/", "cloud metadata", "cloud metadata"},
		{"https://linklocal.example.com/", "link-local", "link-local"},
		{"https://empty.example.com/", "no addresses", "no addresses"},
		{"https://nxdomain.example.com/", "does not exist", "does not exist"},
	}
	for _, tt := range tests {
		for _, mode := range []struct {
			p    Policy
			want string
		}{{Policy{}, tt.wantDefault}, {Policy{AllowPrivate: true}, tt.wantPrivate}} {
			err := mode.p.CheckURL(context.Background(), tt.url, newFakeResolver())
			if mode.want == "" {
				if err != nil {
					t.Errorf("%+v CheckURL(%q) = %v, want accepted", mode.p, tt.url, err)
				}
				continue
			}
			urlErr, ok := errors.AsType[*URLError](err)
			if !ok {
				t.Errorf("%+v CheckURL(%q) = %v, want a *URLError containing %q", mode.p, tt.url, err, mode.want)
				continue
			}
			if !strings.Contains(urlErr.Reason, mode.want) {
				t.Errorf("%+v CheckURL(%q) reason = %q, want it to contain %q", mode.p, tt.url, urlErr.Reason, mode.want)
			}
			isRefusal := !strings.Contains(tt.url, "nxdomain") && !strings.Contains(tt.url, "empty.example")
			if errors.Is(err, ErrRefused) != isRefusal {
				t.Errorf("%+v CheckURL(%q): errors.Is(err, ErrRefused) = %v, want %v", mode.p, tt.url, !isRefusal, isRefusal)
			}
		}
	}
}

// TestCheckURLLiteralsSkipResolver: IP literals and refused shapes never
// cause a DNS query; names are looked up exactly as written.
func TestCheckURLLiteralsSkipResolver(t *testing.T) {
	r := newFakeResolver()
	for _, u := range []string{"https://93.184.216.34/", "https://[2606:4700::1111]/", "https://127.0.0.1/", "https://0x7f.1/", "https://localhost/", "http://example.com/"} {
		_ = Policy{}.CheckURL(context.Background(), u, r)
	}
	if len(r.asked) != 0 {
		t.Fatalf("resolver asked %v, want no lookups", r.asked)
	}
	if err := (Policy{}).CheckURL(context.Background(), "https://Example.COM./x", r); err != nil {
		t.Fatal(err)
	}
	if len(r.asked) != 1 || r.asked[0] != "Example.COM." {
		t.Fatalf("resolver asked %v, want [Example.COM.]", r.asked)
	}
}

// TestCheckURLNeverEchoesSecrets: a reason carries neither the query string
// nor credentials, even for URLs that fail to parse.
func TestCheckURLNeverEchoesSecrets(t *testing.T) {
	for _, u := range []string{
		"https://10.0.0.1/?token=hunter2",
		"https://internal.example.com/hook?token=hunter2",
		"https://user:hunter2@example.com/",
		"https://example.com/%zz?token=hunter2",
		"ftp://example.com/?token=hunter2",
		"https://0x7f.1/?token=hunter2",
		"https://nxdomain.example.com/?token=hunter2",
	} {
		err := Policy{}.CheckURL(context.Background(), u, newFakeResolver())
		if err == nil {
			t.Fatalf("CheckURL(%q) accepted", u)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("CheckURL(%q) error %q echoes the secret", u, err)
		}
	}
}

func TestCheckURLResolverErrorIsWrapped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The real resolver with a cancelled context fails without touching the
	// network; the cause stays reachable for the caller.
	err := Policy{}.CheckURL(ctx, "https://example.invalid/", nil)
	if _, ok := errors.AsType[*URLError](err); !ok || errors.Is(err, ErrRefused) {
		t.Fatalf("CheckURL with cancelled ctx = %v, want a *URLError that is not a refusal", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("CheckURL with cancelled ctx = %v, want it to wrap context.Canceled", err)
	}
}

func TestCheckURLRealResolverLocalhost(t *testing.T) {
	// localhost comes from /etc/hosts (no network): in private mode the name
	// is resolved and its loopback addresses are allowed.
	if err := (Policy{AllowPrivate: true}).CheckURL(context.Background(), "http://localhost:8080/hook", nil); err != nil {
		t.Fatalf("private CheckURL(localhost) = %v", err)
	}
}

func BenchmarkCheckURL(b *testing.B) {
	r := newFakeResolver()
	b.ReportAllocs()
	for b.Loop() {
		r.asked = r.asked[:0]
		if err := (Policy{}).CheckURL(context.Background(), "https://dual.example.com:8443/hooks/blazelock?x=1", r); err != nil {
			b.Fatal(err)
		}
	}
}
