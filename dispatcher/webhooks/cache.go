package webhooks

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// cache is the Redis side of the store: the entries, the scripts that read
// and compare-and-set them, the cache generation (generation.go) and the
// fallback to KV while Redis fails. It is coherent with KV by the argument
// in the package comment; it reads KV only for the generation and learns
// configurations from Store, which reads and writes the records.
//
// Without Redis (node nil) it is off: every read is counted as KVDirect and
// writes have nothing to confirm.
type cache struct {
	node *redisNode   // nil without Redis
	kv   generationKV // the webhooks bucket, for generationKey only
	box  *secretBox   // opens the sealed secrets of entries
	log  *slog.Logger
	opts Options

	gen        atomic.Pointer[generation]
	clockBase  time.Time    // monotonic base of the nanosecond clocks
	leaseUntil atomic.Int64 // Redis reads allowed until (ns since clockBase)

	redisLog, genLog throttle
	stats            counters

	stopWatcher context.CancelFunc
	watcherDone chan struct{}
	closeOnce   sync.Once
}

// generationKV is what the cache uses of the webhooks bucket: reading,
// creating, replacing and watching the generation record.
type generationKV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error)
}

// redisNode is the Redis server the entries live in, and what the cache
// knows about the process behind it: which process its scripts were loaded
// into, whether it is failing, and the batcher of reads sent to it. The
// field c.node is the cache's only way to Redis.
//
// A Redis Cluster is one redisNode too: go-redis routes each key's command
// to its shard's primary, and what is per process (run_id, scripts) is
// done on every primary (primaries.go), so a change of any shard's process
// is noticed like a restart of a lone Redis. client and cluster are
// concrete types rather than an interface because a call through an
// interface makes every command's key slice escape to the heap: one more
// allocation per cache write.
type redisNode struct {
	client  *redis.Client        // one Redis, or the primary Sentinel names
	cluster *redis.ClusterClient // a Redis Cluster (client is nil then)
	// scripts were loaded into the Redis process verified last (nil
	// before the first verification): their SHAs name that process.
	scripts atomic.Pointer[scriptSet]
	reads   *readBatcher
	// retryAt is 0 while Redis is healthy; after an error, reads skip
	// Redis until this time (ns since clockBase), then one caller probes it.
	retryAt  atomic.Int64
	verifyMu sync.Mutex
}

// newRedisNode wraps what New was given: nil, a *redis.Client (also a
// Sentinel failover client) or a *redis.ClusterClient.
func newRedisNode(rdb redis.UniversalClient) (*redisNode, error) {
	switch r := rdb.(type) {
	case nil:
		return nil, nil
	case *redis.Client:
		if r == nil {
			return nil, nil
		}
		return &redisNode{client: r}, nil
	case *redis.ClusterClient:
		if r == nil {
			return nil, nil
		}
		return &redisNode{cluster: r}, nil
	default:
		return nil, fmt.Errorf("unsupported Redis client %T: use one Redis, Sentinel or a Redis Cluster", rdb)
	}
}

func (n *redisNode) universal() redis.UniversalClient {
	if n.cluster != nil {
		return n.cluster
	}
	return n.client
}

func (n *redisNode) evalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	if n.cluster != nil {
		return n.cluster.EvalSha(ctx, sha, keys, args...)
	}
	return n.client.EvalSha(ctx, sha, keys, args...)
}

// newCache returns the cache over node (nil: no Redis). With Redis it
// starts the generation watcher; close stops it.
func newCache(kv generationKV, node *redisNode, box *secretBox, opts Options, log *slog.Logger) *cache {
	c := &cache{kv: kv, box: box, log: log, opts: opts, clockBase: time.Now()}
	c.redisLog.every = opts.RedisErrorLogInterval
	c.genLog.every = opts.RedisErrorLogInterval
	if node == nil {
		return c
	}
	c.node = node
	node.reads = newReadBatcher(node.universal())
	ctx, cancel := context.WithCancel(context.Background())
	c.stopWatcher, c.watcherDone = cancel, make(chan struct{})
	go func() {
		defer close(c.watcherDone)
		c.watch(ctx)
	}()
	return c
}

// close stops the generation watcher and waits for it, then the read
// batcher (reads afterwards go to Redis directly, until the lease lapses).
func (c *cache) close() {
	c.closeOnce.Do(func() {
		if c.stopWatcher != nil {
			c.stopWatcher()
			<-c.watcherDone
			c.node.reads.close()
		}
	})
}

