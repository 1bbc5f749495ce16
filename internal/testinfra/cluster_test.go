package testinfra

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/internal/harness"
)

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveBuilds()
	os.Exit(code)
}

// TestProxyCutStallsAndHealResumes: a cut link delivers nothing and
// refuses new connections; healing delivers what was sent meanwhile, in
// order, on the same connection.
func TestProxyCutStallsAndHealResumes(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	lines := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					lines <- line
				}
			}()
		}
	}()
	p := StartProxy(t, ln.Addr().String())
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintln(conn, "before")
	if got := <-lines; got != "before\n" {
		t.Fatalf("got %q", got)
	}
	p.Cut()
	fmt.Fprintln(conn, "during")
	select {
	case got := <-lines:
		t.Fatalf("a cut link delivered %q", got)
	case <-time.After(300 * time.Millisecond):
	}
	refused, err := net.Dial("tcp", p.Addr())
	if err == nil {
		_ = refused.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := refused.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("a new connection through a cut link: read %v, want EOF", err)
		}
		refused.Close()
	}
	p.Heal()
	fmt.Fprintln(conn, "after")
	for _, want := range []string{"during\n", "after\n"} {
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("after healing got %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not delivered after healing", want)
		}
	}
}

// TestNATSCluster: the cluster forms with a meta leader; an R3 stream
// keeps taking writes when its leader is killed and elects another; the
// killed node comes back healthy on its store; a partitioned meta leader
// loses its leadership to the majority, and the cluster is whole again
// once healed.
func TestNATSCluster(t *testing.T) {
	t.Parallel()
	c := StartNATSCluster(t)
	js, err := jetstream.New(c.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// A cluster that has just formed can refuse a placement for a moment
	// ("no suitable peers for placement, peer offline"), as the
	// dispatcher's provisioning knows: ask again.
	var createErr error
	WaitFor(t, 30*time.Second, "the stream created", func() bool {
		_, createErr = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
		return createErr == nil
	})
	// Each message has an id, so a publish asked again after a lost
	// acknowledgement (an election) is stored once.
	published := 0
	publish := func(n int) {
		t.Helper()
		for range n {
			published++
			id := fmt.Sprint(published)
			WaitFor(t, 30*time.Second, "a publish acknowledged", func() bool {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				_, err := js.Publish(pctx, "t."+id, []byte("x"), jetstream.WithMsgID(id))
				return err == nil
			})
		}
	}
	publish(10)

	leader := c.StreamLeader("T")
	leader.Kill()
	publish(10)
	if again := c.StreamLeader("T"); again == leader {
		t.Fatalf("stream leader still %s after it was killed", leader.Name)
	}
	leader.Start()
	c.WaitHealthy(60 * time.Second)

	meta := c.MetaLeader()
	var others []*NATSNode
	for _, n := range c.Nodes {
		if n != meta {
			others = append(others, n)
		}
	}
	// A client of the cut-off node would wait for the partition to heal:
	// publish through the majority.
	if js, err = jetstream.New(c.Connect(others...)); err != nil {
		t.Fatal(err)
	}
	meta.Partition()
	WaitFor(t, 60*time.Second, "a new meta leader on the majority side", func() bool {
		for _, n := range c.Nodes {
			if n == meta {
				continue
			}
			info, err := n.Jsz()
			if err != nil || info.Meta == nil || info.Meta.Leader == "" || info.Meta.Leader == meta.Name {
				return false
			}
		}
		return true
	})
	publish(10)
	meta.Heal()
	c.WaitHealthy(60 * time.Second)
	// Just after the heal, the node that was cut off may still take itself
	// for the stream's leader and answer an info request first, from its
	// own 20 messages, until it hears the new term. What the test asks is
	// that the cluster settles on all 30 messages and never on more.
	s, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	var held uint64
	err = harness.Poll(ctx, 30*time.Second, 100*time.Millisecond, "the stream holding all 30 messages after the heal", func() (bool, error) {
		info, err := s.Info(ctx)
		if err != nil {
			return false, nil
		}
		held = info.State.Msgs
		if held > 30 {
			return false, fmt.Errorf("stream holds %d messages, want 30", held)
		}
		return held == 30, nil
	})
	if err != nil {
		t.Fatalf("%v (last seen: %d messages)", err, held)
	}
}
