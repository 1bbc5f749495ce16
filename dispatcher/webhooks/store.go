package webhooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
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

// Store reads and writes webhook configurations: the records in KV, read
// through the Redis cache (see the package comment). It is safe for
// concurrent use. With a Redis client it runs a background watcher of the
// cache generation, started by New and stopped by Close.
type Store struct {
	records *records
	cache   *cache
}

// New returns a Store over the webhooks KV bucket (natsinfra.WebhooksBucket).
// rdb is a *redis.Client (one Redis, or Sentinel's failover client), a
// *redis.ClusterClient, or nil: then every read goes to KV (a warning is
// logged once).
// With Redis, New starts the generation watcher (see the package comment);
// reads go to KV until it has confirmed the generation, normally within one
// KV round trip. Call Close to stop it.
// The Redis client should have short timeouts (DialTimeout/ReadTimeout in
// the hundreds of milliseconds, ContextTimeoutEnabled), because a slow Redis
// slows every delivery until its first error opens the fallback to KV.
func New(kv jetstream.KeyValue, rdb redis.UniversalClient, opts Options) (*Store, error) {
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
	node, err := newRedisNode(rdb)
	if err != nil {
		return nil, fmt.Errorf("new webhook store: %w", err)
	}
	log := opts.Logger.With("component", "webhooks")
	if node == nil {
		log.Warn("no Redis configured: every webhook lookup reads JetStream KV")
	}
	log.Info("webhook store ready", "secret_key_id", box.KeyID(), "redis", node != nil, "redis_cluster", node != nil && node.cluster != nil)
	return &Store{
		records: &records{kv: kv, box: box},
		cache:   newCache(kv, node, box, opts, log),
	}, nil
}

// Close stops the generation watcher and waits for it. Reads and writes
// keep working afterwards, but reads fall back to KV once the last
// confirmation of the generation expires. It does not close the KV bucket
// or the Redis client, which the caller owns.
func (s *Store) Close() { s.cache.close() }

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
	return s.records.ids(ctx)
}

// Get returns the configuration of integrationID, or ErrNotFound. It is the
// delivery hot path: on a cache hit it makes one Redis round trip, shared
// with concurrent Gets (readbatch.go).
func (s *Store) Get(ctx context.Context, integrationID string) (Webhook, error) {
	if !validID(integrationID) {
		return Webhook{}, invalidID(integrationID)
	}
	cfg, answered, fill, err := s.cache.get(ctx, integrationID)
	if answered {
		return cfg, err
	}
	return s.getKV(ctx, integrationID, fill)
}

// getKV reads KV; with a non-nil g it then populates Redis in generation g,
// which the caller knew before the KV read (so a populate can only target a
// generation that existed when its data was read).
func (s *Store) getKV(ctx context.Context, id string, g *generation) (Webhook, error) {
	readStart := time.Now()
	cfg, sealed, err := s.records.get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		if g != nil {
			s.cache.populate(ctx, g, id, 0, tombstonePayload, readStart)
		}
		return Webhook{}, ErrNotFound
	}
	if err != nil {
		return Webhook{}, err
	}
	if g != nil {
		s.cache.populate(ctx, g, id, cfg.Revision, encodePayload(cfg, sealed), readStart)
	}
	return cfg, nil
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
	cfg, sealed, created, err := s.records.put(ctx, integrationID, set)
	if err != nil {
		return Webhook{}, false, err
	}
	if err := s.cache.afterWrite(ctx, integrationID, cfg.Revision, encodePayload(cfg, sealed)); err != nil {
		return Webhook{}, false, err
	}
	return cfg, created, nil
}

// RotateSecret replaces the secret of integrationID with a new one, at once
// and with no grace period (docs/contract.md, Secrets).
func (s *Store) RotateSecret(ctx context.Context, integrationID string) (Webhook, error) {
	if !validID(integrationID) {
		return Webhook{}, invalidID(integrationID)
	}
	cfg, sealed, err := s.records.rotateSecret(ctx, integrationID)
	if err != nil {
		return Webhook{}, err
	}
	if err := s.cache.afterWrite(ctx, integrationID, cfg.Revision, encodePayload(cfg, sealed)); err != nil {
		return Webhook{}, err
	}
	return cfg, nil
}

// Delete removes the configuration of integrationID (ErrNotFound if none).
func (s *Store) Delete(ctx context.Context, integrationID string) error {
	if !validID(integrationID) {
		return invalidID(integrationID)
	}
	deleted, err := s.records.delete(ctx, integrationID)
	if err != nil {
		return err
	}
	// The delete marker's own revision is not returned by the client;
	// revision+1 is above every value the key had and not above the
	// marker, so any re-creation (a later revision) overrides it.
	return s.cache.afterWrite(ctx, integrationID, deleted+1, tombstonePayload)
}

// Stats are counters for metrics and tests.
type Stats struct {
	CacheHits, CacheMisses uint64 // Redis answered with / without an entry
	KVDirect               uint64 // reads that skipped Redis
	RedisErrors            uint64
	LateWritesRefused      uint64 // cache writes refused by their deadline
	GenerationChanges      uint64 // generations this store created
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats { return s.cache.stats.snapshot() }
