package target

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// DialControl is a net.Dialer.Control hook: it runs after the name has been
// resolved, for each address the dialer is about to connect to, and refuses
// the connection when CheckAddr refuses that address. The error is an
// *AddrError (or, for an address it cannot parse, an error wrapping
// ErrRefused); net.Dialer and net/http wrap it in *net.OpError and
// *url.Error, so errors.Is(err, ErrRefused) and errors.As(err, **AddrError)
// work on what an http.Client returns.
//
// When a name has several addresses, the dialer moves on to the next after a
// refusal, so a connection only ever reaches an allowed address.
func (p Policy) DialControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Not an IP endpoint (a unix socket, say): fail closed.
		return fmt.Errorf("%w: cannot check %s address %q", ErrRefused, network, address)
	}
	return p.CheckAddr(ap.Addr())
}

// NewDialer returns a dialer that applies p to every connection, for
// http.Transport.DialContext. The transport must not use a proxy
// (Transport.Proxy nil): through a proxy, the dialer would only see the
// proxy's address.
func NewDialer(p Policy, dialTimeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: dialTimeout, Control: p.DialControl}
}
