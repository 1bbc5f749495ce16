package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// servePprof serves net/http/pprof on a listener of its own
// (DISPATCHER_PPROF_ADDR), never on the API listener: profiles expose
// internals and carry no authentication, so they are opt-in and meant for
// loopback. The benchmark harness (bench/) uses it to profile under load.
func (a *app) servePprof(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on DISPATCHER_PPROF_ADDR %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	a.closers = append(a.closers, func(context.Context) { _ = srv.Close() })
	a.logger.Warn("profiling enabled: net/http/pprof serves on " + ln.Addr().String() + " (DISPATCHER_PPROF_ADDR; unauthenticated, keep it on loopback)")
	return nil
}
