package target

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckAddr(t *testing.T) {
	// want: "" = allowed, otherwise a substring of the refusal class.
	tests := []struct {
		addr        string
		wantDefault string
		wantPrivate string
	}{
		// Public addresses (never dialled by these tests).
		{"93.184.216.34", "", ""},
		{"8.8.8.8", "", ""},
		{"1.1.1.1", "", ""},
		{"172.32.0.1", "", ""},      // just above 172.16/12
		{"100.128.0.1", "", ""},     // just above CGNAT
		{"192.169.0.1", "", ""},     // just above 192.168/16
		{"223.255.255.255", "", ""}, // just below multicast
		{"2606:4700::1111", "", ""},
		{"2001:4860:4860::8888", "", ""},
		{"2a00:1450:4001::1", "", ""},
		{"::ffff:8.8.8.8", "", ""},   // IPv4-mapped public
		{"64:ff9b::808:808", "", ""}, // NAT64 of 8.8.8.8
		{"2002:808:808::1", "", ""},  // 6to4 of 8.8.8.8
		{"2001:200::1", "", ""},      // just above 2001::/23

		// Opened by AllowPrivate.
		{"127.0.0.1", "loopback", ""},
		{"127.255.255.254", "loopback", ""},
		{"::1", "loopback", ""},
		{"::ffff:127.0.0.1", "loopback", ""}, // mapped: the kernel connects to 127.0.0.1
		{"10.0.0.1", "RFC 1918", ""},
		{"172.16.0.1", "RFC 1918", ""},
		{"172.31.255.255", "RFC 1918", ""},
		{"192.168.1.1", "RFC 1918", ""},
		{"::ffff:10.1.2.3", "RFC 1918", ""},
		{"100.64.0.1", "carrier-grade NAT", ""},
		{"100.127.255.255", "carrier-grade NAT", ""},
		{"fc00::1", "RFC 4193", ""},
		{"fd12:3456:789a::1", "RFC 4193", ""},

		// Cloud metadata: refused in every mode.
		{"169.254.169.254", "cloud metadata", "cloud metadata"},
		{"::ffff:169.254.169.254", "cloud metadata", "cloud metadata"},
		{"169.254.170.2", "cloud metadata", "cloud metadata"},
		{"100.100.100.200", "cloud metadata", "cloud metadata"}, // inside CGNAT, which private mode opens
		{"168.63.129.16", "cloud metadata", "cloud metadata"},   // public range
		{"192.0.0.192", "cloud metadata", "cloud metadata"},
		{"fd00:ec2::254", "cloud metadata", "cloud metadata"}, // inside ULA, which private mode opens
		{"fd00:ec2::23", "cloud metadata", "cloud metadata"},
		{"fd20:ce::254", "cloud metadata", "cloud metadata"},
		{"64:ff9b::a9fe:a9fe", "cloud metadata", "cloud metadata"}, // NAT64 of 169.254.169.254
		{"2002:a9fe:a9fe::", "cloud metadata", "cloud metadata"},   // 6to4 of 169.254.169.254

		// Refused in every mode.
		{"0.0.0.0", "0.0.0.0/8", "0.0.0.0/8"},
		{"0.1.2.3", "0.0.0.0/8", "0.0.0.0/8"},
		{"::", "unspecified", "unspecified"},
		{"::ffff:0.0.0.0", "0.0.0.0/8", "0.0.0.0/8"},
		{"169.254.1.1", "link-local", "link-local"},
		{"fe80::1", "link-local", "link-local"},
		{"fe80::1%eth0", "link-local", "link-local"},
		{"224.0.0.1", "multicast", "multicast"},
		{"239.255.255.250", "multicast", "multicast"},
		{"ff02::1", "multicast", "multicast"},
		{"255.255.255.255", "broadcast", "broadcast"},
		{"240.0.0.1", "reserved", "reserved"},
		{"192.0.0.8", "IETF protocol", "IETF protocol"},
		{"192.0.2.1", "TEST-NET-1", "TEST-NET-1"},
		{"198.51.100.7", "TEST-NET-2", "TEST-NET-2"},
		{"203.0.113.9", "TEST-NET-3", "TEST-NET-3"},
		{"198.18.0.1", "benchmarking", "benchmarking"},
		{"198.19.255.255", "benchmarking", "benchmarking"},
		{"192.88.99.1", "6to4 relay", "6to4 relay"},
		{"2001:db8::1", "documentation", "documentation"},
		{"3fff::1", "documentation", "documentation"},
		{"::127.0.0.1", "IPv4-compatible", "IPv4-compatible"},
		{"::8.8.8.8", "IPv4-compatible", "IPv4-compatible"},
		{"64:ff9b::7f00:1", "NAT64 address embedding 127.0.0.1, a loopback", "NAT64 address embedding 127.0.0.1"},
		{"64:ff9b::a00:1", "NAT64 address embedding 10.0.0.1", "NAT64 address embedding 10.0.0.1"},
		{"64:ff9b:1::808:808", "local-use NAT64", "local-use NAT64"},
		{"2002:7f00:1::1", "6to4 address embedding 127.0.0.1", "6to4 address embedding 127.0.0.1"},
		{"2002:c0a8:101::1", "6to4 address embedding 192.168.1.1", "6to4 address embedding 192.168.1.1"},
		{"2001::1", "Teredo", "Teredo"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo", "Teredo"},
		{"2001:2::1", "IETF protocol", "IETF protocol"},
		{"fec0::1", "site-local", "site-local"},
		{"100::1", "not a global unicast", "not a global unicast"}, // discard-only
		{"4000::1", "not a global unicast", "not a global unicast"},
		{"5f00::1", "not a global unicast", "not a global unicast"},
		{"::ffff:0:7f00:1", "not a global unicast", "not a global unicast"}, // SIIT IPv4-translated
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.addr)
		for _, mode := range []struct {
			p    Policy
			want string
		}{{Policy{}, tt.wantDefault}, {Policy{AllowPrivate: true}, tt.wantPrivate}} {
			err := mode.p.CheckAddr(ip)
			if mode.want == "" {
				if err != nil {
					t.Errorf("%+v CheckAddr(%s) = %v, want allowed", mode.p, tt.addr, err)
				}
				continue
			}
			addrErr, ok := errors.AsType[*AddrError](err)
			if !ok {
				t.Errorf("%+v CheckAddr(%s) = %v, want an *AddrError containing %q", mode.p, tt.addr, err, mode.want)
				continue
			}
			if !strings.Contains(addrErr.Class, mode.want) || !errors.Is(err, ErrRefused) {
				t.Errorf("%+v CheckAddr(%s) = %v, want class containing %q, matching ErrRefused", mode.p, tt.addr, err, mode.want)
			}
		}
	}
}

