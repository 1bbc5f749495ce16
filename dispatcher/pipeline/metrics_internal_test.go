package pipeline

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
)

// Cached attribute sets must count exactly as fresh ones would: per
// distinct (event, outcome), outcome, state and event.
func TestMetricsAttributes(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ok := deliver.Result{Class: deliver.ClassSuccess, Duration: time.Millisecond}
	bad := deliver.Result{Class: deliver.ClassServerError, Duration: time.Millisecond}
	for range 3 {
		m.attempt(ctx, "file_scan.completed", ok)
	}
	m.attempt(ctx, "file_scan.failed", ok)
	m.attempt(ctx, "file_scan.completed", bad)
	m.final(ctx, deliverylog.StateSucceeded)
	m.final(ctx, deliverylog.StateSucceeded)
	m.final(ctx, deliverylog.StateDead)
	m.latency(ctx, "file_scan.failed", time.Second)
	for i := range maxCachedAttrSets + 10 { // past the bound: still counted
		m.final(ctx, fmt.Sprintf("s%d", i))
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			switch d := md.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					got[md.Name] = append(got[md.Name], fmt.Sprintf("%s=%d", attrs(dp.Attributes.ToSlice()), dp.Value))
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					got[md.Name] = append(got[md.Name], fmt.Sprintf("%s=%d", attrs(dp.Attributes.ToSlice()), dp.Count))
				}
			}
		}
	}
	for name, want := range map[string][]string{
		"webhook.attempts":         {"event:file_scan.completed,outcome:http_5xx=1", "event:file_scan.completed,outcome:success=3", "event:file_scan.failed,outcome:success=1"},
		"webhook.attempt.duration": {"outcome:http_5xx=1", "outcome:success=4"},
		"webhook.delivery.latency": {"event:file_scan.failed=1"},
	} {
		sort.Strings(got[name])
		if fmt.Sprint(got[name]) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, want %v", name, got[name], want)
		}
	}
	deliveries := strings.Join(got["webhook.deliveries"], " ")
	if len(got["webhook.deliveries"]) != 2+maxCachedAttrSets+10 || !strings.Contains(deliveries, "state:succeeded=2") || !strings.Contains(deliveries, "state:dead=1") {
		t.Errorf("webhook.deliveries: %d points: %.300s", len(got["webhook.deliveries"]), deliveries)
	}
}

func attrs(kvs []attribute.KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, string(kv.Key)+":"+kv.Value.Emit())
	}
	return strings.Join(parts, ",")
}