// nanotime is a monotonic clock in ns since the cache was created.
func (c *cache) nanotime() int64 { return int64(time.Since(c.clockBase)) }

// get answers a read from Redis if it can. answered reports that (cfg, err)
// is the answer: a configuration, a cached absence (ErrNotFound), a secret
// this dispatcher cannot decrypt, or the end of ctx. Otherwise the caller
// reads KV and, if fill is not nil, populates what it read into fill: the
// generation known before that KV read.
func (c *cache) get(ctx context.Context, id string) (cfg Webhook, answered bool, fill *generation, err error) {
	g := c.usableGeneration()
	if g == nil {
		c.stats.kvDirect.Add(1)
		return Webhook{}, false, nil, nil
	}
	sc := c.node.scripts.Load()
	if sc == nil {
		c.stats.kvDirect.Add(1)
		return Webhook{}, false, nil, nil
	}
	v, err := c.node.reads.read(ctx, sc.read.sha, g.keyPrefix+id)
	switch {
	case err == nil:
		c.redisOK()
		cfg, found, decErr := c.decodeCached(id, v)
		switch {
		case decErr == nil && !found:
			c.stats.hits.Add(1)
			return Webhook{}, true, nil, ErrNotFound
		case decErr == nil:
			c.stats.hits.Add(1)
			return cfg, true, nil, nil
		case errors.Is(decErr, ErrSecretKey):
			return Webhook{}, true, nil, decErr
		default:
			// A value this dispatcher cannot read (a newer format during a
			// rolling upgrade, or damage): KV is authoritative.
			c.redisLog.warn(c.log, "unreadable webhook cache entry; reading KV", "integration_id", id, "error", decErr)
			c.stats.kvDirect.Add(1)
			return Webhook{}, false, nil, nil
		}
	case errors.Is(err, redis.Nil):
		c.redisOK()
		c.stats.misses.Add(1)
		return Webhook{}, false, g, nil
	case ctx.Err() != nil:
		return Webhook{}, true, nil, fmt.Errorf("read webhook cache: %w", ctx.Err())
	case isNoScript(err):
		// Redis forgot our scripts: it restarted (maybe from an old
		// snapshot) or failed over. Verify before using it again.
		c.tryVerifyRedis(ctx)
		c.stats.kvDirect.Add(1)
		return Webhook{}, false, nil, nil
	default:
		c.redisFailed("read webhook cache", err)
		c.stats.kvDirect.Add(1)
		return Webhook{}, false, nil, nil
	}
}

// usableGeneration returns the generation to read Redis with, or nil when
// reads must go to KV: no Redis, generation not confirmed recently, or
// Redis failing (one caller per RedisRetryInterval probes it again).
func (c *cache) usableGeneration() *generation {
	if c.node == nil {
		return nil
	}
	now := c.nanotime()
	if now > c.leaseUntil.Load() {
		return nil
	}
	if retryAt := c.node.retryAt.Load(); retryAt != 0 {
		if now < retryAt || !c.node.retryAt.CompareAndSwap(retryAt, now+int64(c.opts.RedisRetryInterval)) {
			return nil
		}
	}
	return c.gen.Load()
}

// afterWrite makes a KV write at revision rev visible through the cache
// before the caller answers: it writes the new value into the generation
// current after the KV write, or, if Redis cannot take it, moves the
// generation so that no reader can use what Redis holds.
func (c *cache) afterWrite(ctx context.Context, id string, rev uint64, payload []byte) error {
	if c.node == nil {
		return nil
	}
	written := time.Now()
	g, err := c.readGeneration(ctx)
	if err != nil {
		return fmt.Errorf("%w: read cache generation: %w", ErrNotConfirmed, err)
	}
	if c.node.retryAt.Load() != 0 && c.nanotime() < c.node.retryAt.Load() {
		return c.bump(ctx, g, "redis unavailable when a webhook changed")
	}
	for attempt := 0; ; attempt++ {
		res, err := c.casWrite(ctx, g, id, rev, payload, written.Add(c.opts.CacheWriteWindow))
		switch {
		case err == nil && res >= 0:
			c.redisOK()
			return nil
		case err == nil:
			return c.bump(ctx, g, "a webhook cache write arrived after its deadline")
		case isNoScript(err) && attempt == 0:
			if g, err = c.verifyRedis(ctx); err != nil {
				return c.bump(ctx, c.gen.Load(), "redis could not be verified when a webhook changed")
			}
			continue
		default:
			c.redisFailed("write webhook cache", err)
			return c.bump(ctx, g, "redis write failed when a webhook changed")
		}
	}
}

