package webhooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/dispatcher/sign"
)

var (
	// ErrNotFound: the integration has no webhook configuration.
	ErrNotFound = errors.New("webhook not configured")
	// ErrInvalidID: the integration id cannot be a key (ids are UUIDs;
	// letters, digits and '-' are accepted, at most 128 bytes).
	ErrInvalidID = errors.New("invalid integration id")
	// ErrInvalidSettings: the settings break docs/contract.md, Webhook
	// configuration.
	ErrInvalidSettings = errors.New("invalid webhook settings")
	// ErrConflict: the configuration kept changing under a write; it was
	// retried and gave up. Nothing was written.
	ErrConflict = errors.New("webhook configuration changed concurrently, try again")
	// ErrSecretKey: a stored secret does not decrypt with the configured
	// secret key (wrong DISPATCHER_SECRET_KEY, or the value was altered or
	// copied from another integration).
	ErrSecretKey = errors.New("webhook secret cannot be decrypted")
	// ErrNotConfirmed: the change was written to KV but could neither be
	// written to Redis nor be made to invalidate it; readers may still see
	// the previous value. Retrying the same request is safe.
	ErrNotConfirmed = errors.New("webhook change stored but not confirmed in the cache")
)

// Options configure a Store. Zero values take the documented defaults.
type Options struct {
	// SecretKey encrypts secrets at rest: 32 bytes (AES-256-GCM). Required.
	SecretKey []byte
	// RedisKeyPrefix starts every Redis key. Default "blazelock:".
	RedisKeyPrefix string
	// CacheTTL is how long a Redis entry lives (±10 % jitter). Default 10 min.
	CacheTTL time.Duration
	// CacheWriteWindow is how long after its KV read a cache write may still
	// land (checked by Redis). Default 5 s.
	CacheWriteWindow time.Duration
	// GenerationRefresh is how often the watcher re-reads the generation
	// from KV to confirm it.
	// Default 1 s.
	GenerationRefresh time.Duration
	// GenerationLease is how long a confirmation of the generation allows
	// Redis reads. Default 3 s.
	GenerationLease time.Duration
	// RedisRetryInterval: after a Redis error, reads go to KV for this long
	// before one call probes Redis again. Default 1 s.
	RedisRetryInterval time.Duration
	// RedisErrorLogInterval: Redis problems are logged at most once per
	// interval (with the number of suppressed ones). Default 10 s.
	RedisErrorLogInterval time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

const (
	defaultKeyPrefix = "blazelock:"
	// generationKey is the reserved KV key of the cache generation. It
	// contains '_' and '.', which validID refuses, so no integration id can
	// collide with it.
	generationKey = "_cache.generation"
	// maxWriteAttempts bounds the optimistic-concurrency loop of a write.
	maxWriteAttempts = 16
	maxIDLen         = 128
)

func (o Options) withDefaults() (Options, error) {
	if o.RedisKeyPrefix == "" {
		o.RedisKeyPrefix = defaultKeyPrefix
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = 10 * time.Minute
	}
	if o.CacheWriteWindow == 0 {
		o.CacheWriteWindow = 5 * time.Second
	}
	if o.GenerationRefresh == 0 {
		o.GenerationRefresh = time.Second
	}
	if o.GenerationLease == 0 {
		o.GenerationLease = 3 * time.Second
	}
	if o.RedisRetryInterval == 0 {
		o.RedisRetryInterval = time.Second
	}
	if o.RedisErrorLogInterval == 0 {
		o.RedisErrorLogInterval = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// The TTL must outlast the write window by more than any clock skew
	// between dispatchers and Redis: a minute is a generous skew bound.
	if o.CacheTTL < o.CacheWriteWindow+time.Minute {
		return o, fmt.Errorf("cache TTL %s must exceed the cache write window %s by at least 1m", o.CacheTTL, o.CacheWriteWindow)
	}
	if o.GenerationLease <= o.GenerationRefresh {
		return o, fmt.Errorf("generation lease %s must be longer than the refresh interval %s", o.GenerationLease, o.GenerationRefresh)
	}
	return o, nil
}

// Store reads and writes webhook configurations. It is safe for concurrent
// use. With a Redis client it runs a background watcher of the cache
// generation, started by New and stopped by Close.
type Store struct {
	kv    jetstream.KeyValue
	cache *redis.Client
	box   *secretBox
	log   *slog.Logger
	opts  Options

	// scripts were loaded into the Redis process verified last (nil
	// before the first verification): their SHAs name that process.
	scripts atomic.Pointer[scriptSet]
	reads   *readBatcher // nil without Redis

	gen        atomic.Pointer[generation]
	clockBase  time.Time    // monotonic base of the nanosecond clocks below
	leaseUntil atomic.Int64 // Redis reads allowed until (ns since clockBase)
	// redisRetryAt is 0 while Redis is healthy; after an error, reads skip
	// Redis until this time, then one caller probes it.
	redisRetryAt atomic.Int64
	verifyMu     sync.Mutex

	redisLog, genLog throttle
	stats            counters

	stopWatcher context.CancelFunc
	watcherDone chan struct{}
	closeOnce   sync.Once
}

// New returns a Store over the webhooks KV bucket (natsinfra.WebhooksBucket).
// cache may be nil: then every read goes to KV (a warning is logged once).
// With a cache, New starts the generation watcher (see the package comment);
// reads go to KV until it has confirmed the generation, normally within one
// KV round trip. Call Close to stop it.
// The Redis client should have short timeouts (DialTimeout/ReadTimeout in
// the hundreds of milliseconds, ContextTimeoutEnabled), because a slow Redis
// slows every delivery until its first error opens the fallback to KV.
func New(kv jetstream.KeyValue, cache *redis.Client, opts Options) (*Store, error) {
	if kv == nil {
		return nil, errors.New("new webhook store: nil KV bucket")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("new webhook store: %w", err)
	}
	box, err := newSecretBox(opts.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("new webhook store: %w", err)
	}
	s := &Store{
		kv:        kv,
		cache:     cache,
		box:       box,
		log:       opts.Logger.With("component", "webhooks"),
		opts:      opts,
		clockBase: time.Now(),
	}
	s.redisLog.every = opts.RedisErrorLogInterval
	s.genLog.every = opts.RedisErrorLogInterval
	if cache == nil {
		s.log.Warn("no Redis configured: every webhook lookup reads JetStream KV")
	}
	s.log.Info("webhook store ready", "secret_key_id", box.KeyID(), "redis", cache != nil)
	if cache != nil {
		s.reads = newReadBatcher(cache)
		ctx, cancel := context.WithCancel(context.Background())
		s.stopWatcher, s.watcherDone = cancel, make(chan struct{})
		go func() {
			defer close(s.watcherDone)
			s.watch(ctx)
		}()
	}
	return s, nil
}

// Close stops the generation watcher and waits for it. Reads and writes
// keep working afterwards, but reads fall back to KV once the last
// confirmation of the generation expires. It does not close the KV bucket
// or the Redis client, which the caller owns.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		if s.stopWatcher != nil {
			s.stopWatcher()
			<-s.watcherDone
			s.reads.close()
		}
	})
}

