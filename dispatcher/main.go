// Command dispatcher delivers Blazelock scan events as signed webhooks.
//
//	go run ./dispatcher            run on the embedded default (no other service needed)
//	go run ./dispatcher publish    publish one event (local work and demos)
//
// Configuration comes from the environment; see the README's table or
// `go run ./dispatcher -help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/config"
)

func main() {
	// go-redis logs every failed dial through its global logger; the cache
	// reports Redis trouble itself, rate-limited, so keep the library quiet.
	redis.SetLogger(quietRedisLogger{})
	setGCDefault(os.Getenv)
	if err := runMain(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			// One clear line, never a stack trace: start-up problems are
			// operator errors (missing service, bad variable), not bugs.
			fmt.Fprintln(os.Stderr, "dispatcher:", err)
		}
		os.Exit(1)
	}
}

func runMain(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && args[0] == "publish" {
		return publishCommand(ctx, args[1:], getenv, stdin, stdout, stderr)
	}
	fs := flag.NewFlagSet("dispatcher", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: dispatcher [run] | dispatcher publish -h\n\nEnvironment variables:")
		for _, v := range config.Variables {
			fmt.Fprintf(stderr, "  %s (default: %s)\n      %s\n", v.Name, v.Default, v.Meaning)
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 && fs.Arg(0) != "run" {
		fs.Usage()
		return fmt.Errorf("unknown command %q", fs.Arg(0))
	}
	cfg := config.Load(getenv)
	if err := cfg.Validate(); err != nil {
		return err
	}
	return run(ctx, cfg, stderr)
}

type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...interface{}) {}

// defaultGCPercent is the dispatcher's GOGC when the environment sets none.
// Measured in the max1 bench (BENCHMARKS.md, Cost per delivery): 200
// instead of Go's 100 cut the dispatcher's CPU per delivery by about a
// seventh for about a third more peak memory (a few tens of MiB). GOGC
// and GOMEMLIMIT in the environment still win; with a container memory
// limit, set GOMEMLIMIT a little below it.
const defaultGCPercent = 200

func setGCDefault(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}
