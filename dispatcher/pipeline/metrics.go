package pipeline

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/blazelock/webhooks/dispatcher/deliver"
)

// Metrics are the pipeline's instruments. Attributes are low-cardinality
// only (event type, outcome class, state): never integration ids or URLs.
type Metrics struct {
	attempts        metric.Int64Counter
	attemptDuration metric.Float64Histogram
	deliveries      metric.Int64Counter
	deliveryLatency metric.Float64Histogram
	deferrals       metric.Int64Counter
}

// NewMetrics creates the instruments on the meter.
func NewMetrics(m metric.Meter) (*Metrics, error) {
	var x Metrics
	var err error
	if x.attempts, err = m.Int64Counter("webhook.attempts",
		metric.WithDescription("HTTP attempts by outcome class (success, http_4xx, timeout, ...)"),
		metric.WithUnit("{attempt}")); err != nil {
		return nil, err
	}
	if x.attemptDuration, err = m.Float64Histogram("webhook.attempt.duration",
		metric.WithDescription("duration of one HTTP attempt"), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15)); err != nil {
		return nil, err
	}
	if x.deliveries, err = m.Int64Counter("webhook.deliveries",
		metric.WithDescription("deliveries that reached a final state (succeeded, dead, skipped, rejected)"),
		metric.WithUnit("{delivery}")); err != nil {
		return nil, err
	}
	if x.deliveryLatency, err = m.Float64Histogram("webhook.delivery.latency",
		metric.WithDescription("time from the event being stored in JetStream to its successful delivery"), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 1800, 3600, 14400, 57600)); err != nil {
		return nil, err
	}
	if x.deferrals, err = m.Int64Counter("webhook.deferrals",
		metric.WithDescription("attempts put off because their integration had too many attempts in flight"),
		metric.WithUnit("{attempt}")); err != nil {
		return nil, err
	}
	return &x, nil
}

func (x *Metrics) attempt(ctx context.Context, event string, res deliver.Result) {
	set := metric.WithAttributeSet(attribute.NewSet(attribute.String("event", event), attribute.String("outcome", res.Class)))
	x.attempts.Add(ctx, 1, set)
	x.attemptDuration.Record(ctx, res.Duration.Seconds(), metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", res.Class))))
}

func (x *Metrics) final(ctx context.Context, state string) {
	x.deliveries.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(attribute.String("state", state))))
}

func (x *Metrics) latency(ctx context.Context, event string, d time.Duration) {
	x.deliveryLatency.Record(ctx, d.Seconds(), metric.WithAttributeSet(attribute.NewSet(attribute.String("event", event))))
}

func (x *Metrics) deferred(ctx context.Context) { x.deferrals.Add(ctx, 1) }
