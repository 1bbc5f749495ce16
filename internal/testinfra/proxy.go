package testinfra

import (
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on a loopback port that can cut the link it
// carries, as a network partition would, and heal it again. Tests put it
// between two servers (NATS routes, Redis replication) to isolate one of
// them without touching the processes.
//
// While cut, bytes already in flight stay where they are: each direction
// stops forwarding (nothing is read beyond the chunk in hand, so the
// kernel buffers fill and the sender's writes eventually block, like TCP
// retransmitting into a dead link), nothing is lost, and a connection
// either end closes is closed on the other side only once healed. New
// connections are refused (accepted and closed at once), so servers see
// their reconnect attempts fail. Heal resumes the stalled connections in
// order, with every byte, as TCP would after a short partition.
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu     sync.Mutex
	cut    bool
	healed chan struct{} // closed while the link is up
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// StartProxy listens on a free loopback port and forwards every connection
// to target. It is closed at cleanup.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testinfra: proxy listen: %v", err)
	}
	p := &Proxy{t: t, ln: ln, target: target, healed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.healed)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is host:port of the proxy's listener.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut stops the link: see Proxy.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		p.cut = true
		p.healed = make(chan struct{})
	}
}

// Heal restores the link.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		p.cut = false
		close(p.healed)
	}
}

// gate returns a channel that is closed while the link is up.
func (p *Proxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.healed
}

// Close stops the listener and drops every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	if p.cut {
		p.cut = false
		close(p.healed) // release the stalled copies
	}
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		if !p.track(in) || !p.track(out) {
			_ = in.Close()
			_ = out.Close()
			return
		}
		p.wg.Add(2)
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

// pipe copies src to dst, holding each chunk while the link is cut. When
// src ends, dst is closed (once the link is up).
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer func() {
		<-p.gate()
		_ = dst.Close()
		_ = src.Close()
		p.untrack(dst)
		p.untrack(src)
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, a reset or the proxy closing: pass it on
		}
	}
}
