package webhooks

// The cache generation: its KV record, how the cache learns it (watcher and
// lease), how writers move it, and how a restarted Redis is detected. The
// reasoning is in the package comment (doc.go).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// generationKey is the reserved KV key of the cache generation. It contains
// '_' and '.', which validID refuses, so no integration id can collide with
// it.
const generationKey = "_cache.generation"

// genRecord is the KV value under generationKey.
type genRecord struct {
	Token string `json:"token"`
	// RedisRunID is the run_id of the Redis process whose contents were
	// last verified for this generation ("" if none yet).
	RedisRunID string    `json:"redis_run_id"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
}

func (r genRecord) encode() []byte {
	b, _ := json.Marshal(r)
	return b
}

// generation is what the cache knows about the current generation.
type generation struct {
	rev       uint64
	rec       genRecord
	keyPrefix string // RedisKeyPrefix + "webhooks:" + token + ":"
}

// adopt makes (rev, rec) the known generation unless a newer one is known,
// and returns the one known afterwards.
func (c *cache) adopt(rev uint64, rec genRecord) *generation {
	next := &generation{rev: rev, rec: rec, keyPrefix: c.opts.RedisKeyPrefix + "webhooks:" + rec.Token + ":"}
	for {
		cur := c.gen.Load()
		if cur != nil && cur.rev >= rev {
			return cur
		}
		if c.gen.CompareAndSwap(cur, next) {
			if cur != nil {
				c.log.Info("webhook cache generation changed", "revision", rev, "reason", rec.Reason)
			}
			return next
		}
	}
}

// readGeneration reads the generation from KV (creating it if missing) and
// adopts it.
func (c *cache) readGeneration(ctx context.Context) (*generation, error) {
	for range maxWriteAttempts {
		e, err := c.kv.Get(ctx, generationKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			rec := genRecord{Token: newToken(), Reason: "created", At: time.Now().UTC()}
			rev, err := c.kv.Create(ctx, generationKey, rec.encode())
			if isConflict(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("create cache generation: %w", err)
			}
			return c.adopt(rev, rec), nil
		}
		if err != nil {
			return nil, fmt.Errorf("read cache generation: %w", err)
		}
		var rec genRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.Token == "" {
			// Damaged: replacing it with a fresh token is always safe.
			rec = genRecord{Token: newToken(), Reason: "replaced an unreadable generation record", At: time.Now().UTC()}
			rev, err := c.kv.Update(ctx, generationKey, rec.encode(), e.Revision())
			if isConflict(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("replace cache generation: %w", err)
			}
			return c.adopt(rev, rec), nil
		}
		return c.adopt(e.Revision(), rec), nil
	}
	return nil, fmt.Errorf("read cache generation: %w", ErrConflict)
}

// bump replaces the generation read as from (after the caller's KV write)
// with a new token. If someone else replaced it since, that also
// invalidates everything cached before the caller's write.
func (c *cache) bump(ctx context.Context, from *generation, reason string) error {
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w: %w", ErrNotConfirmed, ctx.Err())
			case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
			}
		}
		rec := genRecord{Token: newToken(), RedisRunID: from.rec.RedisRunID, Reason: reason, At: time.Now().UTC()}
		rev, err := c.kv.Update(ctx, generationKey, rec.encode(), from.rev)
		if err == nil {
			c.stats.bumps.Add(1)
			c.adopt(rev, rec)
			c.log.Warn("webhook cache generation moved: entries cached before are ignored", "reason", reason, "revision", rev)
			return nil
		}
		if !isConflict(err) {
			c.log.Error("move webhook cache generation", "error", err)
			continue
		}
		g, err := c.readGeneration(ctx)
		if err != nil {
			continue
		}
		if g.rev > from.rev {
			return nil // moved by someone else after our KV write
		}
		from = g
	}
	return fmt.Errorf("%w: the cache generation could not be moved", ErrNotConfirmed)
}

// watch keeps the cache's knowledge of the cache generation current until
// ctx ends: a KV watcher adopts new generations as they are written, and a
// direct read every GenerationRefresh confirms it (the lease that allows
// Redis reads).
func (c *cache) watch(ctx context.Context) {
	if _, err := c.verifyRedis(ctx); err != nil && ctx.Err() == nil {
		c.redisLog.warn(c.log, "verify Redis at start; reading KV until it answers", "error", err)
	}
	c.refresh(ctx)
	ticker := time.NewTicker(c.opts.GenerationRefresh)
	defer ticker.Stop()
	var w jetstream.KeyWatcher
	defer func() {
		if w != nil {
			_ = w.Stop()
		}
	}()
	for {
		if w == nil {
			var err error
			if w, err = c.kv.Watch(ctx, generationKey); err != nil {
				w = nil
				if ctx.Err() == nil {
					c.log.Warn("watch webhook cache generation; retrying", "error", err)
				}
			}
		}
		var updates <-chan jetstream.KeyValueEntry
		if w != nil {
			updates = w.Updates()
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			c.refresh(ctx)
		case e, ok := <-updates:
			switch {
			case !ok:
				w = nil
			case e == nil: // end of the initial replay
			case e.Operation() != jetstream.KeyValuePut:
				_, _ = c.readGeneration(ctx) // deleted: create a new one
			default:
				var rec genRecord
				if err := json.Unmarshal(e.Value(), &rec); err == nil && rec.Token != "" {
					c.adopt(e.Revision(), rec)
				}
			}
		}
	}
}

// refresh confirms the generation with a direct read and extends the lease
// from the moment the read started.
func (c *cache) refresh(ctx context.Context) {
	start := c.nanotime()
	ctx, cancel := context.WithTimeout(ctx, c.opts.GenerationLease)
	defer cancel()
	e, err := c.kv.Get(ctx, generationKey)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			_, err = c.readGeneration(ctx)
		}
		if err != nil && ctx.Err() == nil {
			c.genLog.warn(c.log, "confirm webhook cache generation; reading KV until it succeeds", "error", err)
		}
		return
	}
	var rec genRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.Token == "" {
		_, _ = c.readGeneration(ctx) // replaces it
		return
	}
	if g := c.adopt(e.Revision(), rec); g.rev == e.Revision() {
		c.leaseUntil.Store(start + int64(c.opts.GenerationLease))
	} else {
		// A newer generation is known than KV just returned: either this
		// read raced with a change (the next refresh confirms), or the
		// bucket was recreated and revisions went backwards (then Redis is
		// not used again until the dispatcher restarts).
		c.genLog.warn(c.log, "webhook cache generation in KV is older than the one known; not extending the cache lease",
			"known_revision", g.rev, "kv_revision", e.Revision())
	}
}

// errNotVerified: no Redis process has been verified yet, so there are no
// scripts to call; handled like NOSCRIPT.
var errNotVerified = errors.New("redis not verified yet")

func isNoScript(err error) bool {
	return errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT") || errors.Is(err, errNotVerified)
}

// tryVerifyRedis verifies Redis unless another call is already doing it.
func (c *cache) tryVerifyRedis(ctx context.Context) {
	if !c.node.verifyMu.TryLock() {
		return
	}
	defer c.node.verifyMu.Unlock()
	if _, err := c.verifyRedisLocked(ctx); err != nil && ctx.Err() == nil {
		c.redisFailed("verify redis", err)
	}
}

// verifyRedis makes sure the generation has been moved past any contents
// of the Redis process we now talk to that nobody verified, then loads our
// scripts there, tagged with its run_id. It is the only place scripts are
// loaded: their absence (NOSCRIPT) is how a restarted or failed-over Redis
// is noticed.
func (c *cache) verifyRedis(ctx context.Context) (*generation, error) {
	c.node.verifyMu.Lock()
	defer c.node.verifyMu.Unlock()
	return c.verifyRedisLocked(ctx)
}

func (c *cache) verifyRedisLocked(ctx context.Context) (*generation, error) {
	for range 3 {
		runID, err := c.redisRunID(ctx)
		if err != nil {
			return nil, err
		}
		g, err := c.readGeneration(ctx)
		if err != nil {
			return nil, err
		}
		for g.rec.RedisRunID != runID {
			rec := genRecord{Token: newToken(), RedisRunID: runID, Reason: "redis restarted, failed over or was first seen (new run_id)", At: time.Now().UTC()}
			rev, err := c.kv.Update(ctx, generationKey, rec.encode(), g.rev)
			if isConflict(err) {
				if g, err = c.readGeneration(ctx); err != nil {
					return nil, err
				}
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("move cache generation for a new redis: %w", err)
			}
			c.stats.bumps.Add(1)
			g = c.adopt(rev, rec)
			c.log.Warn("webhook cache generation moved", "reason", rec.Reason, "revision", rev)
		}
		set := &scriptSet{
			read: newScript(readScriptSrc, c.opts.RedisKeyPrefix, runID),
			cas:  newScript(casScriptSrc, c.opts.RedisKeyPrefix, runID),
		}
		for _, sc := range []script{set.read, set.cas} {
			if err := loadScriptOnPrimaries(ctx, c.node.universal(), sc); err != nil {
				return nil, err
			}
		}
		// The scripts must not outlive a restart that happened during the
		// check (they would hide it): confirm the process did not change.
		after, err := c.redisRunID(ctx)
		if err != nil {
			return nil, err
		}
		if after == runID {
			c.node.scripts.Store(set)
			return g, nil
		}
	}
	return nil, errors.New("verify redis: the redis process kept changing")
}

func (c *cache) redisRunID(ctx context.Context) (string, error) {
	return primariesRunID(ctx, c.node.universal())
}
