package reliability

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// The NATS cluster fault tests: a three-node cluster (real nats-server
// processes, see testinfra.StartNATSCluster) with every stream and bucket
// replicated three times (DISPATCHER_NATS_REPLICAS=3), two dispatcher
// processes with every node's URL, and a steady load over the crash
// tests' endpoints (a healthy one, and a flaky one whose first attempts
// fail, so the retry lane is busy too). One node-level fault each: a
// killed stream leader or meta leader, a rolling restart, a node cut off
// from the others. Each ends like every test of the suite: every
// acknowledged event succeeded, delivered once (later arrivals counted as
// duplicates against a stated bound), every attempt signed and addressed
// right. Each also logs how long deliveries took to resume after each
// fault: until the first delivery of an event published after it (the
// publisher retries meanwhile, as scan services must), and the longest
// pause between two deliveries from the fault on.
//
// The duplicate bound of a fault is 2 lanes × 2 processes × concurrency,
// as for a single server's restart (TestNATSRestartMidLoad): a duplicate
// needs an attempt that reached the endpoint but whose acknowledgement was
// lost (sent to a consumer leader that died or was cut off, or to a
// leaderless consumer) and whose record the redelivered message then did
// not find in the delivery log. Only messages held unacknowledged when the
// fault struck can lose their acknowledgement: at most `concurrency`
// attempts per process and lane.
const clusterFaultDuplicateBound = 2 * 2 * concurrency

// clusterRun is one cluster fault test's world and load.
type clusterRun struct {
	t    *testing.T
	c    *cluster
	a, b *dispatcher
	eps  *mixedEndpoints
	load *load
	// faults are the moments faults struck, with a name each.
	faults []fault
	// cutOff is the dispatcher whose node the test cuts off, the only
	// one that may report its pulls unanswered.
	cutOff *dispatcher
}

// stallLine is what a dispatcher logs when JetStream has answered none of
// its pulls for dispatcher/consume's DefaultStallAfter.
const stallLine = "answered none of this process's pulls"

type fault struct {
	name string
	at   time.Time
	// published is how many events the load had published by then.
	published int
}

// startClusterRun starts the cluster, Redis, two dispatchers and the
// load: up to events events, one every interval, over three integrations
// (finish ends it once 40 were published after the last fault).
func startClusterRun(t *testing.T, env map[string]string, events int, interval time.Duration) *clusterRun {
	t.Helper()
	c := newClusterOnNATSCluster(t, env)
	r := &clusterRun{t: t, c: c}
	r.a = c.startDispatcher("a", nil)
	r.b = c.startDispatcher("b", nil)
	r.eps = c.mixedEndpoints(r.a, r.b, 50*time.Millisecond)
	t.Logf("leaders before the faults: %s", r.leaders())
	r.load = c.startLoad(r.eps.ids, events, interval)
	return r
}

func (r *clusterRun) leaders() string { return r.c.leaders() }

// leaders describes who leads what: the meta group, the streams and
// their consumers, the buckets the dispatchers write on every attempt.
func (c *cluster) leaders() string {
	nc := c.natsCluster
	parts := []string{"meta " + nc.MetaLeader().Name}
	for _, s := range []struct{ stream, consumer string }{
		{natsinfra.EventsStream, natsinfra.EventsConsumer},
		{natsinfra.RetriesStream, natsinfra.RetriesConsumer},
	} {
		parts = append(parts, fmt.Sprintf("%s %s (consumer %s)", s.stream,
			nc.StreamLeader(s.stream).Name, nc.ConsumerLeader(s.stream, s.consumer).Name))
	}
	for _, b := range []string{natsinfra.DeliveriesBucket, natsinfra.WebhooksBucket} {
		parts = append(parts, fmt.Sprintf("KV %s %s", b, nc.StreamLeader("KV_"+b).Name))
	}
	return strings.Join(parts, ", ")
}

// struck records a fault that happens now.
func (r *clusterRun) struck(name string) time.Time {
	at := time.Now()
	r.faults = append(r.faults, fault{name: name, at: at, published: r.load.count()})
	return at
}

