//go:build unix

package pipeline_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkHandleEvent is the full per-attempt path of a first attempt, as
// run.go wires it: metadata and validation of a real JetStream message,
// the webhook config from Redis (KV behind it), signing, the HTTP POST to
// the reference receiver (verifying signatures) on an httptest server, the
// delivery-log write to JetStream KV, metrics and spans from the same
// telemetry setup, and the Ack. Servers are real: embedded nats-server with
// file storage and redis-server.
//
// "serial" is one message at a time: the latency of one attempt's round
// trips. "parallel-64" runs 64 handlers at once, like consume.Run's
// workers: the throughput of the path on this machine's cores, with the
// receiver and both servers sharing them. cpu-ns/op is this process's CPU
// time per attempt (handler, receiver and embedded nats-server; not Redis):
// on a machine shared with other work it varies less than ns/op.
func BenchmarkHandleEvent(b *testing.B) {
	for _, workers := range []int{1, 64} {
		name := "serial"
		if workers > 1 {
			name = fmt.Sprintf("parallel-%d", workers)
		}
		b.Run(name, func(b *testing.B) {
			f := newFixture(b)
			f.publish(b, b.N)
			msgs := make(chan jetstream.Msg, 2*workers)
			cc, err := f.consumer.Consume(func(m jetstream.Msg) { msgs <- m }, jetstream.PullMaxMessages(2*workers))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Stop()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			cpuStart := processCPUTime()
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			per := b.N / workers
			for w := range workers {
				n := per
				if w == 0 {
					n += b.N % workers
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range n {
						m := <-msgs
						if err := f.pipe.HandleEvent(ctx, m, noSlot{}); err != nil {
							errs <- err
							return
						}
						if err := m.Ack(); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((processCPUTime()-cpuStart).Nanoseconds())/float64(b.N), "cpu-ns/op")
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			if got := f.receiver.Stats().Accepted; got != int64(b.N) {
				b.Fatalf("receiver accepted %d of %d", got, b.N)
			}
		})
	}
}

// processCPUTime is the CPU time (user + system) this process has used.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
