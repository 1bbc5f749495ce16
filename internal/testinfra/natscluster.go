package testinfra

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/blazelock/webhooks/internal/harness"
)

// A three-node NATS cluster for fault tests: harness.NATSCluster (real
// nats-server child processes, so a kill is a crash) whose nodes run the
// nats-server built from the module this repository pins (go.mod), so it
// is the same server version as the embedded one, not whatever
// nats-server the machine may have. The build costs a few seconds once
// (the server package is already in the build cache).
//
// Every route between two nodes runs through a Proxy of its own, so one
// node can be cut off from the others (Partition) and healed. Nodes list
// every other node's proxy as an explicit route and advertise a route
// address nothing listens on, so gossip never opens a direct route around
// the proxies.

// NATSNode is one node of a NATSCluster.
type NATSNode struct {
	*harness.NATSNode
	c *NATSCluster
	// Log is everything the node printed, across restarts.
	Log *LogBuffer
	// out are the proxies this node dials its peers through; in, the
	// proxies its peers dial it through.
	out, in []*Proxy
}

// NATSCluster is a running three-node JetStream cluster.
type NATSCluster struct {
	t      testing.TB
	h      *harness.NATSCluster
	Nodes  []*NATSNode
	byName map[string]*NATSNode
}

// StartNATSCluster starts three JetStream nodes (n1, n2, n3) on loopback,
// each with its own store and ports, waits until they form a cluster with
// a JetStream meta leader, and stops them at cleanup. It never uses
// NATS_URL: a fault test needs servers it owns.
func StartNATSCluster(t testing.TB) *NATSCluster {
	t.Helper()
	bin := NATSServerBinary(t)
	h, err := harness.NewNATSCluster(harness.NATSClusterOptions{
		Size:    3,
		Dir:     t.TempDir(),
		Command: func(conf string) *exec.Cmd { return exec.Command(bin, "-c", conf) },
	})
	if err != nil {
		t.Fatalf("testinfra: %v", err)
	}
	c := &NATSCluster{t: t, h: h, byName: map[string]*NATSNode{}}
	for _, hn := range h.Nodes {
		n := &NATSNode{NATSNode: hn, c: c, Log: &LogBuffer{}}
		hn.Output = n.Log
		c.Nodes = append(c.Nodes, n)
		c.byName[n.Name] = n
	}
	// The proxy from i to j carries the routes node i opens to node j.
	for _, from := range c.Nodes {
		from.Routes = nil
		for _, to := range c.Nodes {
			if to != from {
				p := StartProxy(t, fmt.Sprintf("127.0.0.1:%d", to.RoutePort))
				from.out = append(from.out, p)
				to.in = append(to.in, p)
				from.Routes = append(from.Routes, p.Addr())
			}
		}
	}
	h.AdvertiseRoute = fmt.Sprintf("127.0.0.1:%d", FreePort(t)) // see the comment above
	t.Cleanup(c.cleanup)
	if err := h.Start(context.Background()); err != nil {
		t.Fatalf("testinfra: start the NATS cluster: %v", err)
	}
	return c
}

func (c *NATSCluster) cleanup() {
	c.h.Kill()
	if c.t.Failed() {
		for _, n := range c.Nodes {
			logs := n.Log.String()
			if len(logs) > 8000 {
				logs = "…" + logs[len(logs)-8000:]
			}
			c.t.Logf("nats-server %s log (tail):\n%s", n.Name, logs)
		}
	}
}

// URLs is the client URL of every node, comma-separated, as NATS_URL
// takes them.
func (c *NATSCluster) URLs() string { return c.h.URLs() }

// Node returns the node called name, or nil.
func (c *NATSCluster) Node(name string) *NATSNode { return c.byName[name] }

// Start starts a stopped node again, on the same ports and store, and
// waits until it reports healthy (JetStream caught up with the cluster).
func (n *NATSNode) Start() {
	n.c.t.Helper()
	if err := n.NATSNode.Start(context.Background()); err != nil {
		n.c.t.Fatalf("testinfra: %v", err)
	}
}

