package webhooks

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

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
// restored (see the package comment, case 3).
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
func (s *Store) decodeCached(id, v string) (cfg Webhook, found bool, err error) {
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
	secret, err := s.box.open(id, p[n+int(urlLen):])
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
func (s *Store) casWrite(ctx context.Context, g *generation, id string, rev uint64, payload []byte, deadline time.Time) (int64, error) {
	value := make([]byte, 0, 21+len(payload))
	value = strconv.AppendUint(value, rev, 10)
	value = append(value, ':')
	value = append(value, payload...)
	// ±10 % jitter spreads the expiry of entries written together.
	ttl := s.opts.CacheTTL - s.opts.CacheTTL/10 + rand.N(s.opts.CacheTTL/5+1)
	sc := s.scripts.Load()
	if sc == nil {
		return 0, errNotVerified
	}
	res, err := s.cache.EvalSha(ctx, sc.cas.sha, []string{g.keyPrefix + id},
		rev, value, ttl.Milliseconds(), deadline.UnixMilli()).Int64()
	if err == nil && res < 0 {
		s.stats.late.Add(1)
	}
	return res, err
}

// populate writes what a reader read from KV (revision rev, 0 for absent)
// into generation g, the one known before the read started at readStart.
// Its failure only costs a later miss, so it is not returned.
func (s *Store) populate(ctx context.Context, g *generation, id string, rev uint64, payload []byte, readStart time.Time) {
	_, err := s.casWrite(ctx, g, id, rev, payload, readStart.Add(s.opts.CacheWriteWindow))
	switch {
	case err == nil, ctx.Err() != nil:
	case isNoScript(err):
		s.tryVerifyRedis(ctx)
	default:
		s.redisFailed("populate webhook cache", err)
	}
}