// validID accepts ids usable as KV keys and Redis key parts without
// escaping: letters, digits and '-'. Integration ids are UUIDs.
func validID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func invalidID(id string) error {
	return fmt.Errorf("%w: %q", ErrInvalidID, id)
}

// IDs returns the ids of the integrations that have a webhook
// configuration, sorted. It lists the bucket's keys: meant for an
// operator's index page, not for a hot path.
func (s *Store) IDs(ctx context.Context) ([]string, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list webhook keys: %w", err)
	}
	var ids []string
	for k := range lister.Keys() {
		if validID(k) { // not the reserved generation key
			ids = append(ids, k)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// nanotime is a monotonic clock in ns since the store was created.
func (s *Store) nanotime() int64 { return int64(time.Since(s.clockBase)) }

// Get returns the configuration of integrationID, or ErrNotFound. It is the
// delivery hot path: on a cache hit it makes one Redis round trip, shared
// with concurrent Gets (readbatch.go).
func (s *Store) Get(ctx context.Context, integrationID string) (Webhook, error) {
	if !validID(integrationID) {
		return Webhook{}, invalidID(integrationID)
	}
	g := s.cacheGeneration()
	sc := s.scripts.Load()
	if g == nil || sc == nil {
		s.stats.kvDirect.Add(1)
		return s.getKV(ctx, integrationID, nil)
	}
	v, err := s.reads.read(ctx, sc.read.sha, g.keyPrefix+integrationID)
	switch {
	case err == nil:
		s.redisOK()
		cfg, found, decErr := s.decodeCached(integrationID, v)
		switch {
		case decErr == nil && !found:
			s.stats.hits.Add(1)
			return Webhook{}, ErrNotFound
		case decErr == nil:
			s.stats.hits.Add(1)
			return cfg, nil
		case errors.Is(decErr, ErrSecretKey):
			return Webhook{}, decErr
		default:
			// A value this dispatcher cannot read (a newer format during a
			// rolling upgrade, or damage): KV is authoritative.
			s.redisLog.warn(s.log, "unreadable webhook cache entry; reading KV", "integration_id", integrationID, "error", decErr)
			s.stats.kvDirect.Add(1)
			return s.getKV(ctx, integrationID, nil)
		}
	case errors.Is(err, redis.Nil):
		s.redisOK()
		s.stats.misses.Add(1)
		return s.getKV(ctx, integrationID, g)
	case ctx.Err() != nil:
		return Webhook{}, fmt.Errorf("read webhook cache: %w", ctx.Err())
	case isNoScript(err):
		// Redis forgot our scripts: it restarted (maybe from an old
		// snapshot) or failed over. Verify before using it again.
		s.tryVerifyRedis(ctx)
		s.stats.kvDirect.Add(1)
		return s.getKV(ctx, integrationID, nil)
	default:
		s.redisFailed("read webhook cache", err)
		s.stats.kvDirect.Add(1)
		return s.getKV(ctx, integrationID, nil)
	}
}

// cacheGeneration returns the generation to read Redis with, or nil when
// reads must go to KV: no Redis, generation not confirmed recently, or
// Redis failing (one caller per RedisRetryInterval probes it again).
func (s *Store) cacheGeneration() *generation {
	if s.cache == nil {
		return nil
	}
	now := s.nanotime()
	if now > s.leaseUntil.Load() {
		return nil
	}
	if retryAt := s.redisRetryAt.Load(); retryAt != 0 {
		if now < retryAt || !s.redisRetryAt.CompareAndSwap(retryAt, now+int64(s.opts.RedisRetryInterval)) {
			return nil
		}
	}
	return s.gen.Load()
}

// getKV reads KV; with a non-nil g it then populates Redis in generation g,
// which the caller knew before the KV read (so a populate can only target a
// generation that existed when its data was read).
func (s *Store) getKV(ctx context.Context, id string, g *generation) (Webhook, error) {
	readStart := time.Now()
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		if g != nil {
			s.populate(ctx, g, id, 0, tombstonePayload, readStart)
		}
		return Webhook{}, ErrNotFound
	}
	if err != nil {
		return Webhook{}, fmt.Errorf("read webhook %s from KV: %w", id, err)
	}
	rec, err := decodeRecord(e.Value())
	if err != nil {
		return Webhook{}, fmt.Errorf("read webhook %s: %w", id, err)
	}
	cfg, sealed, err := s.configFromRecord(id, e.Revision(), rec)
	if err != nil {
		return Webhook{}, err
	}
	if g != nil {
		s.populate(ctx, g, id, e.Revision(), encodePayload(cfg, sealed), readStart)
	}
	return cfg, nil
}

func (s *Store) configFromRecord(id string, rev uint64, r record) (Webhook, []byte, error) {
	sealed, err := textToSealed(r.Secret)
	if err != nil {
		return Webhook{}, nil, fmt.Errorf("integration %s: %w", id, err)
	}
	secret, err := s.box.open(id, string(sealed))
	if err != nil {
		return Webhook{}, nil, err
	}
	mask, err := eventMask(r.Events)
	if err != nil {
		return Webhook{}, nil, fmt.Errorf("read webhook %s: %w", id, err)
	}
	return Webhook{
		IntegrationID: id,
		Settings:      Settings{Enabled: r.Enabled, URL: r.URL, Events: eventsFromMask(mask)},
		Secret:        secret,
		Revision:      rev,
		CreatedAt:     r.CreatedAt.UTC(),
		UpdatedAt:     r.UpdatedAt.UTC(),
	}, sealed, nil
}

// Put creates or replaces the settings of integrationID. The secret is
// created on first configuration and kept on replace. created reports
// whether there was no configuration before.
func (s *Store) Put(ctx context.Context, integrationID string, set Settings) (cfg Webhook, created bool, err error) {
	if !validID(integrationID) {
		return Webhook{}, false, invalidID(integrationID)
	}
	set, err = normalizeSettings(set)
	if err != nil {
		return Webhook{}, false, err
	}
	for attempt := range maxWriteAttempts {
		if err := conflictPause(ctx, attempt); err != nil {
			return Webhook{}, false, err
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		e, err := s.kv.Get(ctx, integrationID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			secret, err := sign.NewSecret()
			if err != nil {
				return Webhook{}, false, fmt.Errorf("create webhook secret: %w", err)
			}
			sealed := s.box.seal(integrationID, secret)
			rec := record{Format: recordFormat, Enabled: set.Enabled, URL: set.URL, Events: set.Events,
				Secret: sealedToText(sealed), CreatedAt: now, UpdatedAt: now}
			rev, err := s.kv.Create(ctx, integrationID, rec.encode())
			if isConflict(err) {
				continue // created concurrently: replace it instead
			}
			if err != nil {
				return Webhook{}, false, fmt.Errorf("create webhook %s in KV: %w", integrationID, err)
			}
			cfg := Webhook{IntegrationID: integrationID, Settings: set, Secret: secret, Revision: rev, CreatedAt: now, UpdatedAt: now}
			if err := s.afterWrite(ctx, integrationID, rev, encodePayload(cfg, sealed)); err != nil {
				return Webhook{}, false, err
			}
			return cfg, true, nil
		}
		if err != nil {
			return Webhook{}, false, fmt.Errorf("read webhook %s from KV: %w", integrationID, err)
		}
		old, err := decodeRecord(e.Value())
		if err != nil {
			return Webhook{}, false, fmt.Errorf("replace webhook %s: %w", integrationID, err)
		}
		// Decrypting the kept secret proves this dispatcher has the key the
		// record was sealed with, and gives the caller the config in full.
		prev, sealed, err := s.configFromRecord(integrationID, e.Revision(), old)
		if err != nil {
			return Webhook{}, false, err
		}
		rec := old
		rec.Enabled, rec.URL, rec.Events, rec.UpdatedAt = set.Enabled, set.URL, set.Events, now
		rev, err := s.kv.Update(ctx, integrationID, rec.encode(), e.Revision())
		if isConflict(err) {
			continue // changed since we read it: apply the settings to the new state
		}
		if err != nil {
			return Webhook{}, false, fmt.Errorf("replace webhook %s in KV: %w", integrationID, err)
		}
		cfg := Webhook{IntegrationID: integrationID, Settings: set, Secret: prev.Secret, Revision: rev,
			CreatedAt: prev.CreatedAt, UpdatedAt: now}
		if err := s.afterWrite(ctx, integrationID, rev, encodePayload(cfg, sealed)); err != nil {
			return Webhook{}, false, err
		}
		return cfg, false, nil
	}
	return Webhook{}, false, fmt.Errorf("put webhook %s: %w", integrationID, ErrConflict)
}

// RotateSecret replaces the secret of integrationID with a new one, at once
// and with no grace period (docs/contract.md, Secrets).
func (s *Store) RotateSecret(ctx context.Context, integrationID string) (Webhook, error) {
	if !validID(integrationID) {
		return Webhook{}, invalidID(integrationID)
	}
	for attempt := range maxWriteAttempts {
		if err := conflictPause(ctx, attempt); err != nil {
			return Webhook{}, err
		}
		e, err := s.kv.Get(ctx, integrationID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Webhook{}, ErrNotFound
		}
		if err != nil {
			return Webhook{}, fmt.Errorf("read webhook %s from KV: %w", integrationID, err)
		}
		old, err := decodeRecord(e.Value())
		if err != nil {
			return Webhook{}, fmt.Errorf("rotate secret of %s: %w", integrationID, err)
		}
		// Refuse to seal with a key other dispatchers may not have.
		prev, _, err := s.configFromRecord(integrationID, e.Revision(), old)
		if err != nil {
			return Webhook{}, err
		}
		secret, err := sign.NewSecret()
		if err != nil {
			return Webhook{}, fmt.Errorf("create webhook secret: %w", err)
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		sealed := s.box.seal(integrationID, secret)
		rec := old
		rec.Secret, rec.UpdatedAt = sealedToText(sealed), now
		rev, err := s.kv.Update(ctx, integrationID, rec.encode(), e.Revision())
		if isConflict(err) {
			continue
		}
		if err != nil {
			return Webhook{}, fmt.Errorf("rotate secret of %s in KV: %w", integrationID, err)
		}
		cfg := prev
		cfg.Secret, cfg.Revision, cfg.UpdatedAt = secret, rev, now
		if err := s.afterWrite(ctx, integrationID, rev, encodePayload(cfg, sealed)); err != nil {
			return Webhook{}, err
		}
		return cfg, nil
	}
	return Webhook{}, fmt.Errorf("rotate secret of %s: %w", integrationID, ErrConflict)
}

// Delete removes the configuration of integrationID (ErrNotFound if none).
func (s *Store) Delete(ctx context.Context, integrationID string) error {
	if !validID(integrationID) {
		return invalidID(integrationID)
	}
	for attempt := range maxWriteAttempts {
		if err := conflictPause(ctx, attempt); err != nil {
			return err
		}
		e, err := s.kv.Get(ctx, integrationID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read webhook %s from KV: %w", integrationID, err)
		}
		err = s.kv.Delete(ctx, integrationID, jetstream.LastRevision(e.Revision()))
		if isConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("delete webhook %s from KV: %w", integrationID, err)
		}
		// The delete marker's own revision is not returned by the client;
		// revision+1 is above every value the key had and not above the
		// marker, so any re-creation (a later revision) overrides it.
		return s.afterWrite(ctx, integrationID, e.Revision()+1, tombstonePayload)
	}
	return fmt.Errorf("delete webhook %s: %w", integrationID, ErrConflict)
}

// conflictPause waits a short random time before a retry after a write
// conflict, so that writers racing on one key stop colliding.
func conflictPause(ctx context.Context, attempt int) error {
	if attempt == 0 {
		return nil
	}
	t := time.NewTimer(rand.N(time.Duration(attempt) * 5 * time.Millisecond))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("retry a conflicting webhook write: %w", ctx.Err())
	case <-t.C:
		return nil
	}
}

func isConflict(err error) bool {
	return err != nil && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch))
}

