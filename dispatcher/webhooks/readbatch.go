package webhooks

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// readBatcher sends the cache reads of concurrent attempts to Redis
// together, as one pipeline: one write and one read system call on each
// side for a batch instead of for every read, which is most of what a
// cache hit costs. A read joins the batch being gathered while earlier
// batches are in flight; it never waits for company, so an idle dispatcher
// reads with a single-command pipeline, as fast as a plain call.
//
// Batching keeps each read "as of now" (docs/contract.md): a read is sent
// after the attempt that asked for it started, as before, and the read
// script is the same per key.
type readBatcher struct {
	cache redis.UniversalClient // a batch is one pipeline (split by shard on a cluster)
	queue chan *cacheRead
	stop  chan struct{}
	done  sync.WaitGroup
	// closing guards closed: a read enqueues only while the senders run,
	// so every queued read is answered (close drains the queue).
	closing sync.RWMutex
	closed  bool
}

// cacheRead is one Get's read, answered through done.
type cacheRead struct {
	sha  string // the read script, as loaded into the Redis process verified last
	key  string
	val  string
	err  error
	done chan struct{}
}

const (
	// readSenders is how many batches may be in flight at once: enough to
	// keep the pipe to Redis busy while answers come back, few enough that
	// concurrent reads gather into large batches.
	readSenders = 4
	// maxReadBatch bounds a pipeline, so one batch's answer stays small.
	maxReadBatch = 128
)

func newReadBatcher(cache redis.UniversalClient) *readBatcher {
	b := &readBatcher{cache: cache, queue: make(chan *cacheRead, 4*maxReadBatch), stop: make(chan struct{})}
	b.done.Add(readSenders)
	for range readSenders {
		go b.send()
	}
	return b
}

// read runs the read script sha on key, batched with concurrent reads.
// After close it reads directly.
func (b *readBatcher) read(ctx context.Context, sha, key string) (string, error) {
	// A select with both cases ready picks one at random: without this, a
	// read whose ctx has already ended could still be queued and answered.
	if err := ctx.Err(); err != nil {
		return "", err
	}
	r := &cacheRead{sha: sha, key: key, done: make(chan struct{})}
	b.closing.RLock()
	if b.closed {
		b.closing.RUnlock()
		return b.cache.EvalSha(ctx, sha, []string{key}).Text()
	}
	select {
	case b.queue <- r:
		b.closing.RUnlock()
	case <-ctx.Done():
		b.closing.RUnlock()
		return "", ctx.Err()
	}
	select {
	case <-r.done:
		return r.val, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (b *readBatcher) send() {
	defer b.done.Done()
	batch := make([]*cacheRead, 0, maxReadBatch)
	for {
		select {
		case r := <-b.queue:
			batch = append(batch[:0], r)
		case <-b.stop:
			b.drain()
			return
		}
	gather:
		for len(batch) < maxReadBatch {
			select {
			case r := <-b.queue:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		b.exec(batch)
	}
}

// exec sends one batch. Each read gets its own command's answer and error;
// the client's read and write timeouts bound the round trip, as they bound
// a single call.
func (b *readBatcher) exec(batch []*cacheRead) {
	cmds := make([]*redis.Cmd, len(batch))
	pipe := b.cache.Pipeline()
	for i, r := range batch {
		cmds[i] = pipe.EvalSha(context.Background(), r.sha, []string{r.key})
	}
	_, _ = pipe.Exec(context.Background()) // every command carries its own error
	for i, r := range batch {
		r.val, r.err = cmds[i].Text()
		close(r.done)
	}
}

// drain answers reads queued when close came.
func (b *readBatcher) drain() {
	for {
		select {
		case r := <-b.queue:
			b.exec([]*cacheRead{r})
		default:
			return
		}
	}
}

// close stops the senders after they answer every queued read.
func (b *readBatcher) close() {
	b.closing.Lock()
	b.closed = true
	b.closing.Unlock()
	close(b.stop)
	b.done.Wait()
}
