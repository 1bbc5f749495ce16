package testinfra

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A three-node NATS cluster for fault tests.
//
// Each node is a real nats-server child process, built once per test
// process from the nats-server module this repository pins (go.mod), so
// it is the same server version as the embedded one, not whatever
// nats-server the machine may have. Child processes rather than
// in-process servers because a fault test needs real crashes: Kill is
// SIGKILL, so nothing is flushed or stepped down (an in-process
// Server.Shutdown is a clean shutdown, not a crash), and LameDuck is the
// signal an operator sends before an upgrade. The build costs a few
// seconds once (the server package is already in the build cache).
//
// Every route between two nodes runs through a Proxy of its own, so one
// node can be cut off from the others (Partition) and healed. Nodes list
// every other node's proxy as an explicit route and advertise a route
// address nothing listens on, so gossip never opens a direct route around
// the proxies.

// NATSNode is one node of a NATSCluster.
type NATSNode struct {
	c    *NATSCluster
	Name string
	// ClientPort, RoutePort and MonitorPort stay the same across restarts,
	// and so does StoreDir.
	ClientPort, RoutePort, MonitorPort int
	StoreDir                           string
	conf                               string
	// Log is everything the node printed, across restarts.
	Log *LogBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	// stopped is set when the test stops the node on purpose; a node that
	// exits otherwise fails the test.
	stopped bool
	// out are the proxies this node dials its peers through; in, the
	// proxies its peers dial it through.
	out, in []*Proxy
}

// NATSCluster is a running three-node JetStream cluster.
type NATSCluster struct {
	t     testing.TB
	bin   string
	Nodes []*NATSNode
	http  *http.Client
}

