package receiver

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"github.com/google/uuid"
)

// eventKey identifies an event in the de-duplication table in 16 bytes: the
// UUID of X-Blazelock-Webhook-Id when it is one (UUIDv7 from the publisher),
// else a hash of the header, else (no header at all) a hash of the body, which
// the contract (docs/contract.md, Envelope) keeps byte-identical across
// attempts.
type eventKey [16]byte

func keyOf(webhookID string, body []byte) eventKey {
	if webhookID != "" {
		if id, err := uuid.Parse(webhookID); err == nil {
			return eventKey(id)
		}
		sum := sha256.Sum256([]byte("id:" + webhookID))
		return eventKey(sum[:16])
	}
	h := sha256.New()
	h.Write([]byte("body:"))
	h.Write(body)
	var sum [sha256.Size]byte
	return eventKey(h.Sum(sum[:0])[:16])
}

// eventState is what the receiver remembers per event: a few bytes, so the
// table stays small when benchmarks push millions of events through.
type eventState struct {
	arrivals uint32 // verified arrivals so far
	accepted bool   // answered 2xx once
}

// eventTable is a sharded map: concurrent requests for different events
// almost never contend on the same lock.
type eventTable struct {
	shards [eventShards]eventShard
}

const eventShards = 64

type eventShard struct {
	mu sync.Mutex
	m  map[eventKey]eventState
	_  [40]byte // one shard per cache line, against false sharing
}

func (t *eventTable) shard(k eventKey) *eventShard {
	// The tail of a UUIDv7 is random; its head is a timestamp.
	return &t.shards[binary.LittleEndian.Uint64(k[8:])%eventShards]
}

// arrive counts a verified arrival of the event and returns its number (1 for
// the first).
func (t *eventTable) arrive(k eventKey) uint32 {
	s := t.shard(k)
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[eventKey]eventState)
	}
	st := s.m[k]
	st.arrivals++
	s.m[k] = st
	s.mu.Unlock()
	return st.arrivals
}

// accept marks the event accepted and reports whether it was the first time.
func (t *eventTable) accept(k eventKey) (first bool) {
	s := t.shard(k)
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[eventKey]eventState)
	}
	st := s.m[k]
	first = !st.accepted
	st.accepted = true
	s.m[k] = st
	s.mu.Unlock()
	return first
}

// len returns the number of events seen.
func (t *eventTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
