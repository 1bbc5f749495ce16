package testinfra

import (
	"context"
	"net"
	"strings"
)

// Resolver answers host lookups from a fixed table, as DNS would (names
// in lower case); unknown names do not exist. Tests that check webhook
// URLs use it so that nothing reaches the network.
type Resolver map[string][]string

// LookupIPAddr implements target.Resolver.
func (r Resolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	ips, ok := r[strings.ToLower(host)]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]net.IPAddr, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.IPAddr{IP: net.ParseIP(ip)})
	}
	return out, nil
}
