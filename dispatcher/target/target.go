// Package target decides which webhook URLs and IP addresses the dispatcher
// may deliver to (docs/contract.md, URL rules): https only, no credentials,
// not localhost, and no loopback, private, link-local, CGNAT, multicast,
// unspecified, cloud metadata or other special-purpose address.
//
// The rules run twice: CheckURL when a configuration is saved (so the
// customer gets a 422 with a reason), and DialControl on every connection the
// delivery transport opens, against the concrete IP being connected to. The
// second check is what defeats DNS rebinding: a name that resolved to a public
// address when the config was saved may resolve to 127.0.0.1 at delivery
// time, and only the dialer sees that.
package target

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Policy holds the operator's target rules. The zero value is the production
// default.
type Policy struct {
	// AllowPrivate mirrors DISPATCHER_ALLOW_PRIVATE_TARGETS, for local
	// development and tests only: it allows the http scheme, localhost
	// names, and loopback, RFC 1918, RFC 4193 and CGNAT addresses. It never
	// relaxes the other rules: credentials in the URL, other schemes, an
	// empty host, link-local, multicast, unspecified, reserved and
	// documentation addresses, and cloud metadata endpoints stay refused,
	// because no development setup needs them and a developer's cloud VM
	// would otherwise leak its instance credentials.
	AllowPrivate bool
}

// Resolver looks up the addresses of a host name. *net.Resolver (and so
// net.DefaultResolver) satisfies it; tests inject fixed answers.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// ErrRefused is matched by errors.Is for every refusal by the policy: an
// *AddrError (including one returned at connect time through net and
// net/http wrappers) and a *URLError for a URL rule. The delivery engine
// logs such failures with the error class "ssrf_refused". A URL whose host
// could not be resolved is not a refusal and does not match.
var ErrRefused = errors.New("target refused by policy")

// MaxURLLen bounds a webhook URL. It is stored with the config and sent on
// every attempt; real endpoints are far shorter, and browsers' practical
// limit is about the same.
const MaxURLLen = 2048

// URLError is a webhook URL that CheckURL does not accept.
type URLError struct {
	// Reason is a message fit for the "url" field of a 422 response, e.g.
	// "must use https". It never contains the query string or credentials
	// of the URL.
	Reason string
	// Err is ErrRefused, an *AddrError, or the resolver's error when the
	// host could not be resolved.
	Err error
}

func (e *URLError) Error() string { return "webhook url " + e.Reason }

func (e *URLError) Unwrap() error { return e.Err }

func refused(reason string) *URLError { return &URLError{Reason: reason, Err: ErrRefused} }

// CheckURL reports whether raw is an acceptable webhook URL: nil, or a
// *URLError. It parses raw; requires https (or http with AllowPrivate), a
// host, no user info and a port in 1..65535 if one is given; refuses
// localhost and *.localhost (unless AllowPrivate), IPv6 zones, IPv4 hosts
// written in anything but canonical dotted-quad form (2130706433, 0x7f.1,
// 0177.0.0.1, 127.1: resolvers built on inet_aton read them as addresses,
// so they are refused rather than guessed at), and non-ASCII names (use the
// xn-- form). An IP literal is checked with CheckAddr; a name is resolved
// with r (net.DefaultResolver when nil) and every address it resolves to
// must pass CheckAddr: one refused address refuses the URL.
func (p Policy) CheckURL(ctx context.Context, raw string, r Resolver) error {
	if len(raw) > MaxURLLen {
		return refused("must be at most " + strconv.Itoa(MaxURLLen) + " characters long")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL, query included: do not wrap it.
		return refused("is not a valid URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.AllowPrivate:
	case p.AllowPrivate:
		return refused("must use http or https")
	default:
		return refused("must use https")
	}
	if u.Opaque != "" || u.Host == "" {
		return refused("must include a host")
	}
	if u.User != nil {
		return refused("must not contain credentials")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return refused("must use a port between 1 and 65535")
		}
	}
	host := u.Hostname()
	if host == "" {
		return refused("must include a host")
	}

	if strings.HasPrefix(u.Host, "[") { // IPv6 literal; url.Parse checked the brackets
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return refused("has an invalid IPv6 address")
		}
		if ip.Zone() != "" {
			return refused("must not contain an IPv6 zone")
		}
		return p.checkLiteral(ip)
	}

	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if ip, err := netip.ParseAddr(name); err == nil && ip.Is4() {
		return p.checkLiteral(ip)
	}
	if reason := checkName(name); reason != "" {
		return refused(reason)
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		if !p.AllowPrivate {
			return refused("must not point at localhost")
		}
	}

	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupIPAddr(ctx, host)
	if err != nil {
		if dnsErr, ok := errors.AsType[*net.DNSError](err); ok && dnsErr.IsNotFound {
			return &URLError{Reason: "has a host that does not exist", Err: err}
		}
		return &URLError{Reason: "has a host that could not be resolved", Err: err}
	}
	if len(addrs) == 0 {
		return &URLError{Reason: "has a host with no addresses", Err: &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}}
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return refused("has a host that resolves to an invalid address")
		}
		if err := p.CheckAddr(ip.WithZone(a.Zone)); err != nil {
			addrErr := err.(*AddrError)
			return &URLError{Reason: "must not resolve to " + addrErr.Class + " (" + addrErr.Addr.String() + ")", Err: err}
		}
	}
	return nil
}

// checkLiteral applies CheckAddr to an IP written in the URL.
func (p Policy) checkLiteral(ip netip.Addr) error {
	if err := p.CheckAddr(ip); err != nil {
		return &URLError{Reason: "must not point at " + err.(*AddrError).Class, Err: err}
	}
	return nil
}

// checkName validates a lower-cased host name without its trailing dot and
// returns why it is unacceptable, or "".
func checkName(name string) string {
	if len(name) > 253 {
		return "has a host name longer than 253 characters"
	}
	labels := strings.Split(name, ".")
	// WHATWG URL rule: a host whose last label is numeric (decimal, or 0x
	// hex) is an IPv4 address. Canonical dotted quads were accepted above;
	// anything else numeric is an alternate spelling of an address.
	if last := labels[len(labels)-1]; isNumericLabel(last) {
		return "must write an IPv4 address as four decimal numbers (a.b.c.d)"
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "has an invalid host name"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case c >= 0x80:
				return "must use the ASCII (xn--) form of an internationalised host name"
			default:
				return "has an invalid host name"
			}
		}
	}
	return ""
}

// isNumericLabel reports whether l is all decimal digits, or "0x" followed
// by hex digits (possibly none), the forms inet_aton accepts.
func isNumericLabel(l string) bool {
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		for i := 2; i < len(l); i++ {
			if !strings.ContainsRune("0123456789abcdefABCDEF", rune(l[i])) {
				return false
			}
		}
		return true
	}
	if l == "" {
		return false
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}
