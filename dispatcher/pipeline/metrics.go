package pipeline

import (
	"context"
	"sync"
	"sync/atomic"
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

	// Attribute sets are built once per distinct value and reused: building
	// one sorts and hashes its attributes, several times per attempt.
	eventOutcome, outcome, state, event attrCache
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
	return &x, nil
}

func (x *Metrics) attempt(ctx context.Context, event string, res deliver.Result) {
	x.attempts.Add(ctx, 1, x.eventOutcome.get(event, res.Class, func() attribute.Set {
		return attribute.NewSet(attribute.String("event", event), attribute.String("outcome", res.Class))
	}))
	x.attemptDuration.Record(ctx, res.Duration.Seconds(), x.outcome.get(res.Class, "", func() attribute.Set {
		return attribute.NewSet(attribute.String("outcome", res.Class))
	}))
}

func (x *Metrics) final(ctx context.Context, state string) {
	x.deliveries.Add(ctx, 1, x.state.get(state, "", func() attribute.Set {
		return attribute.NewSet(attribute.String("state", state))
	}))
}

func (x *Metrics) latency(ctx context.Context, event string, d time.Duration) {
	x.deliveryLatency.Record(ctx, d.Seconds(), x.event.get(event, "", func() attribute.Set {
		return attribute.NewSet(attribute.String("event", event))
	}))
}

// maxCachedAttrSets bounds each cache. The values are low-cardinality by
// design (a few events, outcome classes, states); the bound only guards
// against a bug turning one into an unbounded label.
const maxCachedAttrSets = 256

// attrCache maps one or two attribute values to their measurement option.
// Reads take no lock: the map is replaced, never changed, on a miss.
type attrCache struct {
	mu sync.Mutex
	m  atomic.Pointer[map[[2]string]metric.MeasurementOption]
}

func (c *attrCache) get(a, b string, build func() attribute.Set) metric.MeasurementOption {
	key := [2]string{a, b}
	if m := c.m.Load(); m != nil {
		if o, ok := (*m)[key]; ok {
			return o
		}
	}
	o := metric.WithAttributeSet(build())
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil && len(*old) >= maxCachedAttrSets {
		return o
	}
	next := make(map[[2]string]metric.MeasurementOption, 8)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	next[key] = o
	c.m.Store(&next)
	return o
}
