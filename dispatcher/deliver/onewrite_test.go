package deliver_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/blazelock/webhooks/dispatcher/deliver"
)

// countingConn counts Write calls: each is one send syscall.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// An attempt's headers and body leave in one write (not one for each), the
// receiver gets the body intact, and the body size is measured.
func TestAttemptIsOneWrite(t *testing.T) {
	payload := `{"event":"file_scan.completed","pad":"` + strings.Repeat("x", 1024-41) + `"}`
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(string(b))
	}))
	defer srv.Close()
	var writes atomic.Int64
	reader := sdkmetric.NewManualReader()
	s := deliver.New(deliver.Options{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{c, &writes}, nil
		},
		AttemptTimeout: 5 * time.Second,
		UserAgent:      "Blazelock-Webhooks/test",
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	const attempts = 3
	for i := range attempts {
		res := s.Send(context.Background(), deliver.Request{URL: srv.URL, Secret: "whsec_x", EventID: "ev", Attempt: i + 1, Body: []byte(payload)})
		if !res.OK() {
			t.Fatalf("attempt %d: %+v", i+1, res)
		}
		if got.Load() != payload {
			t.Fatalf("attempt %d: receiver got %d bytes, want the %d sent", i+1, len(got.Load().(string)), len(payload))
		}
	}
	if n := writes.Load(); n != attempts {
		t.Fatalf("%d attempts took %d writes, want one each", attempts, n)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var sum int64
	var count uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "http.client.request.body.size" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[int64]).DataPoints {
				sum += dp.Sum
				count += dp.Count
			}
		}
	}
	if count != attempts || sum != attempts*int64(len(payload)) {
		t.Fatalf("http.client.request.body.size: %d observations summing %d, want %d of %d bytes", count, sum, attempts, len(payload))
	}
}
