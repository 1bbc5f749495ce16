package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embeddedNATSStartWithin bounds how long Start tries: a port that was
// just released can take a moment to be free again.
const embeddedNATSStartWithin = 30 * time.Second

// EmbeddedNATS is a nats-server (the version go.mod pins) in this process
// that can be shut down and started again on the same port and store
// directory.
type EmbeddedNATS struct {
	opts *server.Options
	mu   sync.Mutex
	srv  *server.Server
}

// JetStreamOptions are the options of a single JetStream server on
// loopback with its store in storeDir, listening on port
// (server.RANDOM_PORT: a free one). It neither logs nor handles signals:
// the embedding process owns those.
func JetStreamOptions(name, storeDir string, port int) *server.Options {
	return &server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoLog:      true,
		NoSigs:     true,
	}
}

// NewEmbeddedNATS prepares a server with opts; Start runs it. With
// server.RANDOM_PORT the first start picks the port and every later start
// uses it again.
func NewEmbeddedNATS(opts *server.Options) *EmbeddedNATS {
	return &EmbeddedNATS{opts: opts.Clone()}
}

// StartEmbeddedNATS is NewEmbeddedNATS and Start.
func StartEmbeddedNATS(ctx context.Context, opts *server.Options) (*EmbeddedNATS, error) {
	n := NewEmbeddedNATS(opts)
	return n, n.Start(ctx)
}

// Start runs the server and waits until it accepts connections. ctx bounds
// the wait, not the server's life.
func (n *EmbeddedNATS) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return errors.New("nats-server is already running")
	}
	var s *server.Server
	err := Poll(ctx, embeddedNATSStartWithin, 100*time.Millisecond, fmt.Sprintf("nats-server to start on port %d", n.opts.Port), func() (bool, error) {
		var err error
		// NewServer fills defaults into the options it is given: each
		// server gets a copy.
		s, err = server.NewServer(n.opts.Clone())
		if err != nil {
			return false, fmt.Errorf("create nats-server: %w", err)
		}
		go s.Start()
		if s.ReadyForConnections(5 * time.Second) {
			return true, nil
		}
		s.Shutdown()
		s.WaitForShutdown()
		return false, nil
	})
	if err != nil {
		return err
	}
	if n.opts.Port == server.RANDOM_PORT {
		n.opts.Port = s.Addr().(*net.TCPAddr).Port
	}
	n.srv = s
	return nil
}

// Shutdown stops the server (cleanly: it is not a crash) and waits until
// it is down. A stopped server is left alone.
func (n *EmbeddedNATS) Shutdown() {
	n.mu.Lock()
	s := n.srv
	n.srv = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Server is the running server, or nil.
func (n *EmbeddedNATS) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// URL is the client URL, the same across restarts (once started).
func (n *EmbeddedNATS) URL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("nats://%s:%d", n.opts.Host, n.opts.Port)
}

// StoreDir is where JetStream stores, the same across restarts.
func (n *EmbeddedNATS) StoreDir() string { return n.opts.StoreDir }