// redisFailed opens the fallback to KV for RedisRetryInterval.
func (c *cache) redisFailed(op string, err error) {
	c.stats.redisErrors.Add(1)
	c.node.retryAt.Store(c.nanotime() + int64(c.opts.RedisRetryInterval))
	// go-redis re-reads a cluster's slot map only on MOVED or once a
	// minute, and a dead primary answers neither: after a failover it
	// would send that shard's commands to the dead address for up to a
	// minute. Reload it now (in the background, coalesced), so the next
	// probe reaches the promoted replica, whose NOSCRIPT moves the
	// generation.
	if c.node.cluster != nil {
		c.node.cluster.ReloadState(context.Background())
	}
	c.redisLog.warn(c.log, "redis unavailable; reading webhook configs from KV", "op", op, "error", err)
}

func (c *cache) redisOK() {
	if c.node.retryAt.Load() != 0 {
		c.node.retryAt.Store(0)
	}
}

type counters struct {
	hits, misses, kvDirect, redisErrors, late, bumps atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		CacheHits: c.hits.Load(), CacheMisses: c.misses.Load(),
		KVDirect: c.kvDirect.Load(), RedisErrors: c.redisErrors.Load(),
		LateWritesRefused: c.late.Load(), GenerationChanges: c.bumps.Load(),
	}
}

// throttle limits a repeated log line to one per interval.
type throttle struct {
	every      time.Duration
	next       atomic.Int64 // unix ns
	suppressed atomic.Int64
}

func (t *throttle) warn(log *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	next := t.next.Load()
	if now < next || !t.next.CompareAndSwap(next, now+int64(t.every)) {
		t.suppressed.Add(1)
		return
	}
	if n := t.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed_since_last_log", n)
	}
	log.Warn(msg, args...)
}

// Redis holds, under RedisKeyPrefix + "webhooks:" + <generation token> + ":" +
// <integration id>, the string "<KV revision>:" followed by a payload:
//
//	'T'                                   tombstone (deleted, or never configured)
//	'C' flags mask created updated url secret
//	    flags   1 byte, bit 0 = enabled
//	    mask    1 byte, events in canonical order (bit i = schemas.EventNames[i])
//	    created, updated  8 bytes each, big-endian Unix milliseconds
//	    url     uvarint length + bytes
//	    secret  the rest: the sealed secret (binary form, see secretbox.go)
//
// A compact binary form keeps the hot path free of JSON decoding; the leading
// decimal revision is what the compare-and-set script reads.

// readScriptSrc is the hot-path read. It is a script rather than GET so that
// a restarted Redis answers NOSCRIPT instead of silently serving whatever it
// restored (see the package comment in doc.go, case 3).
const readScriptSrc = `return redis.call('GET', KEYS[1])`

