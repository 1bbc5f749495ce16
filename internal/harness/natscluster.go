package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSServerPackage is nats-server's main package: GoBuild builds it at
// the version go.mod pins, the one the dispatcher embeds.
const NATSServerPackage = "github.com/nats-io/nats-server/v2"

// A JetStream cluster of nats-server child processes on loopback.
//
// Child processes rather than in-process servers because a fault test
// needs real crashes: Kill is SIGKILL, so nothing is flushed or stepped
// down (an in-process Server.Shutdown is a clean shutdown, not a crash),
// and LameDuck is the signal an operator sends before an upgrade. What a
// node runs is the caller's choice (NATSClusterOptions.Command): a
// nats-server binary built with GoBuild, or a program embedding the
// server.

// Cluster timing: how long a node or the cluster may take to become
// healthy, and how often to ask. Every failed /healthz is a warning in
// the server's log, and the servers share the machine with their caller:
// ask gently.
const (
	natsHealthyWithin   = 60 * time.Second
	natsLeaderWithin    = 30 * time.Second
	natsPollEvery       = 100 * time.Millisecond
	natsMonitorTimeout  = 2 * time.Second
	natsProbeCallWithin = 2 * time.Second
)

// NATSClusterOptions configure NewNATSCluster.
type NATSClusterOptions struct {
	// Size is the number of nodes, named n1, n2, ….
	Size int
	// Dir holds every node's store and config file (created if missing).
	Dir string
	// Command returns the command that runs a node from its config file,
	// e.g. exec.Command(natsServerBin, "-c", conf).
	Command func(conf string) *exec.Cmd
}

// NATSCluster is a JetStream cluster of child processes. NewNATSCluster
// prepares it; Start runs it.
type NATSCluster struct {
	Nodes []*NATSNode
	// AdvertiseRoute, when set, is the route address every node gossips
	// instead of its own. A caller that routes through proxies (see
	// NATSNode.Routes) sets an address nothing listens on, so gossip never
	// opens a direct route around them.
	AdvertiseRoute string
	command        func(conf string) *exec.Cmd
	http           *http.Client
}

// NATSNode is one node of a NATSCluster. Its ports and store stay the
// same across restarts.
type NATSNode struct {
	Name                               string
	ClientPort, RoutePort, MonitorPort int
	StoreDir                           string
	// Routes are the host:port addresses this node opens its routes to:
	// the other nodes' route listeners, or proxies in front of them. Set
	// them before Start.
	Routes []string
	// Output receives the node's output and the markers of every start
	// and signal, across restarts (nil: discarded). Set it before Start.
	Output io.Writer

	c    *NATSCluster
	conf string
	mu   sync.Mutex
	proc *Process
	// stopped is set when the node is stopped on purpose; a node that
	// exits otherwise is an error.
	stopped bool
}