func TestCheckAddrInvalid(t *testing.T) {
	if err := (Policy{AllowPrivate: true}).CheckAddr(netip.Addr{}); !errors.Is(err, ErrRefused) {
		t.Fatalf("CheckAddr(zero Addr) = %v, want refused", err)
	}
}

// TestCheckAddrPrivateIsMonotonic: whatever the default policy allows, the
// private policy allows too.
func TestCheckAddrPrivateIsMonotonic(t *testing.T) {
	for i := range 1 << 16 {
		// Walk the /16s of IPv4 and a spread of IPv6 first hextets.
		v4 := netip.AddrFrom4([4]byte{byte(i >> 8), byte(i), 1, 1})
		v6 := netip.AddrFrom16([16]byte{byte(i >> 8), byte(i), 0, 1, 15: 1})
		for _, ip := range []netip.Addr{v4, v6} {
			if (Policy{}).CheckAddr(ip) == nil && (Policy{AllowPrivate: true}).CheckAddr(ip) != nil {
				t.Fatalf("%s allowed by default but refused in private mode", ip)
			}
		}
	}
}

func BenchmarkCheckAddr(b *testing.B) {
	ips := []netip.Addr{netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("2606:4700::1111"), netip.MustParseAddr("127.0.0.1")}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = Policy{}.CheckAddr(ips[i%len(ips)])
	}
}
