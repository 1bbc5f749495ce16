package pipeline

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/delivery"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/schedule"
)

// The per-attempt line is skipped when its level is off, but a failed
// delivery-log write is still reported at error level whatever the level.
func TestObserveLogLine(t *testing.T) {
	metrics, err := NewMetrics(noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	job := delivery.Job{DeliveryID: "d-1", EventID: "e-1", IntegrationID: "i-1", Event: "file_scan.completed", Attempt: 1, Series: 1, CreatedAt: time.Now()}
	res := deliver.Result{StartedAt: time.Now(), Duration: time.Millisecond, StatusCode: 200, Class: deliver.ClassSuccess}
	for _, tc := range []struct {
		name    string
		level   slog.Level
		saveErr error
		want    []string // empty: no line
		notWant []string
	}{
		{"info: the wide line", slog.LevelInfo, nil, []string{"level=INFO", "msg=delivery.attempted", "host=hooks.example:8443", "outcome=success", "state=succeeded"}, nil},
		{"warn: nothing", slog.LevelWarn, nil, nil, nil},
		{"warn: record failure still logged", slog.LevelWarn, errors.New("kv down"), []string{"level=ERROR", "record_err=\"kv down\"", "host=hooks.example:8443", "state=succeeded"}, nil},
		// The other dispatcher's record stands: this one's state is not the delivery's.
		{"warn: superseded attempt logged without a state", slog.LevelWarn, errSuperseded, []string{"level=WARN", "record_err=", "outcome=success", "host=hooks.example:8443"}, []string{"state="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := New(Deps{Metrics: metrics, RetryPolicy: schedule.Default(),
				Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))})
			rec := &deliverylog.Delivery{State: deliverylog.StateSucceeded}
			p.observe(context.Background(), trace.SpanFromContext(context.Background()), job, rec, res, "https://hooks.example:8443/x?token=secret", tc.saveErr)
			out := buf.String()
			if len(tc.want) == 0 {
				if out != "" {
					t.Fatalf("logged %q", out)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("line %q lacks %q", out, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("line %q has %q", out, w)
				}
			}
			if strings.Contains(out, "token=secret") {
				t.Errorf("line leaks the URL's query: %q", out)
			}
		})
	}
}

// BenchmarkObserve is the cost of an attempt's observation (metrics, span
// attributes and, at info, the wide log line) with the text handler the
// dispatcher uses, writing to a pipe drained by another goroutine, as
// stderr is when a supervisor collects it.
func BenchmarkObserve(b *testing.B) {
	metrics, err := NewMetrics(noop.NewMeterProvider().Meter("bench"))
	if err != nil {
		b.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, r) }()
	b.Cleanup(func() { _ = w.Close() })
	job := delivery.Job{DeliveryID: "01a21da7-93c4-7e21-b233-e7c2d88a5965", EventID: "01a21da7-93c2-7583-a924-ec0f8866615c",
		IntegrationID: "01a21da7-7250-78cd-8f72-a95a0e674b01", Event: "file_scan.completed", Attempt: 1, Series: 1, CreatedAt: time.Now()}
	res := deliver.Result{StartedAt: time.Now(), Duration: time.Millisecond, StatusCode: 200, Class: deliver.ClassSuccess}
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		b.Run("level="+level.String(), func(b *testing.B) {
			p := New(Deps{Metrics: metrics, RetryPolicy: schedule.Default(),
				Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))})
			rec := &deliverylog.Delivery{State: deliverylog.StateSucceeded}
			ctx := context.Background()
			span := trace.SpanFromContext(ctx)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p.observe(ctx, span, job, rec, res, "https://hooks.example:8443/webhooks/x", nil)
				}
			})
		})
	}
}