// NewNATSCluster picks every node's ports and routes each node directly
// to the others. It starts nothing.
func NewNATSCluster(o NATSClusterOptions) (*NATSCluster, error) {
	if o.Size < 1 || o.Command == nil {
		return nil, errors.New("a NATS cluster needs a size of at least 1 and a command")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	c := &NATSCluster{command: o.Command, http: &http.Client{Timeout: natsMonitorTimeout}}
	for i := range o.Size {
		n := &NATSNode{c: c, Name: fmt.Sprintf("n%d", i+1)}
		for _, port := range []*int{&n.ClientPort, &n.RoutePort, &n.MonitorPort} {
			p, err := FreePort()
			if err != nil {
				return nil, err
			}
			*port = p
		}
		n.StoreDir = filepath.Join(o.Dir, n.Name)
		n.conf = filepath.Join(o.Dir, n.Name+".conf")
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		for _, peer := range c.Nodes {
			if peer != n {
				n.Routes = append(n.Routes, fmt.Sprintf("127.0.0.1:%d", peer.RoutePort))
			}
		}
	}
	return c, nil
}

// Start writes every node's config file, starts every node, waits until
// they form a cluster with a JetStream meta leader, and probes JetStream
// through each node (see probe). ctx bounds the waits, not the nodes'
// lives. On an error the nodes keep running: Kill stops them.
func (c *NATSCluster) Start(ctx context.Context) error {
	for _, n := range c.Nodes {
		if err := n.writeConfig(); err != nil {
			return err
		}
	}
	for _, n := range c.Nodes {
		if err := n.spawn(); err != nil {
			return err
		}
	}
	if err := c.WaitHealthy(ctx, natsHealthyWithin); err != nil {
		return err
	}
	return c.probe(ctx)
}

// writeConfig writes the node's nats-server config file.
func (n *NATSNode) writeConfig() error {
	var routes []string
	for _, r := range n.Routes {
		routes = append(routes, fmt.Sprintf("%q", "nats-route://"+r))
	}
	advertise := fmt.Sprintf("127.0.0.1:%d", n.RoutePort)
	if n.c.AdvertiseRoute != "" {
		advertise = n.c.AdvertiseRoute
	}
	conf := fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
# Lame duck mode (rolling restarts): after the grace period, clients are
# closed one by one at most a second apart, spread over the duration
# (30s is nats-server's minimum; with a handful of clients it takes
# seconds).
lame_duck_duration: "30s"
lame_duck_grace_period: "2s"
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 2GB
}
cluster {
  name: "blazelock-test"
  listen: "127.0.0.1:%d"
  advertise: %q
  routes: [%s]
  # What the README recommends for production: a route whose peer stopped
  # answering is closed after 3 unanswered pings 5s apart (15-20 s) rather
  # than nats-server's default of 2 pings 30s apart (60-90 s). Until then
  # the servers keep routing requests to the cut-off node's subscribers,
  # among them a third of the replicas that answer KV reads.
  ping_interval: "5s"
  ping_max: 3
}
`, n.Name, n.ClientPort, n.MonitorPort, n.StoreDir, n.RoutePort, advertise, strings.Join(routes, ", "))
	if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", n.conf, err)
	}
	return nil
}

// probe creates, writes and deletes a replicated stream through each node
// in turn, until every step answers. A freshly formed cluster reports
// healthy while its routes are still being sorted out (duplicate routes
// are closed and opened again), and a JetStream API answer sent across a
// route in that moment can be lost: a dispatcher started then waited for
// the answer to its first stream creation until its provisioning timed
// out (seen twice in about thirty starts). After the probe, the cluster
// has answered through every node.
func (c *NATSCluster) probe(ctx context.Context) error {
	for _, n := range c.Nodes {
		if err := n.probe(ctx, len(c.Nodes)); err != nil {
			return err
		}
	}
	return nil
}

func (n *NATSNode) probe(ctx context.Context, replicas int) error {
	nc, err := nats.Connect(n.URL(), nats.Name("harness-probe"), nats.IgnoreDiscoveredServers())
	if err != nil {
		return fmt.Errorf("connect to %s: %w", n.Name, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	name := "HARNESS_PROBE_" + strings.ToUpper(n.Name)
	subject := "harness.probe." + n.Name
	return Poll(ctx, natsHealthyWithin, natsPollEvery, "JetStream to answer through "+n.Name, func() (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, natsProbeCallWithin)
		defer cancel()
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Replicas: replicas, Storage: jetstream.MemoryStorage}); err != nil {
			return false, nil
		}
		if _, err := js.Publish(ctx, subject, nil); err != nil {
			return false, nil
		}
		return js.DeleteStream(ctx, name) == nil, nil
	})
}

// URLs is the client URL of every node, comma-separated, as NATS_URL
// takes them.
func (c *NATSCluster) URLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.URL())
	}
	return strings.Join(urls, ",")
}

// Node returns the node called name, or nil.
func (c *NATSCluster) Node(name string) *NATSNode {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Kill stops every node with SIGKILL.
func (c *NATSCluster) Kill() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// URL is the node's client URL.
func (n *NATSNode) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort) }

// Process is the node's current process, or nil before its first start.
func (n *NATSNode) Process() *Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// spawn starts the node's process without waiting for it.
func (n *NATSNode) spawn() error {
	cmd := n.c.command(n.conf)
	cmd.Stdout, cmd.Stderr = n.Output, n.Output
	p, err := StartProcess(n.Name, cmd, n.Output)
	if err != nil {
		return fmt.Errorf("nats-server %w", err)
	}
	n.mu.Lock()
	n.proc, n.stopped = p, false
	n.mu.Unlock()
	return nil
}

// up reports whether the node runs; a node that exited although nobody
// stopped it (a start-up or configuration error) is an error.
func (n *NATSNode) up() (bool, error) {
	n.mu.Lock()
	p, stopped := n.proc, n.stopped
	n.mu.Unlock()
	switch {
	case p == nil:
		return false, nil
	case p.Running():
		return true, nil
	case !stopped:
		return false, fmt.Errorf("nats-server %s exited on its own (%s)", n.Name, p.State())
	}
	return false, nil
}

// Running reports whether the node's process is alive.
func (n *NATSNode) Running() bool {
	p := n.Process()
	return p != nil && p.Running()
}

// Start starts a stopped node again, on the same ports and store, and
// waits until it reports healthy (JetStream caught up with the cluster).
func (n *NATSNode) Start(ctx context.Context) error {
	if n.Running() {
		return fmt.Errorf("nats-server %s is already running", n.Name)
	}
	if err := n.spawn(); err != nil {
		return err
	}
	return Poll(ctx, natsHealthyWithin, natsPollEvery, "nats-server "+n.Name+" healthy after its restart", func() (bool, error) {
		up, err := n.up()
		return up && n.Healthy(ctx), err
	})
}

// Kill sends SIGKILL and waits until the process is gone: a crash, with
// nothing flushed and no leadership handed over.
func (n *NATSNode) Kill() {
	n.mu.Lock()
	p := n.proc
	n.stopped = true
	n.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// LameDuck puts the node in lame duck mode (SIGUSR2, what
// `nats-server --signal ldm` sends) and waits up to timeout for it to
// exit: it hands its JetStream leaderships to other nodes, stops
// accepting clients, closes its clients over lame_duck_duration so they
// reconnect elsewhere, and shuts down. This is the first half of a
// rolling upgrade step. A node still running after timeout is killed,
// and that is an error.
func (n *NATSNode) LameDuck(timeout time.Duration) error {
	n.mu.Lock()
	p := n.proc
	n.stopped = true
	n.mu.Unlock()
	if p == nil {
		return fmt.Errorf("nats-server %s was never started", n.Name)
	}
	if err := p.Signal(syscall.SIGUSR2); err != nil {
		return fmt.Errorf("lame duck: %w", err)
	}
	select {
	case <-p.Exited():
		return nil
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("nats-server %s did not exit within %s of entering lame duck mode", n.Name, timeout)
	}
}

// Healthy reports whether the node answers its /healthz with 200: it
// serves clients and its JetStream state is current with the cluster.
func (n *NATSNode) Healthy(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/healthz", n.MonitorPort), nil)
	if err != nil {
		return false
	}
	resp, err := n.c.http.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Jsz returns the node's /jsz (its JetStream report); with details, every
// account's streams and consumers too.
func (n *NATSNode) Jsz(ctx context.Context, details bool) (*server.JSInfo, error) {
	u := fmt.Sprintf("http://127.0.0.1:%d/jsz", n.MonitorPort)
	if details {
		u += "?accounts=true&streams=true&consumers=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/jsz of %s: %s", n.Name, resp.Status)
	}
	var info server.JSInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return nil, fmt.Errorf("/jsz of %s: %w", n.Name, err)
	}
	return &info, nil
}

// WaitHealthy waits up to timeout until every running node is healthy and
// the running nodes agree on a JetStream meta leader that is one of them.
func (c *NATSCluster) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	return Poll(ctx, timeout, natsPollEvery, "every running nats-server healthy, with an agreed meta leader", func() (bool, error) {
		for _, n := range c.Nodes {
			up, err := n.up()
			if err != nil {
				return false, err
			}
			if up && !n.Healthy(ctx) {
				return false, nil
			}
		}
		return c.agreedLeader(ctx, metaLeaderIn, false) != nil, nil
	})
}

// LeaderIn reads a leader's name from a node's /jsz ("" when it names
// none).
type LeaderIn func(*server.JSInfo) string

func metaLeaderIn(info *server.JSInfo) string {
	if info.Meta == nil {
		return ""
	}
	return info.Meta.Leader
}

// agreedLeader asks every running node for a leader (through /jsz) and
// returns the running node that a majority of the cluster names (two of
// three), or nil. A node cut off from the others may still name an old
// leader: the majority decides. With details, /jsz includes every
// stream and consumer.
func (c *NATSCluster) agreedLeader(ctx context.Context, leaderIn LeaderIn, details bool) *NATSNode {
	votes := map[string]int{}
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		info, err := n.Jsz(ctx, details)
		if err != nil {
			continue
		}
		if name := leaderIn(info); name != "" {
			votes[name]++
		}
	}
	for name, v := range votes {
		if l := c.Node(name); l != nil && v > len(c.Nodes)/2 && l.Running() {
			return l
		}
	}
	return nil
}

// Leader waits until a majority of the nodes name the same running node
// as the leader leaderIn reads (what names it, for the error), and
// returns it. details is Jsz's.
func (c *NATSCluster) Leader(ctx context.Context, what string, details bool, leaderIn LeaderIn) (*NATSNode, error) {
	var l *NATSNode
	err := Poll(ctx, natsLeaderWithin, natsPollEvery, what, func() (bool, error) {
		l = c.agreedLeader(ctx, leaderIn, details)
		return l != nil, nil
	})
	return l, err
}

// MetaLeader returns the node that leads the JetStream meta group (the
// one that places streams and consumers), waiting as Leader does.
func (c *NATSCluster) MetaLeader(ctx context.Context) (*NATSNode, error) {
	return c.Leader(ctx, "the JetStream meta leader", false, metaLeaderIn)
}

// StreamLeader returns the node that leads the stream's Raft group (where
// its messages are stored first), waiting as Leader does.
func (c *NATSCluster) StreamLeader(ctx context.Context, stream string) (*NATSNode, error) {
	return c.Leader(ctx, "the leader of stream "+stream, true, func(info *server.JSInfo) string {
		if sd := streamDetail(info, stream); sd != nil && sd.Cluster != nil {
			return sd.Cluster.Leader
		}
		return ""
	})
}

// ConsumerLeader returns the node that leads a durable consumer's Raft
// group (where its acknowledgements are applied), waiting as Leader does.
func (c *NATSCluster) ConsumerLeader(ctx context.Context, stream, consumer string) (*NATSNode, error) {
	return c.Leader(ctx, "the leader of consumer "+consumer, true, func(info *server.JSInfo) string {
		if sd := streamDetail(info, stream); sd != nil {
			for _, ci := range sd.Consumer {
				if ci != nil && ci.Name == consumer && ci.Cluster != nil {
					return ci.Cluster.Leader
				}
			}
		}
		return ""
	})
}

func streamDetail(info *server.JSInfo, stream string) *server.StreamDetail {
	for _, acc := range info.AccountDetails {
		for i := range acc.Streams {
			if acc.Streams[i].Name == stream {
				return &acc.Streams[i]
			}
		}
	}
	return nil
}
