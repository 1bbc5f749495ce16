package target

import (
	"net/netip"
)

// AddrError reports an IP address the policy refuses. It is what CheckAddr
// returns, what DialControl returns at connect time (wrapped by net and
// net/http in *net.OpError and *url.Error, which unwrap to it), and what a
// URLError wraps when a host resolves to a refused address.
// errors.Is(err, ErrRefused) is true for it.
type AddrError struct {
	Addr netip.Addr
	// Class names the refused range as a noun phrase, e.g. "a loopback
	// address", "a cloud metadata address".
	Class string
}

func (e *AddrError) Error() string {
	return "target address " + e.Addr.String() + " is refused: it is " + e.Class
}

// Is makes errors.Is(err, ErrRefused) recognise every refused address.
func (e *AddrError) Is(target error) bool { return target == ErrRefused }

// rangeRule is one refused block of addresses.
type rangeRule struct {
	prefix netip.Prefix
	class  string
	// private marks blocks that Policy.AllowPrivate opens: loopback and
	// private-use space, which local development and tests legitimately
	// target. Everything else is refused in every mode.
	private bool
}

// The classification tables below are constant data, built once; order
// matters (first match wins), so specific entries come before the blocks
// that contain them.
var (
	// cloudMetadata lists instance-metadata and platform endpoints. They are
	// refused even with AllowPrivate: a dispatcher running in a cloud VM
	// must never be able to hand its credentials to a webhook receiver, and
	// no development setup needs to target them. Several also fall in blocks
	// refused anyway (link-local); they are listed to give the precise reason.
	cloudMetadata = []netip.Prefix{
		netip.MustParsePrefix("169.254.169.254/32"), // AWS, GCP, Azure, OCI, DigitalOcean, OpenStack, Hetzner
		netip.MustParsePrefix("169.254.170.2/32"),   // AWS ECS task metadata
		netip.MustParsePrefix("169.254.170.23/32"),  // AWS EKS Pod Identity agent
		netip.MustParsePrefix("169.254.0.23/32"),    // Tencent Cloud
		netip.MustParsePrefix("169.254.42.42/32"),   // Scaleway
		netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud: inside CGNAT, which AllowPrivate opens
		netip.MustParsePrefix("168.63.129.16/32"),   // Azure WireServer/DNS: a public-range address, platform-only
		netip.MustParsePrefix("192.0.0.192/32"),     // Oracle Cloud (Classic)
		netip.MustParsePrefix("fd00:ec2::/64"),      // AWS IPv6 IMDS (::254), DNS (::253), NTP (::123), EKS Pod Identity (::23)
		netip.MustParsePrefix("fd20:ce::254/128"),   // GCP IPv6 metadata server
		netip.MustParsePrefix("fd00:42::42/128"),    // Scaleway IPv6 metadata
	}

	rules4 = []rangeRule{
		{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified or \"this network\" address (0.0.0.0/8)", false}, // Linux connects 0.0.0.0 to the local host
		{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address", true},
		{netip.MustParsePrefix("10.0.0.0/8"), "a private address (RFC 1918)", true},
		{netip.MustParsePrefix("172.16.0.0/12"), "a private address (RFC 1918)", true},
		{netip.MustParsePrefix("192.168.0.0/16"), "a private address (RFC 1918)", true},
		{netip.MustParsePrefix("100.64.0.0/10"), "a shared carrier-grade NAT address (100.64.0.0/10)", true},
		{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address", false},
		{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol assignment address (192.0.0.0/24)", false},
		{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address (TEST-NET-1)", false},
		{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address (TEST-NET-2)", false},
		{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address (TEST-NET-3)", false},
		{netip.MustParsePrefix("192.88.99.0/24"), "a deprecated 6to4 relay address (192.88.99.0/24)", false},
		{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address (198.18.0.0/15)", false},
		{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address", false},
		{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast address", false},
		{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address (240.0.0.0/4)", false},
	}

	// IPv6 is allow-listed: only global unicast (2000::/3) can be a target,
	// minus the special blocks inside it. Everything outside 2000::/3 that
	// is not handled first (IPv4-mapped, NAT64, ULA in private mode) is
	// refused; rules6 only names the common cases for a better message.
	rules6 = []rangeRule{
		{netip.MustParsePrefix("::/128"), "the unspecified address", false},
		{netip.MustParsePrefix("::1/128"), "a loopback address", true},
		{netip.MustParsePrefix("::/96"), "a deprecated IPv4-compatible IPv6 address (::/96)", false},
		{netip.MustParsePrefix("64:ff9b:1::/48"), "a local-use NAT64 address (64:ff9b:1::/48)", false},
		{netip.MustParsePrefix("fc00::/7"), "a private address (RFC 4193 unique local)", true},
		{netip.MustParsePrefix("fe80::/10"), "a link-local address", false},
		{netip.MustParsePrefix("fec0::/10"), "a deprecated site-local address", false},
		{netip.MustParsePrefix("ff00::/8"), "a multicast address", false},
		{netip.MustParsePrefix("2001::/32"), "a Teredo tunnel address (2001::/32)", false}, // carries an arbitrary, obfuscated IPv4; Teredo is defunct
		{netip.MustParsePrefix("2001::/23"), "an IETF protocol assignment address (2001::/23)", false},
		{netip.MustParsePrefix("2001:db8::/32"), "a documentation address (2001:db8::/32)", false},
		{netip.MustParsePrefix("3fff::/20"), "a documentation address (3fff::/20)", false},
	}

	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	nat64          = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052 well-known prefix
	sixToFour      = netip.MustParsePrefix("2002::/16")    // RFC 3056
)

// CheckAddr reports whether a webhook may connect to ip: nil when allowed,
// otherwise an *AddrError naming the refused range.
//
// Refused in every mode: unspecified and 0.0.0.0/8, link-local, multicast,
// broadcast, the reserved 240.0.0.0/4, documentation, benchmarking and other
// IETF special-purpose blocks, cloud metadata endpoints, and every IPv6
// address outside global unicast 2000::/3. Refused unless AllowPrivate:
// loopback, RFC 1918, RFC 4193 (fc00::/7) and CGNAT 100.64.0.0/10.
//
// IPv6 encodings of IPv4 are unwrapped: IPv4-mapped (::ffff:a.b.c.d) is
// checked exactly like the IPv4 address the kernel will connect to; NAT64
// (64:ff9b::/96) and 6to4 (2002::/16) embed an IPv4 that a translator or
// relay reaches, which must pass the strict rules even with AllowPrivate
// (RFC 6052 forbids non-global addresses behind the well-known prefix).
// IPv4-compatible (::/96, deprecated), local-use NAT64 (64:ff9b:1::/48) and
// Teredo (2001::/32, defunct) are refused outright. A zone is ignored.
func (p Policy) CheckAddr(ip netip.Addr) error {
	ip = ip.WithZone("")
	if class := p.refusal(ip); class != "" {
		return &AddrError{Addr: ip, Class: class}
	}
	return nil
}

// refusal returns the class of a refused address, or "" when it is allowed.
func (p Policy) refusal(ip netip.Addr) string {
	if !ip.IsValid() {
		return "not a valid IP address"
	}
	if ip.Is4In6() {
		ip = ip.Unmap()
	}
	for _, m := range cloudMetadata {
		if m.Contains(ip) {
			return "a cloud metadata address"
		}
	}
	if ip.Is4() {
		class, _ := p.match(rules4, ip)
		return class
	}
	if nat64.Contains(ip) {
		return embedded("NAT64", v4At(ip, 12))
	}
	if sixToFour.Contains(ip) {
		return embedded("6to4", v4At(ip, 2))
	}
	if class, matched := p.match(rules6, ip); matched {
		return class
	}
	if !globalUnicast6.Contains(ip) {
		return "not a global unicast IPv6 address"
	}
	return ""
}

// match finds the first rule containing ip and returns its class, or "" when
// it is a private rule and the policy allows private targets. matched is
// false when no rule contains ip.
func (p Policy) match(rules []rangeRule, ip netip.Addr) (class string, matched bool) {
	for _, r := range rules {
		if r.prefix.Contains(ip) {
			if r.private && p.AllowPrivate {
				return "", true
			}
			return r.class, true
		}
	}
	return "", false
}

// embedded checks the IPv4 address inside a translation or tunnel prefix
// against the strict (default) policy: the translator or relay, not this
// host, decides where it goes, so private mode does not apply.
func embedded(mechanism string, v4 netip.Addr) string {
	if class := (Policy{}).refusal(v4); class != "" {
		return "a " + mechanism + " address embedding " + v4.String() + ", " + class
	}
	return ""
}

// v4At returns the IPv4 address stored at byte offset off of an IPv6 address.
func v4At(ip netip.Addr, off int) netip.Addr {
	b := ip.As16()
	return netip.AddrFrom4([4]byte(b[off : off+4]))
}
