package deliver

import (
	"context"
	"net/url"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// instruments record each attempt as OpenTelemetry's HTTP client
// conventions name it: a client span "POST" and the histograms
// http.client.request.duration (seconds) and http.client.request.body.size
// (bytes), by method, server address and port, status code and error
// type. The attempt already knows all of it, so this replaces otelhttp's
// generic wrapper, which cloned the request, wrapped its body (which cost
// net/http a second write) and built the attribute sets anew on every
// attempt. Attribute sets are built once per endpoint and outcome.
//
// The span is never propagated: no trace header reaches a customer's
// endpoint.
type instruments struct {
	tracer   trace.Tracer
	duration metric.Float64Histogram
	bodySize metric.Int64Histogram
	sets     sync.Map // outcomeKey → metric.MeasurementOption
}

type outcomeKey struct {
	host      string
	port      int
	status    int
	errorType string
}

// instrumentationName is the scope of the spans and metrics.
const instrumentationName = "github.com/blazelock/webhooks/dispatcher/deliver"

func newInstruments(tp trace.TracerProvider, mp metric.MeterProvider) *instruments {
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter(instrumentationName)
	in := &instruments{tracer: tp.Tracer(instrumentationName)}
	var err error
	if in.duration, err = meter.Float64Histogram("http.client.request.duration", metric.WithUnit("s"),
		metric.WithDescription("duration of webhook HTTP requests"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)); err != nil {
		in.duration, _ = noop.NewMeterProvider().Meter("").Float64Histogram("")
	}
	if in.bodySize, err = meter.Int64Histogram("http.client.request.body.size", metric.WithUnit("By"),
		metric.WithDescription("size of webhook request bodies")); err != nil {
		in.bodySize, _ = noop.NewMeterProvider().Meter("").Int64Histogram("")
	}
	return in
}

// hostPort splits a request URL's host and port (the scheme's default
// port when none is written).
func hostPort(u *url.URL) (string, int) {
	if port, err := strconv.Atoi(u.Port()); err == nil {
		return u.Hostname(), port
	}
	if u.Scheme == "http" {
		return u.Hostname(), 80
	}
	return u.Hostname(), 443
}

// start opens the attempt's client span.
func (in *instruments) start(ctx context.Context, host string, port int) (context.Context, trace.Span) {
	return in.tracer.Start(ctx, "POST", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("http.request.method", "POST"),
		attribute.String("server.address", host),
		attribute.Int("server.port", port),
	))
}

// end records the attempt's outcome on its span and metrics.
func (in *instruments) end(ctx context.Context, span trace.Span, host string, port, bodyBytes int, res Result) {
	errorType := ""
	switch {
	case res.StatusCode >= 400:
		errorType = strconv.Itoa(res.StatusCode)
	case res.StatusCode == 0 || res.Err != nil:
		errorType = res.Class
	}
	if span.IsRecording() {
		if res.StatusCode != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", res.StatusCode))
		}
		if errorType != "" {
			span.SetAttributes(attribute.String("error.type", errorType))
			span.SetStatus(codes.Error, res.Class)
		}
	}
	span.End()
	key := outcomeKey{host: host, port: port, status: res.StatusCode, errorType: errorType}
	set, ok := in.sets.Load(key)
	if !ok {
		attrs := []attribute.KeyValue{
			attribute.String("http.request.method", "POST"),
			attribute.String("server.address", host),
			attribute.Int("server.port", port),
		}
		if res.StatusCode != 0 {
			attrs = append(attrs, attribute.Int("http.response.status_code", res.StatusCode))
		}
		if errorType != "" {
			attrs = append(attrs, attribute.String("error.type", errorType))
		}
		set, _ = in.sets.LoadOrStore(key, metric.WithAttributeSet(attribute.NewSet(attrs...)))
	}
	opt := set.(metric.MeasurementOption)
	in.duration.Record(ctx, res.Duration.Seconds(), opt)
	in.bodySize.Record(ctx, int64(bodyBytes), opt)
}