// afterWrite makes a KV write at revision rev visible through the cache
// before the caller answers: it writes the new value into the generation
// current after the KV write, or, if Redis cannot take it, moves the
// generation so that no reader can use what Redis holds.
func (s *Store) afterWrite(ctx context.Context, id string, rev uint64, payload []byte) error {
	if s.cache == nil {
		return nil
	}
	written := time.Now()
	g, err := s.readGeneration(ctx)
	if err != nil {
		return fmt.Errorf("%w: read cache generation: %w", ErrNotConfirmed, err)
	}
	if s.redisRetryAt.Load() != 0 && s.nanotime() < s.redisRetryAt.Load() {
		return s.bump(ctx, g, "redis unavailable when a webhook changed")
	}
	for attempt := 0; ; attempt++ {
		res, err := s.casWrite(ctx, g, id, rev, payload, written.Add(s.opts.CacheWriteWindow))
		switch {
		case err == nil && res >= 0:
			s.redisOK()
			return nil
		case err == nil:
			return s.bump(ctx, g, "a webhook cache write arrived after its deadline")
		case isNoScript(err) && attempt == 0:
			if g, err = s.verifyRedis(ctx); err != nil {
				return s.bump(ctx, s.gen.Load(), "redis could not be verified when a webhook changed")
			}
			continue
		default:
			s.redisFailed("write webhook cache", err)
			return s.bump(ctx, g, "redis write failed when a webhook changed")
		}
	}
}

// Stats are counters for metrics and tests.
type Stats struct {
	CacheHits, CacheMisses uint64 // Redis answered with / without an entry
	KVDirect               uint64 // reads that skipped Redis
	RedisErrors            uint64
	LateWritesRefused      uint64 // cache writes refused by their deadline
	GenerationChanges      uint64 // generations this store created
}

type counters struct {
	hits, misses, kvDirect, redisErrors, late, bumps atomic.Uint64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		CacheHits: s.stats.hits.Load(), CacheMisses: s.stats.misses.Load(),
		KVDirect: s.stats.kvDirect.Load(), RedisErrors: s.stats.redisErrors.Load(),
		LateWritesRefused: s.stats.late.Load(), GenerationChanges: s.stats.bumps.Load(),
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
