package deliver_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/target"
)

// BenchmarkSend is one attempt against a local receiver that reads the body
// and answers 200: signing, the SSRF-guarded transport, the span and metrics, and
// retryablehttp, with 32 attempts in flight per CPU. "plain-net-http" posts
// the same body with a bare http.Client and the same concurrency: the
// difference is what the attempt machinery costs over the raw ceiling.
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"accepted"}`)
	}))
	b.Cleanup(srv.Close)
	payload := []byte(`{"event":"file_scan.completed","pad":"` + strings.Repeat("x", 1024-41) + `"}`)
	b.Run("deliver", func(b *testing.B) {
		s := deliver.New(deliver.Options{
			DialContext:         target.NewDialer(target.Policy{AllowPrivate: true}, time.Second).DialContext,
			AttemptTimeout:      15 * time.Second,
			UserAgent:           "Blazelock-Webhooks/bench",
			MaxIdleConnsPerHost: 256,
		})
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				res := s.Send(context.Background(), deliver.Request{URL: srv.URL + "/hook", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", EventID: "0195a0c1-0000-7000-8000-000000000001", Attempt: 1, Body: payload})
				if !res.OK() {
					b.Errorf("attempt failed: %+v", res)
					return
				}
			}
		})
	})
	b.Run("plain-net-http", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := c.Post(srv.URL+"/hook", "application/json", bytes.NewReader(payload))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	})
}