// casScriptSrc writes ARGV[2] (the full value) with TTL ARGV[3] ms into
// KEYS[1] unless the Redis clock is past ARGV[4] (Unix ms) (-1) or the key
// holds a revision ≥ ARGV[1] (0). 1 means written.
const casScriptSrc = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[4]) then return -1 end
local cur = redis.call('GET', KEYS[1])
if cur then
  local r = tonumber(string.match(cur, '^(%d+):'))
  if r ~= nil and r >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`

type script struct{ src, sha string }

// scriptSet is the scripts loaded into the Redis process last verified.
type scriptSet struct{ read, cas script }

// newScript tags src with the key prefix, so deployments sharing a Redis
// under different prefixes do not load each other's scripts (which would
// hide a restart from one of them), and with the run_id of the Redis
// process it is verified against, so that no other process has it (see
// the package comment, case 3: a demoted primary keeps its scripts).
func newScript(src, prefix, runID string) script {
	src = fmt.Sprintf("-- blazelock webhook cache v1, prefix %q, redis run_id %s\n%s", prefix, runID, src)
	sum := sha1.Sum([]byte(src))
	return script{src: src, sha: hex.EncodeToString(sum[:])}
}

var tombstonePayload = []byte{'T'}

const configHeaderLen = 1 + 1 + 1 + 8 + 8

func encodePayload(c Webhook, sealed []byte) []byte {
	mask, _ := eventMask(c.Events) // events were validated before
	b := make([]byte, configHeaderLen, configHeaderLen+binary.MaxVarintLen64+len(c.URL)+len(sealed))
	b[0] = 'C'
	if c.Enabled {
		b[1] = 1
	}
	b[2] = mask
	binary.BigEndian.PutUint64(b[3:], uint64(c.CreatedAt.UnixMilli()))
	binary.BigEndian.PutUint64(b[11:], uint64(c.UpdatedAt.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(len(c.URL)))
	b = append(b, c.URL...)
	return append(b, sealed...)
}

var errBadEntry = errors.New("malformed webhook cache entry")

// decodeCached parses a Redis value. found is false for a tombstone. It
// reads the string in place: the URL shares the value's memory.
func (c *cache) decodeCached(id, v string) (cfg Webhook, found bool, err error) {
	colon := -1
	for i := 0; i < len(v) && i <= 20; i++ {
		if v[i] == ':' {
			colon = i
			break
		}
	}
	if colon <= 0 || colon+1 >= len(v) {
		return Webhook{}, false, errBadEntry
	}
	rev, err := strconv.ParseUint(v[:colon], 10, 64)
	if err != nil {
		return Webhook{}, false, errBadEntry
	}
	p := v[colon+1:]
	switch p[0] {
	case 'T':
		return Webhook{}, false, nil
	case 'C':
	default:
		return Webhook{}, false, errBadEntry
	}
	if len(p) < configHeaderLen+1 {
		return Webhook{}, false, errBadEntry
	}
	var urlLen uint64
	n := configHeaderLen
	for shift := uint(0); ; shift += 7 {
		if n >= len(p) || shift > 63 {
			return Webhook{}, false, errBadEntry
		}
		c := p[n]
		n++
		urlLen |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
	}
	if urlLen > uint64(len(p)-n) {
		return Webhook{}, false, errBadEntry
	}
	url := p[n : n+int(urlLen)]
	secret, err := c.box.open(id, p[n+int(urlLen):])
	if err != nil {
		return Webhook{}, false, err
	}
	return Webhook{
		IntegrationID: id,
		Settings:      Settings{Enabled: p[1]&1 != 0, URL: url, Events: eventsFromMask(p[2])},
		Secret:        secret,
		Revision:      rev,
		CreatedAt:     time.UnixMilli(int64(be64(p[3:11]))).UTC(),
		UpdatedAt:     time.UnixMilli(int64(be64(p[11:19]))).UTC(),
	}, true, nil
}

func be64(s string) uint64 {
	_ = s[7]
	return uint64(s[7]) | uint64(s[6])<<8 | uint64(s[5])<<16 | uint64(s[4])<<24 |
		uint64(s[3])<<32 | uint64(s[2])<<40 | uint64(s[1])<<48 | uint64(s[0])<<56
}

// casWrite runs the compare-and-set script: 1 written, 0 a value with an
// equal or newer revision is there, -1 the deadline had passed.
func (c *cache) casWrite(ctx context.Context, g *generation, id string, rev uint64, payload []byte, deadline time.Time) (int64, error) {
	value := make([]byte, 0, 21+len(payload))
	value = strconv.AppendUint(value, rev, 10)
	value = append(value, ':')
	value = append(value, payload...)
	// ±10 % jitter spreads the expiry of entries written together.
	ttl := c.opts.CacheTTL - c.opts.CacheTTL/10 + rand.N(c.opts.CacheTTL/5+1)
	sc := c.node.scripts.Load()
	if sc == nil {
		return 0, errNotVerified
	}
	res, err := c.node.evalSha(ctx, sc.cas.sha, []string{g.keyPrefix + id},
		rev, value, ttl.Milliseconds(), deadline.UnixMilli()).Int64()
	if err == nil && res < 0 {
		c.stats.late.Add(1)
	}
	return res, err
}

// populate writes what a reader read from KV (revision rev, 0 for absent)
// into generation g, the one known before the read started at readStart.
// Its failure only costs a later miss, so it is not returned.
func (c *cache) populate(ctx context.Context, g *generation, id string, rev uint64, payload []byte, readStart time.Time) {
	_, err := c.casWrite(ctx, g, id, rev, payload, readStart.Add(c.opts.CacheWriteWindow))
	switch {
	case err == nil, ctx.Err() != nil:
	case isNoScript(err):
		c.tryVerifyRedis(ctx)
	default:
		c.redisFailed("populate webhook cache", err)
	}
}
