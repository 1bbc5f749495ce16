package reliability

import (
	"net/http"
	"testing"
	"time"

	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// configChange is the part the Redis failover tests share: integration X
// moves from xOld to xNew (a URL change) and Y's secret is rotated, while
// a Redis replica that missed both is promoted. Bursts to X and Y are
// counted per endpoint; settle waits for them and fails at once if X's
// old URL gets more than it was sent, or Y's endpoint refuses a signature
// (the rotated-out secret).
type configChange struct {
	t                   *testing.T
	c                   *cluster
	x, y                string
	xOld, xNew          *endpoint
	yEp                 *endpoint
	want                map[string]outcome
	by                  map[string][]string
	toXOld, toXNew, toY []sentEvent
	changed             time.Time // when the API answered the change
}

func newConfigChange(t *testing.T, c *cluster, x string, xOld, xNew *endpoint, y string, yEp *endpoint) *configChange {
	return &configChange{t: t, c: c, x: x, y: y, xOld: xOld, xNew: xNew, yEp: yEp,
		want: map[string]outcome{}, by: map[string][]string{}}
}

// burst publishes n events to integration id, each expected to succeed.
func (cc *configChange) burst(id string, n int) []sentEvent {
	var out []sentEvent
	for i := range n {
		ev := cc.c.publish(id, schemas.EventNames[i%3])
		cc.want[ev.ID] = succeeded
		cc.by[id] = append(cc.by[id], ev.ID)
		out = append(out, ev)
	}
	return out
}

// burstBoth sends n events to X (to its current URL) and n to Y.
func (cc *configChange) burstBoth(n int) {
	if cc.changed.IsZero() {
		cc.toXOld = append(cc.toXOld, cc.burst(cc.x, n)...)
	} else {
		cc.toXNew = append(cc.toXNew, cc.burst(cc.x, n)...)
	}
	cc.toY = append(cc.toY, cc.burst(cc.y, n)...)
}

func (cc *configChange) settle(what string) {
	cc.t.Helper()
	testinfra.WaitFor(cc.t, 60*time.Second, what, func() bool {
		if n := len(cc.xOld.Deliveries()); n > len(cc.toXOld) {
			cc.t.Fatalf("X's old URL received %d requests for %d events published before the change: a stale configuration was used", n, len(cc.toXOld))
		}
		if st := cc.yEp.Stats(); st.Rejected > 0 {
			cc.t.Fatalf("Y's endpoint refused %d requests (%v): signed with the rotated-out secret", st.Rejected, st.RejectedBy)
		}
		return cc.xOld.Stats().Accepted == int64(len(cc.toXOld)) && cc.xNew.Stats().Accepted == int64(len(cc.toXNew)) &&
			cc.yEp.Stats().Accepted == int64(len(cc.toY))
	})
}

// change moves X to xNew through dispatcher a and rotates Y's secret
// through b.
func (cc *configChange) change(a, b *dispatcher) {
	cc.t.Helper()
	cc.xNew.SetSecret(cc.x, cc.c.secret(b, cc.x)) // a URL change keeps the secret
	cc.c.putWebhook(a, cc.x, true, cc.xNew.base()+"/webhooks/"+cc.x, schemas.EventNames)
	var rotated struct{ Secret string }
	if code := b.api("POST", "/v1/integrations/"+cc.y+"/webhook/secret/rotate", nil, &rotated); code != http.StatusOK {
		cc.t.Fatalf("rotate: %d", code)
	}
	cc.changed = time.Now()
	cc.yEp.SetSecret(cc.y, rotated.Secret)
}

// deliveredBefore counts the steady events published from index from on
// that ep accepted before the deadline.
func deliveredBefore(l *load, from int, ep *endpoint, deadline time.Time) int {
	n := 0
	for _, ev := range l.sent()[from:] {
		for _, arr := range ep.arrivals()[ev.ID] {
			if arr.Outcome == receiver.OutcomeAccepted && arr.ArrivedAt.Before(deadline) {
				n++
			}
		}
	}
	return n
}

// finish adds the steady events to the expected outcomes, waits for
// every outcome in a's log, checks that X's old URL received nothing
// after the change, and returns the duplicates over X's, Y's and the
// extra endpoints' bursts and the steady events.
func (cc *configChange) finish(a *dispatcher, steadyEp *endpoint, sent []sentEvent, extra map[*endpoint][]sentEvent) int {
	cc.t.Helper()
	for _, ev := range sent {
		cc.want[ev.ID] = succeeded
		cc.by[ev.Integration] = append(cc.by[ev.Integration], ev.ID)
	}
	cc.c.awaitOutcomes(a, cc.want, cc.by, 2*time.Minute)
	dups := checkArrivals(cc.t, steadyEp, sent) + checkArrivals(cc.t, cc.xOld, cc.toXOld) +
		checkArrivals(cc.t, cc.xNew, cc.toXNew) + checkArrivals(cc.t, cc.yEp, cc.toY)
	for ep, evs := range extra {
		dups += checkArrivals(cc.t, ep, evs)
	}
	for _, arr := range cc.xOld.Deliveries() {
		if arr.ArrivedAt.After(cc.changed) {
			cc.t.Errorf("X's old URL received event %s (attempt %s) %s after the change was answered", arr.EventID, arr.AttemptHeader, arr.ArrivedAt.Sub(cc.changed))
		}
	}
	return dups
}