// waitAccepted waits until the endpoints have accepted n more events.
func (r *clusterRun) waitAccepted(n int64, what string) {
	r.t.Helper()
	goal := r.eps.accepted() + n
	testinfra.WaitFor(r.t, 60*time.Second, what, func() bool { return r.eps.accepted() >= goal })
}

// waitResumed waits until an event published after at has been delivered.
func (r *clusterRun) waitResumed(at time.Time) {
	r.t.Helper()
	testinfra.WaitFor(r.t, 90*time.Second, "deliveries to resume: an event published after the fault delivered", func() bool {
		_, ok := firstDeliveryAfter(at, r.load.sent(), r.eps.healthy, r.eps.flaky)
		return ok
	})
}

// finish lets the load publish 40 more events after the last fault and
// ends it, checks every event's outcome and arrivals, bounds the
// duplicates at clusterFaultDuplicateBound per fault, and logs the
// resumption after each fault.
func (r *clusterRun) finish() (duplicates int) {
	t := r.t
	t.Helper()
	goal := r.faults[len(r.faults)-1].published + 40
	testinfra.WaitFor(t, 2*time.Minute, "40 events published after the last fault", func() bool {
		select {
		case <-r.load.done:
			return true // reported below
		default:
			return r.load.count() >= goal
		}
	})
	r.load.halt()
	sent := r.load.wait(t)
	last := r.faults[len(r.faults)-1].at
	after := 0
	for _, ev := range sent {
		if ev.Published.After(last) {
			after++
		}
	}
	if after == 0 {
		t.Fatalf("no event was published after the last fault: the load ended too early, the test proves less")
	}
	want, by := expectAll(sent, succeeded)
	r.c.awaitOutcomes(r.b, want, by, 2*time.Minute)
	dups := r.eps.checkArrivals(t, sent)
	lastPublished := sent[len(sent)-1].Published
	for i, f := range r.faults {
		// Pauses count until the next fault, or until the load ended (after
		// it, only retries of the flaky endpoint arrive, seconds apart).
		until := lastPublished
		if i+1 < len(r.faults) && r.faults[i+1].at.Before(until) {
			until = r.faults[i+1].at
		}
		first, _ := firstDeliveryAfter(f.at, sent, r.eps.healthy, r.eps.flaky)
		t.Logf("%s: deliveries resumed %s after it (first event published after it delivered); longest pause between deliveries %s; deliveries per second from 2s before: %s",
			f.name, first.Round(time.Millisecond), longestPause(f.at, until, r.eps.healthy, r.eps.flaky).Round(time.Millisecond),
			timeline(f.at, 2*time.Second, 30, r.eps.healthy, r.eps.flaky))
	}
	// A leader's election pauses pulls for seconds, not for the
	// watchdog's threshold: only a cut-off node's dispatcher may report.
	for _, d := range []*dispatcher{r.a, r.b} {
		if d != r.cutOff && d.Log.Contains(stallLine) {
			t.Errorf("dispatcher %s reported its pulls unanswered, although its node was not cut off", d.Name())
		}
	}
	bound := len(r.faults) * clusterFaultDuplicateBound
	t.Logf("%d events delivered (%d published after the last fault); %d duplicate arrivals (bound %d)", len(sent), after, dups, bound)
	if dups > bound {
		t.Errorf("%d duplicates after %d faults, want at most %d", dups, len(r.faults), bound)
	}
	return dups
}

