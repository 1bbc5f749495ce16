package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/sign"
)

// maxWriteAttempts bounds the optimistic-concurrency loop of a write.
const maxWriteAttempts = 16

// records is the source of truth: the webhooks KV bucket, one record per
// integration, with the secret sealed by box. It knows nothing of Redis;
// Store tells the cache about every change it makes.
type records struct {
	kv  jetstream.KeyValue
	box *secretBox
}

// recordFormat versions the KV value layout.
const recordFormat = 1

// record is the KV value of one integration: readable JSON (an operator can
// `nats kv get` it), with the secret only in its encrypted text form.
type record struct {
	Format    int       `json:"format"`
	Enabled   bool      `json:"enabled"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Secret    string    `json:"secret"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func decodeRecord(b []byte) (record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("decode webhook record: %w", err)
	}
	if r.Format != recordFormat {
		return record{}, fmt.Errorf("decode webhook record: unknown format %d (this dispatcher reads format %d)", r.Format, recordFormat)
	}
	if r.Secret == "" {
		return record{}, errors.New("decode webhook record: no secret")
	}
	return r, nil
}

func (r record) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		// Only strings, bools and times: marshalling cannot fail.
		panic(fmt.Sprintf("encode webhook record: %v", err))
	}
	return b
}

// ids returns the integration ids that have a record, sorted.
func (r *records) ids(ctx context.Context) ([]string, error) {
	lister, err := r.kv.ListKeys(ctx)
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

// get reads the configuration of id (ErrNotFound if it has none), with its
// secret also in sealed form, as the cache stores it.
func (r *records) get(ctx context.Context, id string) (cfg Webhook, sealed []byte, err error) {
	e, err := r.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Webhook{}, nil, ErrNotFound
	}
	if err != nil {
		return Webhook{}, nil, fmt.Errorf("read webhook %s from KV: %w", id, err)
	}
	rec, err := decodeRecord(e.Value())
	if err != nil {
		return Webhook{}, nil, fmt.Errorf("read webhook %s: %w", id, err)
	}
	cfg, sealed, err = r.open(id, rec)
	if err != nil {
		return Webhook{}, nil, err
	}
	cfg.Revision = e.Revision()
	return cfg, sealed, nil
}

// open returns the configuration rec holds, with its secret decrypted
// (Revision left zero), and the sealed secret.
func (r *records) open(id string, rec record) (Webhook, []byte, error) {
	sealed, err := textToSealed(rec.Secret)
	if err != nil {
		return Webhook{}, nil, fmt.Errorf("integration %s: %w", id, err)
	}
	secret, err := r.box.open(id, string(sealed))
	if err != nil {
		return Webhook{}, nil, err
	}
	mask, err := eventMask(rec.Events)
	if err != nil {
		return Webhook{}, nil, fmt.Errorf("read webhook %s: %w", id, err)
	}
	return Webhook{
		IntegrationID: id,
		Settings:      Settings{Enabled: rec.Enabled, URL: rec.URL, Events: eventsFromMask(mask)},
		Secret:        secret,
		CreatedAt:     rec.CreatedAt.UTC(),
		UpdatedAt:     rec.UpdatedAt.UTC(),
	}, sealed, nil
}

// newSecret creates a secret for id, in plaintext and sealed.
func (r *records) newSecret(id string) (secret string, sealed []byte, err error) {
	secret, err = sign.NewSecret()
	if err != nil {
		return "", nil, fmt.Errorf("create webhook secret: %w", err)
	}
	return secret, r.box.seal(id, secret), nil
}

// put creates or replaces the settings of id (set is normalized). The
// secret is created with the record and kept on replace; created reports
// whether there was no record before.
func (r *records) put(ctx context.Context, id string, set Settings) (cfg Webhook, sealed []byte, created bool, err error) {
	rev, err := r.update(ctx, id, func(cur *record) (record, error) {
		now := time.Now().UTC().Truncate(time.Millisecond)
		if cur == nil {
			secret, newSealed, err := r.newSecret(id)
			if err != nil {
				return record{}, err
			}
			cfg, sealed, created = Webhook{IntegrationID: id, Settings: set, Secret: secret, CreatedAt: now, UpdatedAt: now}, newSealed, true
			return record{Format: recordFormat, Enabled: set.Enabled, URL: set.URL, Events: set.Events,
				Secret: sealedToText(newSealed), CreatedAt: now, UpdatedAt: now}, nil
		}
		// Decrypting the kept secret proves this dispatcher has the key the
		// record was sealed with, and gives the caller the config in full.
		prev, kept, err := r.open(id, *cur)
		if err != nil {
			return record{}, err
		}
		cfg = Webhook{IntegrationID: id, Settings: set, Secret: prev.Secret, CreatedAt: prev.CreatedAt, UpdatedAt: now}
		sealed, created = kept, false
		next := *cur
		next.Enabled, next.URL, next.Events, next.UpdatedAt = set.Enabled, set.URL, set.Events, now
		return next, nil
	})
	if err != nil {
		return Webhook{}, nil, false, err
	}
	cfg.Revision = rev
	return cfg, sealed, created, nil
}

