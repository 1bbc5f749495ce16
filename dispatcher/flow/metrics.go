package flow

import (
	"context"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instrument registers the scheduler's metrics on m. Nothing is labelled
// by integration: per-integration queue depths and limits are reported as
// their spread (min, median, p90, max over the integrations with work),
// so the number of series stays fixed however many integrations there are.
// Call it before Start.
func (s *Scheduler) Instrument(m metric.Meter) error {
	deferrals, err := m.Int64Counter("webhook.flow.deferrals",
		metric.WithDescription("messages flow control did not run at once, by reason (queue_full, stalled, paused, shutdown) and action (requeue: handed back to JetStream; park: moved to the retry lane)"),
		metric.WithUnit("{message}"))
	if err != nil {
		return err
	}
	sets := map[Verdict]metric.AddOption{}
	for _, r := range []string{ReasonQueueFull, ReasonStalled, ReasonPaused, ReasonShutdown} {
		for _, park := range []bool{false, true} {
			action := "requeue"
			if park {
				action = "park"
			}
			sets[Verdict{Reason: r, Park: park}] = metric.WithAttributeSet(attribute.NewSet(
				attribute.String("reason", r), attribute.String("action", action)))
		}
	}
	s.o.OnDefer = func(v Verdict) {
		deferrals.Add(context.Background(), 1, sets[Verdict{Reason: v.Reason, Park: v.Park}])
	}

	queued, err := m.Int64ObservableGauge("webhook.flow.queued",
		metric.WithDescription("messages waiting in this process for their turn"), metric.WithUnit("{message}"))
	if err != nil {
		return err
	}
	running, err := m.Int64ObservableGauge("webhook.flow.running",
		metric.WithDescription("attempts in flight in this process"), metric.WithUnit("{attempt}"))
	if err != nil {
		return err
	}
	integrations, err := m.Int64ObservableGauge("webhook.flow.integrations",
		metric.WithDescription("integrations with work waiting or in flight in this process, by state (active, stalled, paused)"))
	if err != nil {
		return err
	}
	depth, err := m.Int64ObservableGauge("webhook.flow.queue_depth",
		metric.WithDescription("spread of the per-integration queue depths in this process (stat: min, p50, p90, max)"), metric.WithUnit("{message}"))
	if err != nil {
		return err
	}
	limits, err := m.Int64ObservableGauge("webhook.flow.concurrency_limit",
		metric.WithDescription("spread of the per-integration adaptive concurrency limits in this process (stat: min, p50, p90, max)"), metric.WithUnit("{attempt}"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := s.Stats()
		o.ObserveInt64(queued, int64(st.Queued))
		o.ObserveInt64(running, int64(st.Running))
		o.ObserveInt64(integrations, int64(len(st.Limits)), metric.WithAttributes(attribute.String("state", "active")))
		o.ObserveInt64(integrations, int64(st.Stalled), metric.WithAttributes(attribute.String("state", "stalled")))
		o.ObserveInt64(integrations, int64(st.Paused), metric.WithAttributes(attribute.String("state", "paused")))
		observeSpread(o, depth, st.QueueDepths)
		observeSpread(o, limits, st.Limits)
		return nil
	}, queued, running, integrations, depth, limits)
	return err
}

func observeSpread(o metric.Observer, g metric.Int64ObservableGauge, values []int) {
	if len(values) == 0 {
		return
	}
	slices.Sort(values)
	at := func(q float64) int64 { return int64(values[int(q*float64(len(values)-1))]) }
	for _, p := range []struct {
		stat string
		q    float64
	}{{"min", 0}, {"p50", 0.5}, {"p90", 0.9}, {"max", 1}} {
		o.ObserveInt64(g, at(p.q), metric.WithAttributes(attribute.String("stat", p.stat)))
	}
}
