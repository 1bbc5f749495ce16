// Command healthcheck is the container health probe of the compose stack.
//
//	healthcheck http://127.0.0.1:8080/readyz   exit 0 on a 2xx answer
//	healthcheck tcp://127.0.0.1:4318           exit 0 when a TCP connection opens
//
// It exists because the images it goes into (distroless, scratch) have no
// shell, curl or wget, and a Docker HEALTHCHECK can only run a program that
// is inside the container. It is static, has no dependencies outside the
// standard library, and says on stderr why a probe failed, which Docker keeps
// in `docker inspect --format '{{json .State.Health}}'`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "healthcheck:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: healthcheck [-timeout 3s] http://host:port/path | tcp://host:port")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("want exactly one target")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	return probe(ctx, fs.Arg(0))
}

// probe checks one target: an HTTP(S) URL must answer 2xx, a tcp:// address
// must accept a connection.
func probe(ctx context.Context, target string) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("target %q: want http://host:port/path or tcp://host:port", target)
	}
	switch u.Scheme {
	case "tcp":
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return fmt.Errorf("connect %s: %w", u.Host, err)
		}
		return conn.Close()
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return fmt.Errorf("build request: %w", err)
		}
		// No proxy from the environment: the probe is always local.
		client := &http.Client{Transport: &http.Transport{Proxy: nil}}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", target, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("GET %s: %s %s", target, resp.Status, body)
		}
		return nil
	default:
		return fmt.Errorf("target %q: scheme %q not supported (http, https, tcp)", target, u.Scheme)
	}
}
