package natsinfra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MinServerVersion is the oldest nats-server the dispatcher supports: it
// needs message schedules (2.12) for durable retries. Debian's 2.9 is refused.
const MinServerVersion = "2.12.0"

// CheckServer verifies that the connected server is new enough and has
// JetStream enabled, so a wrong server gives one clear start-up error
// instead of silently ignored options later.
func CheckServer(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error {
	version := nc.ConnectedServerVersion()
	if !VersionAtLeast(version, MinServerVersion) {
		return fmt.Errorf("NATS server at %s is version %s; the dispatcher needs nats-server %s or newer (JetStream message schedules)",
			nc.ConnectedUrlRedacted(), version, MinServerVersion)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("NATS server at %s does not have JetStream enabled (start it with -js)", nc.ConnectedUrlRedacted())
		}
		return fmt.Errorf("query JetStream at %s: %w", nc.ConnectedUrlRedacted(), err)
	}
	return nil
}

// VersionAtLeast compares dotted versions like "2.15.2" (a "-beta" suffix is ignored).
func VersionAtLeast(have, want string) bool {
	parse := func(v string) [3]int {
		var out [3]int
		v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "-")
		for i, part := range strings.SplitN(v, ".", 3) {
			out[i], _ = strconv.Atoi(part)
		}
		return out
	}
	h, w := parse(have), parse(want)
	for i := range h {
		if h[i] != w[i] {
			return h[i] > w[i]
		}
	}
	return true
}

// EmbeddedOptions configure the in-process nats-server of the local default.
type EmbeddedOptions struct {
	// StoreDir is where nats-server creates its "jetstream" directory.
	StoreDir string
	// Listen is host:port for the client listener (DISPATCHER_NATS_LISTEN).
	Listen string
	// ListenExplicit is true when the operator set Listen: a busy explicit
	// address is an error, while a busy default falls back to a free port.
	ListenExplicit bool
	Logger         *slog.Logger
}

// StartEmbedded runs a JetStream-enabled nats-server in this process. The
// caller owns signals (NoSigs) and must call Shutdown.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	host, portText, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("DISPATCHER_NATS_LISTEN %q is not host:port: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("DISPATCHER_NATS_LISTEN %q has no numeric port", o.Listen)
	}
	switch {
	case port == 0:
		port = server.RANDOM_PORT // nats-server reads 0 as "the default 4222"
	case !portFree(host, port):
		if o.ListenExplicit {
			return nil, fmt.Errorf("DISPATCHER_NATS_LISTEN %s is already in use: choose a free address", o.Listen)
		}
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "blazelock-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      o.Logger == nil,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("create embedded nats-server: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(slogAdapter{o.Logger.With("component", "nats-server")}, false, false, false)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats-server did not become ready within 30s")
	}
	return s, nil
}

func portFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// slogAdapter routes nats-server's logger onto slog. Notices (its start-up
// banner among them) go to debug: the dispatcher logs what matters itself.
// Fatalf logs at error level and does not exit: the embedding process
// decides what is fatal.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
