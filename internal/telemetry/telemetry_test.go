package telemetry_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

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