// Kill sends SIGKILL and waits until the process is gone: a crash, with
// nothing flushed and no leadership handed over.
func (n *NATSNode) Kill() {
	n.c.t.Helper()
	if !n.Running() {
		n.c.t.Fatalf("testinfra: nats-server %s is not running", n.Name)
	}
	n.NATSNode.Kill()
}

// LameDuck puts the node in lame duck mode and waits up to timeout for it
// to exit (see harness.NATSNode.LameDuck).
func (n *NATSNode) LameDuck(timeout time.Duration) {
	n.c.t.Helper()
	if err := n.NATSNode.LameDuck(timeout); err != nil {
		n.c.t.Fatalf("testinfra: %v", err)
	}
}

// Partition cuts every route between this node and the others (its
// clients stay connected to it), as a network partition would.
func (n *NATSNode) Partition() {
	fmt.Fprintf(n.Log, "--- test: partitioned %s at %s\n", n.Name, time.Now().Format(time.RFC3339Nano))
	for _, p := range append(slices.Clone(n.out), n.in...) {
		p.Cut()
	}
}

// Heal restores the routes Partition cut.
func (n *NATSNode) Heal() {
	fmt.Fprintf(n.Log, "--- test: healed %s at %s\n", n.Name, time.Now().Format(time.RFC3339Nano))
	for _, p := range append(slices.Clone(n.out), n.in...) {
		p.Heal()
	}
}

// Healthy reports whether the node answers its /healthz with 200.
func (n *NATSNode) Healthy() bool { return n.NATSNode.Healthy(context.Background()) }

// Jsz returns the node's /jsz (its JetStream report).
func (n *NATSNode) Jsz() (*server.JSInfo, error) { return n.NATSNode.Jsz(context.Background(), false) }

// WaitHealthy waits until every running node is healthy and the running
// nodes agree on a JetStream meta leader that is one of them.
func (c *NATSCluster) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	if err := c.h.WaitHealthy(context.Background(), timeout); err != nil {
		c.t.Fatalf("testinfra: %v", err)
	}
}

// MetaLeader returns the node that leads the JetStream meta group (the
// one that places streams and consumers), waiting until a majority of the
// nodes name the same running node.
func (c *NATSCluster) MetaLeader() *NATSNode {
	c.t.Helper()
	return c.wrap(c.h.MetaLeader(context.Background()))
}

// StreamLeader returns the node that leads the stream's Raft group (where
// its messages are stored first), waiting like MetaLeader.
func (c *NATSCluster) StreamLeader(stream string) *NATSNode {
	c.t.Helper()
	return c.wrap(c.h.StreamLeader(context.Background(), stream))
}

// ConsumerLeader returns the node that leads a durable consumer's Raft
// group (where its acknowledgements are applied), waiting like MetaLeader.
func (c *NATSCluster) ConsumerLeader(stream, consumer string) *NATSNode {
	c.t.Helper()
	return c.wrap(c.h.ConsumerLeader(context.Background(), stream, consumer))
}

// wrap returns the test's node for a leader harness found.
func (c *NATSCluster) wrap(l *harness.NATSNode, err error) *NATSNode {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
	return c.Node(l.Name)
}

// Connect opens a client connection to the given nodes (every node when
// none is given), reconnecting forever, closed at cleanup. Given nodes
// pin the client: it ignores the other servers the cluster advertises,
// so a test can keep a publisher away from a node it cuts off.
func (c *NATSCluster) Connect(nodes ...*NATSNode) *nats.Conn {
	c.t.Helper()
	opts := []nats.Option{nats.Name("testinfra-cluster-client"), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}
	urls := c.URLs()
	if len(nodes) > 0 {
		var list []string
		for _, n := range nodes {
			list = append(list, n.URL())
		}
		urls = strings.Join(list, ",")
		opts = append(opts, nats.IgnoreDiscoveredServers())
	}
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		c.t.Fatalf("testinfra: connect to the NATS cluster at %s: %v", urls, err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}
