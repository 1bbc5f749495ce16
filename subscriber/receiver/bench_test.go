package receiver_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blazelock/webhooks/subscriber/receiver"
	"github.com/blazelock/webhooks/subscriber/verify"
)

// benchEvent is a 1 KiB signed envelope, the size DESIGN.md benchmarks with.
func benchEvent(b *testing.B) (body []byte, ts, sig string) {
	e := newEvent(integrationA, secretA, time.Now())
	pad := bytes.Repeat([]byte("x"), 1024-len(e.body)-len(`,"pad":""`))
	body = append(bytes.Clone(e.body[:len(e.body)-2]), []byte(`,"pad":"`+string(pad)+`"}}`)...)
	ts = strconv.FormatInt(time.Now().Unix(), 10)
	return body, ts, verify.Sign(secretA, ts, body)
}

// The handler alone: what one webhook costs the receiver, without sockets.
func BenchmarkServeHTTP(b *testing.B) {
	for _, keep := range []bool{false, true} {
		b.Run(fmt.Sprintf("keepArrivals=%v", keep), func(b *testing.B) {
			rc, err := receiver.New(receiver.Config{Secrets: map[string]string{integrationA: secretA}, DiscardArrivals: !keep})
			if err != nil {
				b.Fatal(err)
			}
			body, ts, sig := benchEvent(b)
			var seq atomic.Uint64
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.RunParallel(func(pb *testing.PB) {
				rd := bytes.NewReader(body)
				for pb.Next() {
					rd.Reset(body)
					req := httptest.NewRequest(http.MethodPost, "/", rd)
					req.Header.Set(verify.HeaderTimestamp, ts)
					req.Header.Set(verify.HeaderSignature, sig)
					req.Header.Set(verify.HeaderID, fmt.Sprintf("01958a2b-0000-7000-8000-%012d", seq.Add(1)))
					w := httptest.NewRecorder()
					rc.ServeHTTP(w, req)
					if w.Code != 200 {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			})
			if s := rc.Stats(); s.Accepted != int64(seq.Load()) {
				b.Fatalf("accepted %d of %d", s.Accepted, seq.Load())
			}
		})
	}
}

// Over loopback HTTP with keep-alive connections, as a dispatcher sends; the
// baseline is a handler that only reads the body and answers 200, to tell
// the receiver's cost from the HTTP stack's on the same machine.
func BenchmarkHTTP(b *testing.B) {
	rc, err := receiver.New(receiver.Config{Secrets: map[string]string{integrationA: secretA}, DiscardArrivals: true})
	if err != nil {
		b.Fatal(err)
	}
	baseline := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	})
	b.Run("receiver", func(b *testing.B) { benchmarkHTTP(b, rc) })
	b.Run("baseline", func(b *testing.B) { benchmarkHTTP(b, baseline) })
}

func benchmarkHTTP(b *testing.B, h http.Handler) {
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	b.Cleanup(client.CloseIdleConnections)
	body, ts, sig := benchEvent(b)
	var seq atomic.Uint64
	b.SetParallelism(16)
	b.ReportAllocs()
	began := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(verify.HeaderTimestamp, ts)
			req.Header.Set(verify.HeaderSignature, sig)
			req.Header.Set(verify.HeaderID, fmt.Sprintf("01958a2b-0000-7000-8000-%012d", seq.Add(1)))
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "req/s")
}
