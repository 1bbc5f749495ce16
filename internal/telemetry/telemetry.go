// Package telemetry sets up OpenTelemetry for the dispatcher: traces and
// metrics providers, Prometheus export on /metrics, OTLP export when
// configured, and a slog handler that stamps trace ids on log lines.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Options configure Setup.
type Options struct {
	ServiceName string
	Version     string
	// OTLP turns on OTLP/HTTP export; the exporters read the standard
	// OTEL_EXPORTER_OTLP_* variables (endpoint, headers, protocol paths).
	OTLP bool
	// SpanProcessors are added to the tracer provider (tests record spans).
	SpanProcessors []sdktrace.SpanProcessor
}

// Telemetry holds the providers. Pass them down explicitly; nothing here
// is installed globally.
type Telemetry struct {
	TracerProvider *sdktrace.TracerProvider
	MeterProvider  *sdkmetric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// MetricsHandler serves Prometheus text format.
	MetricsHandler http.Handler
	shutdown       []func(context.Context) error
}

// Setup builds the providers.
func Setup(ctx context.Context, o Options) (*Telemetry, error) {
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(o.ServiceName), semconv.ServiceVersion(o.Version)))
	if err != nil {
		res = resource.Default()
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promReader, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, fmt.Errorf("create Prometheus exporter: %w", err)
	}
	t := &Telemetry{
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		MetricsHandler: promhttp.HandlerFor(registry, promhttp.HandlerOpts{}),
	}
	meterOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promReader)}
	traceOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, sp := range o.SpanProcessors {
		traceOpts = append(traceOpts, sdktrace.WithSpanProcessor(sp))
	}
	if o.OTLP {
		traceExp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("create OTLP trace exporter: %w", err)
		}
		metricExp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("create OTLP metric exporter: %w", err)
		}
		traceOpts = append(traceOpts, sdktrace.WithBatcher(traceExp))
		meterOpts = append(meterOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExp)))
	}
	if len(o.SpanProcessors) == 0 && !o.OTLP {
		// Nothing would receive a span: record none. Spans keep their
		// trace and span ids (log lines still carry trace_id, continuing
		// the publisher's trace), but attributes, events and the span
		// itself are not built: about 5 % of a busy dispatcher's CPU.
		traceOpts = append(traceOpts, sdktrace.WithSampler(sdktrace.NeverSample()))
	}
	t.TracerProvider = sdktrace.NewTracerProvider(traceOpts...)
	t.MeterProvider = sdkmetric.NewMeterProvider(meterOpts...)
	t.shutdown = append(t.shutdown, t.TracerProvider.Shutdown, t.MeterProvider.Shutdown)
	return t, nil
}

// Shutdown flushes and stops every provider.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// TraceHandler decorates a slog.Handler with trace_id and span_id from the
// record's context, so a log line can be found from its trace and back.
type TraceHandler struct{ slog.Handler }

// Handle adds the ids when ctx carries a valid span.
func (h TraceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the decoration on derived handlers.
func (h TraceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return TraceHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup keeps the decoration on derived handlers.
func (h TraceHandler) WithGroup(name string) slog.Handler {
	return TraceHandler{h.Handler.WithGroup(name)}
}