// firstDeliveryAfter returns how long after at the first event published
// after at was accepted by one of the endpoints.
func firstDeliveryAfter(at time.Time, sent []sentEvent, eps ...*endpoint) (time.Duration, bool) {
	later := map[string]bool{}
	for _, ev := range sent {
		if ev.Published.After(at) {
			later[ev.ID] = true
		}
	}
	var first time.Time
	for _, ep := range eps {
		for _, a := range ep.Deliveries() {
			if a.Outcome == receiver.OutcomeAccepted && later[a.EventID] && (first.IsZero() || a.ArrivedAt.Before(first)) {
				first = a.ArrivedAt
			}
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return first.Sub(at), true
}

// longestPause is the longest time without any accepted delivery, from
// the last delivery before at until the first one after until.
func longestPause(at, until time.Time, eps ...*endpoint) time.Duration {
	var times []time.Time
	for _, ep := range eps {
		for _, a := range ep.Deliveries() {
			if a.Outcome == receiver.OutcomeAccepted {
				times = append(times, a.ArrivedAt)
			}
		}
	}
	slices.SortFunc(times, func(x, y time.Time) int { return x.Compare(y) })
	prev := at
	for _, ts := range times {
		if !ts.After(at) {
			prev = ts
		}
	}
	var longest time.Duration
	for _, ts := range times {
		if !ts.After(at) {
			continue
		}
		longest = max(longest, ts.Sub(prev))
		if ts.After(until) {
			break
		}
		prev = ts
	}
	return longest
}

// TestClusterEventsLeaderKilled: the node leading BLAZELOCK_EVENTS is
// killed (SIGKILL) mid-load, and restarted once deliveries have resumed
// (in the long variant, three times, each time the current leader). The
// two other nodes elect a new leader; publishers retry until it takes
// their events; the dispatchers connected to the dead node reconnect to
// another. The restarted node catches up from its own store.
func TestClusterEventsLeaderKilled(t *testing.T) {
	t.Parallel()
	r := startClusterRun(t, nil, 5000, 25*time.Millisecond)
	for i := range scaled(1, 3) {
		r.waitAccepted(80, "80 more events delivered before the kill")
		leader := r.c.natsCluster.StreamLeader(natsinfra.EventsStream)
		at := r.struck(fmt.Sprintf("kill %d of the events leader (%s)", i+1, leader.Name))
		leader.Kill()
		r.waitResumed(at)
		leader.Start()
		r.c.natsCluster.WaitHealthy(60 * time.Second)
		t.Logf("leaders after restarting %s: %s", leader.Name, r.leaders())
	}
	r.finish()
}

// TestClusterMetaLeaderKilled: the JetStream meta leader (the node that
// places streams and consumers and answers their management) is killed
// mid-load and restarted once deliveries have resumed. Deliveries need
// no meta leader, so they should barely notice, unless the node also led
// a stream or consumer (logged).
func TestClusterMetaLeaderKilled(t *testing.T) {
	t.Parallel()
	r := startClusterRun(t, nil, 5000, 25*time.Millisecond)
	r.waitAccepted(80, "80 events delivered before the kill")
	meta := r.c.natsCluster.MetaLeader()
	at := r.struck("kill of the meta leader (" + meta.Name + ")")
	meta.Kill()
	r.waitResumed(at)
	t.Logf("new meta leader %s", r.c.natsCluster.MetaLeader().Name)
	meta.Start()
	r.c.natsCluster.WaitHealthy(60 * time.Second)
	r.finish()
}

// TestClusterRollingRestart: the upgrade procedure of the README's
// "Running in production": one node at a time, followers first and the
// meta leader last, each put in lame duck mode (it hands over its
// leaderships and moves its clients away), restarted on its store, and
// waited for until /healthz says it has caught up, before the next.
func TestClusterRollingRestart(t *testing.T) {
	t.Parallel()
	r := startClusterRun(t, nil, 5000, 25*time.Millisecond)
	nc := r.c.natsCluster
	meta := nc.MetaLeader()
	order := slices.DeleteFunc(slices.Clone(nc.Nodes), func(n *testinfra.NATSNode) bool { return n == meta })
	order = append(order, meta)
	for _, n := range order {
		r.waitAccepted(40, "40 more events delivered before restarting "+n.Name)
		r.struck("lame duck restart of " + n.Name)
		start := time.Now()
		n.LameDuck(60 * time.Second)
		down := time.Now()
		n.Start()
		nc.WaitHealthy(60 * time.Second)
		t.Logf("%s: lame duck took %s, start until healthy %s", n.Name, down.Sub(start).Round(time.Millisecond), time.Since(down).Round(time.Millisecond))
	}
	r.finish()
}

// TestClusterRetriesLeaderKilled: the node leading BLAZELOCK_RETRIES,
// which holds the scheduled attempts as NATS message schedules, is killed
// while retries are scheduled, then restarted. Every event's endpoint
// fails its first two requests and the schedule allows three attempts
// (2s, 2s), so every event needs both scheduled attempts: each must fire
// (every event ends succeeded after exactly three attempts, unless one of
// its attempts was made twice, counted below), none early (each attempt
// starts no sooner than its predecessor's end plus the delay minus the
// 10 % jitter), none beyond the schedule (no attempt number above 3).
// Attempts made again and duplicate arrivals share the bound of one fault.
func TestClusterRetriesLeaderKilled(t *testing.T) {
	t.Parallel()
	const delay = 2 * time.Second
	c := newClusterOnNATSCluster(t, map[string]string{"DISPATCHER_RETRY_SCHEDULE": "2s,2s"})
	a := c.startDispatcher("a", nil)
	b := c.startDispatcher("b", nil)
	ep := newEndpoint(t, receiver.Faults{FailFirst: 2, Delay: receiver.Duration(20 * time.Millisecond)})
	ids := []string{c.configure(a, ep), c.configure(b, ep)}
	l := c.startLoad(ids, scaled(200, 800), 25*time.Millisecond)

	// Kill once first attempts have failed and their retries wait in the
	// stream, while more keep being scheduled.
	testinfra.WaitFor(t, 60*time.Second, "40 first attempts failed and scheduled", func() bool {
		return len(ep.Deliveries()) >= 40
	})
	leader := c.natsCluster.StreamLeader(natsinfra.RetriesStream)
	t.Logf("killing %s; leaders: %s", leader.Name, c.leaders())
	killed := time.Now()
	leader.Kill()
	testinfra.WaitFor(t, 90*time.Second, "a retry scheduled before the kill to fire after it", func() bool {
		for _, arr := range ep.Deliveries() {
			if arr.Attempt >= 2 && arr.ArrivedAt.After(killed) {
				return true
			}
		}
		return false
	})
	leader.Start()
	c.natsCluster.WaitHealthy(60 * time.Second)

	sent := l.wait(t)
	want, by := expectAll(sent, succeeded)
	got := c.awaitOutcomes(b, want, by, 2*time.Minute)
	dups := checkArrivals(t, ep, sent)

	byEvent := ep.arrivals()
	var threeAttempts, firedAfterKill, repeats int
	var latest time.Duration
	for _, ev := range sent {
		// An attempt the endpoint saw twice was made again: its outcome or
		// its acknowledgement was lost with the killed node, and the
		// redelivered message did not find it in the delivery log. That
		// repeats a failed attempt instead of a successful one (counted as a
		// duplicate), and the endpoint, which fails the first two requests
		// of an event, then accepts the event one attempt earlier.
		seen := map[int]int{}
		var trail []string
		for _, arr := range byEvent[ev.ID] {
			if arr.Attempt > 3 {
				t.Errorf("event %s: attempt %d arrived, beyond the schedule's 3", ev.ID, arr.Attempt)
			}
			seen[arr.Attempt]++
			trail = append(trail, fmt.Sprintf("%d:%s@%s", arr.Attempt, arr.Outcome, arr.ArrivedAt.Sub(killed).Round(time.Millisecond)))
		}
		repeated := 0
		for _, n := range seen {
			repeated += n - 1
		}
		d := b.deliveryWithAttempts(got[ev.ID].ID)
		switch {
		case len(d.Attempts) == 3:
			threeAttempts++
		case repeated == 0:
			t.Errorf("event %s: %d attempts recorded, want 3 (the endpoint saw %s, times from the kill)", ev.ID, len(d.Attempts), strings.Join(trail, " "))
		}
		if repeated > 0 {
			repeats += repeated
			t.Logf("event %s: an attempt was made again after the kill; the endpoint saw %s (times from the kill), the log records %d attempts", ev.ID, strings.Join(trail, " "), len(d.Attempts))
		}
		for i := 1; i < len(d.Attempts); i++ {
			prev, cur := d.Attempts[i-1], d.Attempts[i]
			if cur.Number != prev.Number+1 {
				t.Errorf("event %s: attempt %d follows attempt %d", ev.ID, cur.Number, prev.Number)
				continue
			}
			prevStart, err1 := time.Parse(time.RFC3339Nano, prev.StartedAt)
			curStart, err2 := time.Parse(time.RFC3339Nano, cur.StartedAt)
			if err1 != nil || err2 != nil {
				t.Fatalf("event %s: attempt times %q, %q", ev.ID, prev.StartedAt, cur.StartedAt)
			}
			due := prevStart.Add(time.Duration(prev.DurationMillis) * time.Millisecond)
			// Times are recorded to the millisecond: allow one either side.
			if earliest := due.Add(delay * 9 / 10).Add(-2 * time.Millisecond); curStart.Before(earliest) {
				t.Errorf("event %s: attempt %d started %s after attempt %d ended, before its delay (2s − 10%%)",
					ev.ID, cur.Number, curStart.Sub(due), prev.Number)
			}
			if due.Before(killed) && curStart.After(killed) {
				firedAfterKill++
			}
			latest = max(latest, curStart.Sub(due)-delay)
		}
	}
	if firedAfterKill == 0 {
		t.Errorf("no attempt scheduled before the kill fired after it: the test proves nothing")
	}
	t.Logf("%d events, %d with three attempts; %d attempts scheduled before the kill fired after it; the latest attempt came %s after its nominal time; %d attempts made again and %d duplicate arrivals (bound %d together)",
		len(sent), threeAttempts, firedAfterKill, latest.Round(time.Millisecond), repeats, dups, clusterFaultDuplicateBound)
	if dups+repeats > clusterFaultDuplicateBound {
		t.Errorf("%d attempts made again and %d duplicates, want at most %d together", repeats, dups, clusterFaultDuplicateBound)
	}
}

// TestClusterNodePartitioned: the node leading BLAZELOCK_EVENTS is cut
// off from the two others for 20 s (45 s in the long variant, longer than
// the 30 s for which an attempt's outcome is retried into the delivery
// log), and until dispatcher a has delivered through another node for
// 5 s, then healed. Its routes stall, as in a network partition, and its clients
// stay connected to it: dispatcher a, which has every node's URL as in
// production and is restarted until nats.go's random pick is that node,
// while b and the publisher use the two others, as scan services that can
// still reach a working node would.
//
// The majority elects new leaders and b carries the load. a's pulls go
// unanswered although its connection is up: its watchdog
// (dispatcher/consume) turns /readyz 503 and moves it to another node,
// where it delivers again within cutOffMoveBound of the cut. Until then
// its acknowledgements and log writes reach no leader, so the messages it
// held are redelivered to b after AckWait. A message a had already
// delivered is sent again by b unless a's record reached the log first:
// at most the attempts a had in flight when the link was cut plus those
// it started before every attempt slot was held by a record it could not
// write, 2 × concurrency, within the bound. After healing, every event
// ends succeeded. The heal counts as a second fault (with its own bound):
// the node that was cut off comes back with higher Raft terms and forces
// new elections of the leaders it had.
//
// Two findings of this test are in the code: replicated buckets are read
// from their leader (natsinfra.Options.LeaderReads: direct gets kept
// timing out on the cut-off former leader until its routes were closed),
// and pulls carry a 1 s heartbeat (dispatcher/consume: a pull lost with
// a leader stalled a lane for 30 s). The cluster's route pings are the
// README's recommendation (5 s, 3 missed), not nats-server's defaults.
func TestClusterNodePartitioned(t *testing.T) {
	t.Parallel()
	c := newClusterOnNATSCluster(t, nil)
	nc := c.natsCluster
	r := &clusterRun{t: t, c: c}
	// The first dispatcher provisions the streams; it connects to n1 and
	// n2, so the leader can be found before choosing whom to cut.
	r.b = c.startDispatcher("b", map[string]string{"NATS_URL": nc.Nodes[0].URL() + "," + nc.Nodes[1].URL()})
	cut := nc.StreamLeader(natsinfra.EventsStream)
	if cut != nc.Nodes[2] {
		// b must be on the majority: restart it there.
		r.b.Terminate(20 * time.Second)
		var urls []string
		for _, n := range nc.Nodes {
			if n != cut {
				urls = append(urls, n.URL())
			}
		}
		r.b.Setenv("NATS_URL", strings.Join(urls, ","))
		r.b.Start()
	}
	r.a = c.startDispatcher("a", nil)
	r.cutOff = r.a
	for starts := 1; connectedURL(t, r.a) != cut.URL(); starts++ {
		if starts == 12 {
			t.Fatalf("dispatcher a connected to another node than %s in %d starts", cut.Name, starts)
		}
		r.a.Terminate(20 * time.Second)
		r.a.Start()
	}
	var majority []*testinfra.NATSNode
	for _, n := range nc.Nodes {
		if n != cut {
			majority = append(majority, n)
		}
	}
	c.usePublisher(nc.Connect(majority...))
	r.eps = c.mixedEndpoints(r.a, r.b, 50*time.Millisecond)
	t.Logf("leaders before the partition: %s; a connected to %s", r.leaders(), cut.Name)
	r.load = c.startLoad(r.eps.ids, 5000, 25*time.Millisecond)

	r.waitAccepted(80, "80 events delivered before the partition")
	stopWatching := watchReadiness(t, r.a)
	at := r.struck("partition of " + cut.Name)
	fmt.Fprintf(r.a.Log, "--- test: partition of %s at %s\n", cut.Name, at.Format(time.RFC3339Nano))
	cut.Partition()
	r.waitResumed(at)
	var moved cutOff
	testinfra.WaitFor(t, time.Until(at.Add(cutOffMoveBound)), "dispatcher a to move to another node and deliver there", func() bool {
		moved = cutOffLog(t, r.a.Log.String(), cut, r.load.sent())
		return !moved.delivered.IsZero()
	})
	// a delivers through the majority for a while before the heal.
	time.Sleep(max(time.Until(at.Add(scaled(20*time.Second, 45*time.Second))), time.Until(moved.delivered.Add(5*time.Second))))
	healed := r.struck("heal of " + cut.Name + " (its higher Raft terms force new elections)")
	cut.Heal()
	fmt.Fprintf(r.a.Log, "--- test: healed %s at %s\n", cut.Name, healed.Format(time.RFC3339Nano))
	seen := stopWatching()
	nc.WaitHealthy(90 * time.Second)
	t.Logf("healed after %s; cluster healthy %s later; leaders: %s", healed.Sub(at).Round(time.Millisecond),
		time.Since(healed).Round(time.Millisecond), r.leaders())
	t.Logf("dispatcher a, cut off: warned that its pulls went unanswered %s after the cut, moved to %s %s after it, delivered there %s after it; its /readyz after the cut: %s",
		moved.stalled.Sub(at).Round(time.Millisecond), moved.to, moved.moved.Sub(at).Round(time.Millisecond),
		moved.delivered.Sub(at).Round(time.Millisecond), describeReadiness(seen, at))
	if moved.stalled.IsZero() || moved.stalled.After(moved.moved) {
		t.Errorf("dispatcher a moved without first reporting its pulls unanswered")
	}
	// Unready from the stall until its pulls are answered on the new node
	// (the watchdog's next look, a second later), then ready again.
	unready := slices.ContainsFunc(seen, func(s readiness) bool {
		return s.code == http.StatusServiceUnavailable && strings.Contains(s.body, "JetStream has answered no pull")
	})
	if !unready || seen[len(seen)-1].code != http.StatusOK {
		t.Errorf("dispatcher a's /readyz did not turn 503 for its unanswered pulls and back to 200 before the heal")
	}

	logs := r.a.Log.String()
	from, to := strings.Index(logs, "--- test: partition"), strings.Index(logs, "--- test: healed")
	r.finish()
	t.Logf("dispatcher a (on %s, then %s) finished %d attempts between the cut and the heal", cut.Name, moved.to,
		strings.Count(logs[from:to], "msg=delivery.attempted"))
}

// cutOffMoveBound bounds how long after the cut the dispatcher on the
// cut-off node delivers through another one. Its pulls go unanswered at
// once, or, where the cut-off node led a's consumer, once that leader
// steps down for lost quorum (nats-server checks every 10 s: up to 20 s);
// the watchdog needs dispatcher/consume's DefaultStallAfter (12 s) of
// silence on every lane, and a second to look.
const cutOffMoveBound = 40 * time.Second

// cutOff is what the dispatcher on the cut-off node logged after the cut:
// when it reported its pulls unanswered, when it reconnected elsewhere
// (to), and when it first attempted to deliver an event published after
// that (so pulled through the new node). Zero times: not yet.
type cutOff struct {
	stalled, moved, delivered time.Time
	to                        string
}

func cutOffLog(t *testing.T, logs string, cut *testinfra.NATSNode, sent []sentEvent) cutOff {
	t.Helper()
	published := map[string]time.Time{}
	for _, ev := range sent {
		published[ev.ID] = ev.Published
	}
	var c cutOff
	i := strings.Index(logs, "--- test: partition")
	if i < 0 {
		return c
	}
	for line := range strings.Lines(logs[i:]) {
		switch {
		case c.stalled.IsZero() && strings.Contains(line, stallLine):
			c.stalled = logTime(t, line)
		case c.moved.IsZero() && strings.Contains(line, `msg="NATS reconnected"`) && !strings.Contains(line, "url="+cut.URL()+"\n"):
			c.moved, c.to = logTime(t, line), strings.TrimSpace(line[strings.Index(line, "url=")+len("url="):])
		case !c.moved.IsZero() && strings.Contains(line, "msg=delivery.attempted"):
			_, rest, _ := strings.Cut(line, " event_id=")
			id, _, _ := strings.Cut(rest, " ")
			if p, ok := published[id]; ok && p.After(c.moved) {
				c.delivered = logTime(t, line)
				return c
			}
		}
	}
	return c
}

// connectedURL is the NATS server a dispatcher connected to at its last
// start (its "dispatcher ready" line).
func connectedURL(t *testing.T, d *dispatcher) string {
	t.Helper()
	logs := d.Log.String()
	i := strings.LastIndex(logs, `msg="dispatcher ready"`)
	if i < 0 {
		t.Fatalf("dispatcher %s ready without saying so", d.Name())
	}
	_, rest, _ := strings.Cut(logs[i:], " nats=")
	url, _, _ := strings.Cut(rest, " ")
	return url
}

// logTime is the time of a dispatcher's log line.
func logTime(t *testing.T, line string) time.Time {
	t.Helper()
	field, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
	at, err := time.Parse(time.RFC3339Nano, field)
	if err != nil {
		t.Fatalf("log line without a time: %s", line)
	}
	return at
}

// readiness is one answer of a dispatcher's /readyz.
type readiness struct {
	at   time.Time
	code int
	body string
}

// watchReadiness polls d's /readyz every 50 ms until the returned func is
// called (or the test ends), which returns each change of the answer.
func watchReadiness(t *testing.T, d *dispatcher) (stop func() []readiness) {
	url := "http://" + d.Addr() + "/readyz"
	client := &http.Client{Timeout: 2 * time.Second}
	done, out := make(chan struct{}), make(chan []readiness, 1)
	go func() {
		var seen []readiness
		for {
			select {
			case <-done:
				out <- seen
				return
			case <-time.After(50 * time.Millisecond):
			}
			now := readiness{at: time.Now()}
			if resp, err := client.Get(url); err != nil {
				now.body = err.Error()
			} else {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				now.code, now.body = resp.StatusCode, strings.TrimSpace(string(body))
			}
			if len(seen) == 0 || seen[len(seen)-1].code != now.code || seen[len(seen)-1].body != now.body {
				seen = append(seen, now)
			}
		}
	}()
	var once sync.Once
	var seen []readiness
	stop = func() []readiness {
		once.Do(func() { close(done); seen = <-out })
		return seen
	}
	t.Cleanup(func() { stop() })
	return stop
}

func describeReadiness(seen []readiness, from time.Time) string {
	var parts []string
	for _, s := range seen {
		parts = append(parts, fmt.Sprintf("%s: %d %s", s.at.Sub(from).Round(time.Millisecond), s.code, s.body))
	}
	return strings.Join(parts, "; ")
}

// timeline counts the accepted deliveries in each second of n, starting
// before at: what a dashboard of the endpoints would have shown.
func timeline(at time.Time, before time.Duration, n int, eps ...*endpoint) string {
	counts := make([]int, n)
	for _, ep := range eps {
		for _, a := range ep.Deliveries() {
			if a.Outcome != receiver.OutcomeAccepted {
				continue
			}
			if i := int(a.ArrivedAt.Sub(at.Add(-before)) / time.Second); i >= 0 && i < n {
				counts[i]++
			}
		}
	}
	return fmt.Sprint(counts)
}
