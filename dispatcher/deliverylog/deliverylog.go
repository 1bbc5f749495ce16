// Package deliverylog records every delivery and its attempts
// (docs/contract.md, Delivery log)
// in the JetStream KV bucket BLAZELOCK_DELIVERIES.
//
// Why KV: it is already provisioned with the cluster (no extra database), it
// is replicated like the events it describes, and its bucket TTL gives the
// bounded retention DESIGN asks for, equal to the events stream's max age so
// a listed delivery can always be replayed. Keys are
// "<integration_id>.<delivery_id>" and delivery ids are UUIDv7 derived from
// the event's stream timestamp, so one integration's keys sort by time and
// a single delivery is found by the subject filter "*.<delivery_id>". The
// cost is that listing reads an integration's keys (server-side filtered)
// and sorts them; with the bounded retention that is acceptable, and it is
// the one place to change if an integration's volume ever makes it slow.
package deliverylog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// Delivery states (docs/contract.md, Delivery states).
const (
	StatePending   = "pending"
	StateSucceeded = "succeeded"
	StateDead      = "dead"
	StateSkipped   = "skipped"
	StateRejected  = "rejected"
)

// States lists every state, for validating the list filter.
var States = []string{StatePending, StateSucceeded, StateDead, StateSkipped, StateRejected}

// Delivery is one event's delivery to its integration's webhook: the
// record as stored and as the API shows it. Package delivery makes every
// change of its state.
type Delivery struct {
	ID             string     `json:"id"`
	EventID        *string    `json:"event_id"`
	Event          *string    `json:"event"`
	IntegrationID  string     `json:"integration_id"`
	State          string     `json:"state"`
	AttemptCount   int        `json:"attempt_count"`
	LastStatusCode *int       `json:"last_status_code"`
	LastError      *string    `json:"last_error"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	Attempts       []Attempt  `json:"attempts"`
	// EventSequence is the event's sequence in BLAZELOCK_EVENTS, used to
	// fetch its body for a replay.
	EventSequence uint64 `json:"event_sequence"`
	// Series counts attempt series: 1 for the original, +1 per API retry;
	// SeriesAttempts counts the attempts of the current series (the
	// X-Blazelock-Webhook-Attempt of the latest one).
	Series         int `json:"series"`
	SeriesAttempts int `json:"series_attempts"`
}

// Attempt is one HTTP attempt (or the reason none was made).
type Attempt struct {
	Number          int       `json:"number"`
	StartedAt       time.Time `json:"started_at"`
	DurationMillis  int64     `json:"duration_ms"`
	StatusCode      *int      `json:"status_code"`
	Error           *string   `json:"error"`
	ResponseExcerpt *string   `json:"response_excerpt"`
}

// Log reads and writes delivery records.
type Log struct {
	kv jetstream.KeyValue
}

// New returns a Log over the deliveries bucket.
func New(kv jetstream.KeyValue) *Log { return &Log{kv: kv} }

// ErrNotFound means no delivery has that id (or it expired).
var ErrNotFound = errors.New("delivery not found")

// DeliveryID derives the delivery id of the event stored at seq in stream
// at time storedAt: a UUIDv7 whose time is the store time and whose random
// bits are a hash of stream and sequence. Deterministic, so a redelivered
// message updates the same record instead of creating a second one.
func DeliveryID(stream string, seq uint64, storedAt time.Time) string {
	var u uuid.UUID
	h := sha256.Sum256(fmt.Appendf(nil, "%s:%d", stream, seq))
	copy(u[6:], h[:10])
	ms := uint64(storedAt.UnixMilli())
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms)
	copy(u[0:6], ts[2:8])
	u[6] = (u[6] & 0x0f) | 0x70 // version 7
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u.String()
}

// keyToken makes an integration id safe as a KV key token. Valid ids are
// UUIDs and pass unchanged; a rejected event's subject may carry anything.
var unsafeToken = regexp.MustCompile(`[^-_a-zA-Z0-9]`)

func keyToken(s string) string {
	if s == "" {
		return "_"
	}
	return unsafeToken.ReplaceAllString(s, "_")
}

func key(integrationID, deliveryID string) string {
	return keyToken(integrationID) + "." + deliveryID
}

// Save writes the record as it is.
func (l *Log) Save(ctx context.Context, d *Delivery) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode delivery %s: %w", d.ID, err)
	}
	if _, err := l.kv.Put(ctx, key(d.IntegrationID, d.ID), b); err != nil {
		return fmt.Errorf("save delivery %s: %w", d.ID, err)
	}
	return nil
}

// Load reads one delivery of a known integration.
func (l *Log) Load(ctx context.Context, integrationID, deliveryID string) (*Delivery, error) {
	entry, err := l.kv.Get(ctx, key(integrationID, deliveryID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load delivery %s: %w", deliveryID, err)
	}
	return decode(entry.Value())
}

// Get reads one delivery by id alone.
func (l *Log) Get(ctx context.Context, deliveryID string) (*Delivery, error) {
	// Only the canonical spelling names a key: uuid.Parse also takes the
	// urn:uuid: and braced forms, which are not valid in a key filter.
	if u, err := uuid.Parse(deliveryID); err != nil || u.String() != deliveryID {
		return nil, ErrNotFound
	}
	keys, err := l.keys(ctx, "*."+deliveryID)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, ErrNotFound
	}
	integration, _, _ := strings.Cut(keys[0], ".")
	return l.Load(ctx, integration, deliveryID)
}

// ListOptions filter and page a listing.
type ListOptions struct {
	State string // empty: every state
	Event string // empty: every event
	Limit int
	// Cursor is the last delivery id of the previous page; the page holds
	// older deliveries only.
	Cursor string
}

// List returns an integration's deliveries, newest first, and the cursor of
// the next page ("" when there is none).
func (l *Log) List(ctx context.Context, integrationID string, o ListOptions) ([]*Delivery, string, error) {
	keys, err := l.keys(ctx, keyToken(integrationID)+".*")
	if err != nil {
		return nil, "", err
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		_, id, _ := strings.Cut(k, ".")
		if o.Cursor == "" || id < o.Cursor {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	var out []*Delivery
	for i, id := range ids {
		d, err := l.Load(ctx, integrationID, id)
		if errors.Is(err, ErrNotFound) {
			continue // expired between listing and reading
		}
		if err != nil {
			return nil, "", err
		}
		if o.State != "" && d.State != o.State || o.Event != "" && (d.Event == nil || *d.Event != o.Event) {
			continue
		}
		out = append(out, d)
		if len(out) == o.Limit {
			if i < len(ids)-1 {
				return out, id, nil
			}
			break
		}
	}
	return out, "", nil
}

func (l *Log) keys(ctx context.Context, filter string) ([]string, error) {
	lister, err := l.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list delivery keys: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

func decode(b []byte) (*Delivery, error) {
	var d Delivery
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decode delivery: %w", err)
	}
	return &d, nil
}
