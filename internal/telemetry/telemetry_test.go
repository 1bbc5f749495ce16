package telemetry_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/blazelock/webhooks/internal/telemetry"
)

func TestPrometheusExportAndTraceIDsInLogs(t *testing.T) {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "test", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	counter, err := tel.MeterProvider.Meter("test").Int64Counter("webhook.test.things")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(ctx, 3)

	rec := httptest.NewRecorder()
	tel.MetricsHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), "webhook_test_things_total") || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("metrics output lacks the counter or runtime metrics:\n%s", body)
	}

	var buf bytes.Buffer
	logger := slog.New(telemetry.TraceHandler{Handler: slog.NewTextHandler(&buf, nil)}).With("component", "x")
	spanCtx, span := tel.TracerProvider.Tracer("test").Start(ctx, "op")
	logger.InfoContext(spanCtx, "hello")
	span.End()
	if want := "trace_id=" + span.SpanContext().TraceID().String(); !strings.Contains(buf.String(), want) {
		t.Fatalf("log line %q lacks %s", buf.String(), want)
	}
}

// Spans are recorded only when something receives them; without, they
// still carry ids (for the log lines) but cost no recording.
func TestSpansRecordedOnlyWithAReceiver(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      telemetry.Options
		recording bool
	}{
		{"nothing exports", telemetry.Options{ServiceName: "test"}, false},
		{"a span processor", telemetry.Options{ServiceName: "test", SpanProcessors: []sdktrace.SpanProcessor{tracetest.NewSpanRecorder()}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tel, err := telemetry.Setup(context.Background(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
			_, span := tel.TracerProvider.Tracer("test").Start(context.Background(), "op")
			defer span.End()
			if span.IsRecording() != tc.recording || !span.SpanContext().IsValid() {
				t.Fatalf("recording %v (want %v), span context valid %v (want true)", span.IsRecording(), tc.recording, span.SpanContext().IsValid())
			}
		})
	}
}
