// Command subscriber runs the reference Blazelock webhook receiver (package
// subscriber/receiver) as a program: for docker-compose, demos and load tests.
//
//	go run ./subscriber -secret 0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01=whsec_…
//
// See subscriber/README.md for the flags, the environment, the endpoints and
// the fault modes.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/blazelock/webhooks/subscriber/receiver"
	"github.com/blazelock/webhooks/subscriber/verify"
)

const defaultAddr = "127.0.0.1:9000"

// shutdownTimeout bounds the graceful stop: in-flight requests get this long
// to finish after SIGTERM (hung and delayed ones are released at once).
const shutdownTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "subscriber:", err)
		os.Exit(1)
	}
}

// options is the parsed command line and environment.
type options struct {
	addr      string
	secrets   map[string]string
	cfg       receiver.Config
	logFormat string
	logLevel  slog.Level
}

// secretFlag collects repeated -secret id=whsec_… flags.
type secretFlag struct{ pairs []string }

func (f *secretFlag) String() string     { return fmt.Sprintf("%d secret(s)", len(f.pairs)) }
func (f *secretFlag) Set(v string) error { f.pairs = append(f.pairs, v); return nil }

// parseOptions reads flags and environment. Secrets are merged from
// -secrets-file (or SUBSCRIBER_SECRETS_FILE), then SUBSCRIBER_SECRETS, then
// -secret flags; a later source wins for the same integration id.
func parseOptions(args []string, getenv func(string) string, output io.Writer) (*options, error) {
	fs := flag.NewFlagSet("subscriber", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: subscriber [flags]\n\nThe reference Blazelock webhook receiver. Flags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nEnvironment: SUBSCRIBER_ADDR, SUBSCRIBER_SECRETS=\"id=secret,id2=secret2\", SUBSCRIBER_SECRETS_FILE.\n")
	}
	addr := getenv("SUBSCRIBER_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	o := &options{}
	var secrets secretFlag
	var secretsFile, logLevel string
	var delay time.Duration
	fs.StringVar(&o.addr, "addr", addr, "listen address (env SUBSCRIBER_ADDR)")
	fs.Var(&secrets, "secret", "integration `id=whsec_…` to accept; repeatable")
	fs.StringVar(&secretsFile, "secrets-file", getenv("SUBSCRIBER_SECRETS_FILE"), "`path` of a file with one id=secret per line; # comments (env SUBSCRIBER_SECRETS_FILE)")
	fs.DurationVar(&o.cfg.Tolerance, "tolerance", verify.DefaultTolerance, "accepted timestamp distance, either direction")
	fs.Int64Var(&o.cfg.MaxBodyBytes, "max-body-bytes", verify.DefaultMaxBodyBytes, "largest accepted body; larger gets 413")
	fs.DurationVar(&o.cfg.MaxHang, "max-hang", receiver.DefaultMaxHang, "longest a -hang fault holds a connection")
	fs.IntVar(&o.cfg.Faults.Status, "status", 0, "fault: answer this status (a 2xx counts as success)")
	fs.IntVar(&o.cfg.Faults.FailFirst, "fail-first", 0, "fault: fail only the first N attempts of each event, then accept")
	fs.DurationVar(&delay, "delay", 0, "fault: delay every webhook response by this long")
	fs.BoolVar(&o.cfg.Faults.Hang, "hang", false, "fault: hold the connection without answering until the client gives up or -max-hang")
	fs.BoolVar(&o.cfg.Faults.Reset, "reset", false, "fault: reset the connection (TCP RST) instead of answering")
	fs.IntVar(&o.cfg.Faults.RetryAfter, "retry-after", 0, "fault: answer 429 (or -status) with Retry-After: `seconds`")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info (one line per webhook), warn (refused ones only), error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.cfg.Faults.Delay = receiver.Duration(delay)

	var problems []error
	if err := o.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		problems = append(problems, fmt.Errorf("-log-level: %w", err))
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		problems = append(problems, fmt.Errorf("-log-format %q: want text or json", o.logFormat))
	}
	if err := o.cfg.Faults.Validate(); err != nil {
		problems = append(problems, fmt.Errorf("faults: %w", err))
	}
	o.secrets = make(map[string]string)
	if secretsFile != "" {
		if err := readSecretsFile(secretsFile, o.secrets); err != nil {
			problems = append(problems, err)
		}
	}
	if env := getenv("SUBSCRIBER_SECRETS"); env != "" {
		for i, pair := range strings.Split(env, ",") {
			if err := addSecret(o.secrets, pair); err != nil {
				problems = append(problems, fmt.Errorf("SUBSCRIBER_SECRETS entry %d: %w", i+1, err))
			}
		}
	}
	for _, pair := range secrets.pairs {
		if err := addSecret(o.secrets, pair); err != nil {
			problems = append(problems, fmt.Errorf("-secret: %w", err))
		}
	}
	if len(o.secrets) == 0 && len(problems) == 0 {
		problems = append(problems, errors.New("no secrets: give -secret id=whsec_…, SUBSCRIBER_SECRETS or -secrets-file"))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	o.cfg.Secrets = o.secrets
	return o, nil
}

// addSecret parses "id=secret" (split at the first "="; whitespace around
// either part is trimmed). The error never repeats the secret.
func addSecret(dst map[string]string, pair string) error {
	id, secret, ok := strings.Cut(strings.TrimSpace(pair), "=")
	id, secret = strings.TrimSpace(id), strings.TrimSpace(secret)
	if !ok || id == "" || secret == "" {
		return fmt.Errorf("want id=secret, got an entry for %q", id)
	}
	dst[id] = secret
	return nil
}

func readSecretsFile(path string, dst map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read secrets file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var problems []error
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := addSecret(dst, line); err != nil {
			problems = append(problems, fmt.Errorf("%s line %d: %w", path, n, err))
		}
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, fmt.Errorf("read secrets file: %w", err))
	}
	return errors.Join(problems...)
}

// run serves until ctx is cancelled. ready, when set, is called with the
// bound address once the listener is open (tests listen on port 0).
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready func(addr string)) error {
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	var handler slog.Handler
	handlerOpts := &slog.HandlerOptions{Level: o.logLevel}
	if o.logFormat == "json" {
		handler = slog.NewJSONHandler(stderr, handlerOpts)
	} else {
		handler = slog.NewTextHandler(stderr, handlerOpts)
	}
	logger := slog.New(handler)

	o.cfg.Logger = logger
	// The program has no route that lists arrivals, so keeping them would
	// only grow memory; counts, de-duplication and latency are kept.
	o.cfg.DiscardArrivals = true
	rc, err := receiver.New(o.cfg)
	if err != nil {
		return err
	}
	defer rc.Close()

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	srv := &http.Server{
		Handler:           rc,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(handler, slog.LevelWarn),
		// No WriteTimeout: the delay and hang faults must be able to
		// outlast a sender's timeout.
	}
	ids := make([]string, 0, len(o.secrets))
	for id := range o.secrets {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	logger.Info("subscriber listening", "addr", ln.Addr().String(), "integrations", ids,
		"tolerance", o.cfg.Tolerance, "faults", o.cfg.Faults)
	if ready != nil {
		ready(ln.Addr().String())
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("subscriber stopping", "stats", rc.Stats())
	rc.Close() // release hung and delayed requests so Shutdown does not wait on them
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}