// rotateSecret replaces the secret of id with a new one (ErrNotFound if id
// has no record).
func (r *records) rotateSecret(ctx context.Context, id string) (cfg Webhook, sealed []byte, err error) {
	rev, err := r.update(ctx, id, func(cur *record) (record, error) {
		if cur == nil {
			return record{}, ErrNotFound
		}
		// Refuse to seal with a key other dispatchers may not have.
		prev, _, err := r.open(id, *cur)
		if err != nil {
			return record{}, err
		}
		secret, newSealed, err := r.newSecret(id)
		if err != nil {
			return record{}, err
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		cfg, sealed = prev, newSealed
		cfg.Secret, cfg.UpdatedAt = secret, now
		next := *cur
		next.Secret, next.UpdatedAt = sealedToText(newSealed), now
		return next, nil
	})
	if err != nil {
		return Webhook{}, nil, err
	}
	cfg.Revision = rev
	return cfg, sealed, nil
}

// delete removes the record of id (ErrNotFound if none) and returns the
// revision of the value it removed.
func (r *records) delete(ctx context.Context, id string) (uint64, error) {
	return r.update(ctx, id, nil)
}

// update is the one optimistic read-modify-write of a record. Each attempt
// reads the record of id and asks edit for the record to store in its place
// (cur is nil when id has none); the write then only succeeds if KV still
// holds what the attempt read: a create fails if the key appeared, an
// update or delete if its revision moved. After such a conflict the next
// attempt starts over from the new state, after a short random pause; after
// maxWriteAttempts update gives up with ErrConflict, and nothing was
// written. An error from edit ends update and is returned as it is.
//
// A nil edit deletes the key (ErrNotFound if absent) without decoding its
// record, so that a record this dispatcher cannot read (a newer format
// during a rolling upgrade) can still be deleted.
//
// It returns the revision it wrote; for a delete, whose marker's revision
// the client does not report, the revision of the value it removed.
func (r *records) update(ctx context.Context, id string, edit func(cur *record) (record, error)) (uint64, error) {
	for attempt := range maxWriteAttempts {
		if err := conflictPause(ctx, attempt); err != nil {
			return 0, err
		}
		rev, conflict, err := r.tryUpdate(ctx, id, edit)
		if conflict {
			continue // changed since we read it: apply the edit to the new state
		}
		return rev, err
	}
	return 0, fmt.Errorf("change webhook %s: %w", id, ErrConflict)
}

// tryUpdate is one attempt of update; conflict reports that its write found
// the key changed since its read.
func (r *records) tryUpdate(ctx context.Context, id string, edit func(cur *record) (record, error)) (rev uint64, conflict bool, err error) {
	e, err := r.kv.Get(ctx, id)
	absent := errors.Is(err, jetstream.ErrKeyNotFound)
	if err != nil && !absent {
		return 0, false, fmt.Errorf("read webhook %s from KV: %w", id, err)
	}
	var op string // the write, for its error
	switch {
	case edit == nil && absent:
		return 0, false, ErrNotFound
	case edit == nil:
		op, rev = "delete", e.Revision()
		err = r.kv.Delete(ctx, id, jetstream.LastRevision(rev))
	case absent:
		next, editErr := edit(nil)
		if editErr != nil {
			return 0, false, editErr
		}
		op = "create"
		rev, err = r.kv.Create(ctx, id, next.encode())
	default:
		cur, decErr := decodeRecord(e.Value())
		if decErr != nil {
			return 0, false, fmt.Errorf("change webhook %s: %w", id, decErr)
		}
		next, editErr := edit(&cur)
		if editErr != nil {
			return 0, false, editErr
		}
		op = "replace"
		rev, err = r.kv.Update(ctx, id, next.encode(), e.Revision())
	}
	switch {
	case isConflict(err):
		return 0, true, nil
	case err != nil:
		return 0, false, fmt.Errorf("%s webhook %s in KV: %w", op, id, err)
	}
	return rev, false, nil
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