// StartNATSCluster starts three JetStream nodes (n1, n2, n3) on loopback,
// each with its own store and ports, waits until they form a cluster with
// a JetStream meta leader, and stops them at cleanup. It never uses
// NATS_URL: a fault test needs servers it owns.
func StartNATSCluster(t testing.TB) *NATSCluster {
	t.Helper()
	c := &NATSCluster{t: t, bin: NATSServerBinary(t), http: &http.Client{Timeout: 2 * time.Second}}
	dir := t.TempDir()
	const size = 3
	for i := range size {
		n := &NATSNode{
			c: c, Name: fmt.Sprintf("n%d", i+1),
			ClientPort: FreePort(t), RoutePort: FreePort(t), MonitorPort: FreePort(t),
			Log: &LogBuffer{},
		}
		n.StoreDir = filepath.Join(dir, n.Name)
		n.conf = filepath.Join(dir, n.Name+".conf")
		c.Nodes = append(c.Nodes, n)
	}
	// proxy[i][j] carries the routes node i opens to node j.
	for i, from := range c.Nodes {
		for j, to := range c.Nodes {
			if i == j {
				continue
			}
			p := StartProxy(t, fmt.Sprintf("127.0.0.1:%d", to.RoutePort))
			from.out = append(from.out, p)
			to.in = append(to.in, p)
		}
	}
	nowhere := FreePort(t) // advertised route address: see the comment above
	for _, n := range c.Nodes {
		var routes []string
		for _, p := range n.out {
			routes = append(routes, fmt.Sprintf("%q", "nats-route://"+p.Addr()))
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
  advertise: "127.0.0.1:%d"
  routes: [%s]
  # What the README recommends for production: a route whose peer stopped
  # answering is closed after 3 unanswered pings 5s apart (15-20 s) rather
  # than nats-server's default of 2 pings 30s apart (60-90 s). Until then
  # the servers keep routing requests to the cut-off node's subscribers,
  # among them a third of the replicas that answer KV reads.
  ping_interval: "5s"
  ping_max: 3
}
`, n.Name, n.ClientPort, n.MonitorPort, n.StoreDir, n.RoutePort, nowhere, strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatalf("testinfra: write %s: %v", n.conf, err)
		}
	}
	t.Cleanup(c.cleanup)
	for _, n := range c.Nodes {
		n.spawn()
	}
	c.WaitHealthy(60 * time.Second)
	c.probe()
	return c
}

// probe creates, writes and deletes a replicated stream through each node
// in turn, until every step answers. A freshly formed cluster reports
// healthy while its routes are still being sorted out (duplicate routes
// are closed and opened again), and a JetStream API answer sent across a
// route in that moment can be lost: a dispatcher started then waited for
// the answer to its first stream creation until its provisioning timed
// out (seen twice in about thirty starts). After the probe, the cluster
// has answered through every node.
func (c *NATSCluster) probe() {
	c.t.Helper()
	for _, n := range c.Nodes {
		nc, err := nats.Connect(n.URL(), nats.Name("testinfra-probe"), nats.IgnoreDiscoveredServers())
		if err != nil {
			c.t.Fatalf("testinfra: connect to %s: %v", n.Name, err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			c.t.Fatal(err)
		}
		name := "TESTINFRA_PROBE_" + strings.ToUpper(n.Name)
		c.poll(60*time.Second, "JetStream to answer through "+n.Name, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"testinfra.probe." + n.Name}, Replicas: len(c.Nodes), Storage: jetstream.MemoryStorage}); err != nil {
				return false
			}
			if _, err := js.Publish(ctx, "testinfra.probe."+n.Name, nil); err != nil {
				return false
			}
			return js.DeleteStream(ctx, name) == nil
		})
		nc.Close()
	}
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

// URL is the node's client URL.
func (n *NATSNode) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort) }

func (c *NATSCluster) cleanup() {
	for _, n := range c.Nodes {
		n.kill()
	}
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

// spawn starts the node's process without waiting for it.
func (n *NATSNode) spawn() {
	t := n.c.t
	t.Helper()
	cmd := exec.Command(n.c.bin, "-c", n.conf)
	cmd.Stdout, cmd.Stderr = n.Log, n.Log
	fmt.Fprintf(n.Log, "--- test: starting %s at %s\n", n.Name, time.Now().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		t.Fatalf("testinfra: start nats-server %s: %v", n.Name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	n.mu.Lock()
	n.cmd, n.exited, n.stopped = cmd, exited, false
	n.mu.Unlock()
}

// up reports whether the node runs, and fails the test if it exited
// although the test did not stop it (a start-up or configuration error).
func (n *NATSNode) up() bool {
	if n.Running() {
		return true
	}
	n.mu.Lock()
	crashed := n.cmd != nil && !n.stopped
	n.mu.Unlock()
	if crashed {
		n.c.t.Fatalf("testinfra: nats-server %s exited on its own:\n%s", n.Name, n.Log.String())
	}
	return false
}

// Running reports whether the node's process is alive.
func (n *NATSNode) Running() bool {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Start starts a stopped node again, on the same ports and store, and
// waits until it reports healthy (JetStream caught up with the cluster).
func (n *NATSNode) Start() {
	n.c.t.Helper()
	if n.Running() {
		n.c.t.Fatalf("testinfra: nats-server %s is already running", n.Name)
	}
	n.spawn()
	n.c.poll(60*time.Second, "nats-server "+n.Name+" healthy after its restart", func() bool { return n.up() && n.Healthy() })
}

// Kill sends SIGKILL and waits until the process is gone: a crash, with
// nothing flushed and no leadership handed over.
func (n *NATSNode) Kill() {
	n.c.t.Helper()
	if !n.Running() {
		n.c.t.Fatalf("testinfra: nats-server %s is not running", n.Name)
	}
	n.kill()
}

func (n *NATSNode) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.stopped = true
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	fmt.Fprintf(n.Log, "--- test: SIGKILL to %s at %s\n", n.Name, time.Now().Format(time.RFC3339Nano))
	_ = cmd.Process.Kill()
	<-exited
}

// LameDuck puts the node in lame duck mode (SIGUSR2, what
// `nats-server --signal ldm` sends) and waits for it to exit: it hands
// its JetStream leaderships to other nodes, stops accepting clients,
// closes its clients over LameDuckDuration so they reconnect elsewhere,
// and shuts down. This is the first half of a rolling upgrade step.
func (n *NATSNode) LameDuck(timeout time.Duration) {
	t := n.c.t
	t.Helper()
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.stopped = true
	n.mu.Unlock()
	fmt.Fprintf(n.Log, "--- test: SIGUSR2 (lame duck) to %s at %s\n", n.Name, time.Now().Format(time.RFC3339Nano))
	if err := cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatalf("testinfra: lame duck %s: %v", n.Name, err)
	}
	select {
	case <-exited:
	case <-time.After(timeout):
		n.kill()
		t.Fatalf("testinfra: nats-server %s did not exit within %s of entering lame duck mode", n.Name, timeout)
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

// Healthy reports whether the node answers its /healthz with 200: it
// serves clients and its JetStream state is current with the cluster.
func (n *NATSNode) Healthy() bool {
	resp, err := n.c.http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.MonitorPort))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Jsz returns the node's /jsz (its JetStream report).
func (n *NATSNode) Jsz() (*server.JSInfo, error) { return n.jsz(false) }

// jsz with details adds every account's streams and consumers.
func (n *NATSNode) jsz(details bool) (*server.JSInfo, error) {
	u := fmt.Sprintf("http://127.0.0.1:%d/jsz", n.MonitorPort)
	if details {
		u += "?accounts=true&streams=true&consumers=true"
	}
	resp, err := n.c.http.Get(u)
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

// poll is WaitFor at a gentler pace: every failed /healthz is a warning
// in the server's log, and the servers share the machine with the test.
func (c *NATSCluster) poll(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitHealthy waits until every running node is healthy and the running
// nodes agree on a JetStream meta leader that is one of them.
func (c *NATSCluster) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	c.poll(timeout, "every running nats-server healthy, with an agreed meta leader", func() bool {
		for _, n := range c.Nodes {
			if n.up() && !n.Healthy() {
				return false
			}
		}
		return c.agreedLeader(func(info *server.JSInfo) string {
			if info.Meta == nil {
				return ""
			}
			return info.Meta.Leader
		}, false) != nil
	})
}

// agreedLeader asks every running node for a leader (through /jsz) and
// returns the running node that a majority of the cluster names (two of
// three), or nil. A node cut off from the others may still name an old
// leader: the majority decides. With details, /jsz includes every
// stream and consumer.
func (c *NATSCluster) agreedLeader(leaderIn func(*server.JSInfo) string, details bool) *NATSNode {
	votes := map[string]int{}
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		info, err := n.jsz(details)
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

// MetaLeader returns the node that leads the JetStream meta group (the
// one that places streams and consumers), waiting until a majority of the
// nodes name the same running node.
func (c *NATSCluster) MetaLeader() *NATSNode {
	c.t.Helper()
	return c.leader("the JetStream meta leader", false, func(info *server.JSInfo) string {
		if info.Meta == nil {
			return ""
		}
		return info.Meta.Leader
	})
}

// StreamLeader returns the node that leads the stream's Raft group (where
// its messages are stored first), waiting like MetaLeader.
func (c *NATSCluster) StreamLeader(stream string) *NATSNode {
	c.t.Helper()
	return c.leader("the leader of stream "+stream, true, func(info *server.JSInfo) string {
		if sd := streamDetail(info, stream); sd != nil && sd.Cluster != nil {
			return sd.Cluster.Leader
		}
		return ""
	})
}

// ConsumerLeader returns the node that leads a durable consumer's Raft
// group (where its acknowledgements are applied), waiting like MetaLeader.
func (c *NATSCluster) ConsumerLeader(stream, consumer string) *NATSNode {
	c.t.Helper()
	return c.leader("the leader of consumer "+consumer, true, func(info *server.JSInfo) string {
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

func (c *NATSCluster) leader(what string, details bool, leaderIn func(*server.JSInfo) string) *NATSNode {
	c.t.Helper()
	var l *NATSNode
	c.poll(30*time.Second, what, func() bool {
		l = c.agreedLeader(leaderIn, details)
		return l != nil
	})
	return l
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

// The nats-server binary, built once per test process.
var natsBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// NATSServerBinary returns a nats-server built from the module's own
// nats-server dependency (`go build github.com/nats-io/nats-server/v2`),
// once per test process. A package whose tests use it removes the build
// with RemoveBuilds in its TestMain.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	natsBuild.once.Do(func() {
		natsBuild.dir, natsBuild.err = os.MkdirTemp("", "testinfra-nats-server-")
		if natsBuild.err != nil {
			return
		}
		natsBuild.path = filepath.Join(natsBuild.dir, "nats-server")
		out, err := exec.Command("go", "build", "-o", natsBuild.path, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsBuild.err = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsBuild.err != nil {
		t.Fatalf("testinfra: %v", natsBuild.err)
	}
	return natsBuild.path
}

// RemoveBuilds deletes the binaries this package built (call it from
// TestMain after m.Run).
func RemoveBuilds() {
	if natsBuild.dir != "" {
		_ = os.RemoveAll(natsBuild.dir)
	}
}
