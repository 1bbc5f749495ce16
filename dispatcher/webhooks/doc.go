// Package webhooks keeps each integration's webhook configuration: JetStream
// KV is the source of truth, Redis is a shared read cache that every
// dispatcher reads on every delivery attempt, and secrets are encrypted at
// rest in both (see secretbox.go).
//
// Three types share the work:
//
//   - records (records.go) is the KV side: one JSON record per integration,
//     its secret sealed, and the one optimistic read-modify-write (update)
//     that every change of a record goes through.
//   - cache (cache.go, with generation.go and readbatch.go) is the Redis
//     side: the entries and the scripts that read and compare-and-set them,
//     the cache generation (a token held in KV, followed by a watcher), and
//     the fallback to KV while Redis fails. In KV it only touches the
//     generation's reserved key, never an integration's record.
//   - Store (store.go) composes them: Get asks the cache and, when it cannot
//     answer, reads the record and lets the cache populate; Put,
//     RotateSecret and Delete change the record, then let the cache confirm
//     the change before they return.
//
// # Why the cache can never serve a stale configuration
//
// The contract (docs/contract.md, Configuration at attempt time) promises
// that once the API has answered a change, no attempt that starts
// afterwards, on any dispatcher, uses the old setting. A read-through cache
// breaks that promise in four ways unless each is closed:
//
//  1. A slow reader populates an old value after a newer write. Every Redis
//     value carries the KV revision it was built from, and every write to
//     Redis is a Lua compare-and-set that only replaces a value with a lower
//     revision. Deletes write a tombstone instead of DEL (its revision is
//     the deleted revision + 1: above every value of that key, below any
//     re-creation). A key KV has never held is cached as a tombstone of
//     revision 0, which any real write overrides.
//  2. A writer cannot reach Redis (outage or partition) and the old entry
//     is still there when Redis is reachable again. Redis keys contain a
//     cache generation, a random token kept in KV under a reserved key
//     (generationKey, which no integration id can equal). A writer that
//     fails to update Redis after its KV write replaces the token before it
//     answers, so every entry cached before is unreachable. Writers always
//     read the token from KV after their own KV write, so they update the
//     generation that is current after the write.
//  3. Redis loses acknowledged writes: a restart from an older RDB/AOF
//     snapshot, or a failover to a replica that missed the last writes
//     (Sentinel promotes a replica that replicates asynchronously). All
//     Redis calls are EVALSHA of our scripts, and the scripts carry the
//     run_id of the Redis process they were loaded into, so the first call
//     against any other process fails with NOSCRIPT: a restarted one has
//     forgotten every script, a replica never had ours (Redis 7 does not
//     replicate SCRIPT LOAD), and a primary that Sentinel demoted without a
//     restart, which keeps its script cache through the resync and may be
//     promoted again later while behind, has only scripts tagged with its
//     own run_id, not the current process's. Scripts are only (re)loaded
//     after comparing the server's run_id with the one recorded next to
//     the generation; a different run_id moves the generation first. A
//     Redis Cluster is treated as one Redis whose run_id is the list of
//     its primaries' run_ids, with the scripts loaded on every primary and
//     on no replica (primaries.go): a shard that restarts, fails over or
//     joins is a changed list, and its first call fails with NOSCRIPT.
//  4. A write lands in Redis long after its KV read (a stalled process or
//     a TCP retransmission), after the newer entry that guarded it expired.
//     Every compare-and-set carries a deadline (read start + CacheWriteWindow)
//     that the script checks against the Redis clock, and CacheTTL is far
//     longer than that window (clock skew between hosts must stay below
//     CacheTTL - CacheWriteWindow; with a skew the other way writes are
//     refused and reads fall back to KV, which is slow but correct).
//
// A reader that misses populates only the generation it knew before its KV
// read, so a populate can never land in a generation created after the
// write it missed: the cache hands Store that generation with the miss, and
// Store passes it back with what it read. Every Store's cache learns the
// generation from a KV watcher (milliseconds), started by New and stopped by
// Close, and confirms it with a direct KV read every GenerationRefresh. It
// uses Redis only while that confirmation is younger than GenerationLease;
// otherwise reads go to KV directly, as they do before the cache first knows
// the generation.
//
// Residual window, stated honestly: when a writer could not reach Redis but
// a reader can, the reader may read an entry of the old generation until its
// watcher delivers the new token: normally milliseconds, at most
// GenerationRefresh + one KV round trip if the watcher lags, and at most
// GenerationLease if NATS is unreachable from the reader (then it reads KV,
// which fails, and the attempt is retried later). The same bound holds for
// other dispatchers after a Redis restart detected by one of them (case 3).
// If the KV write succeeds but neither Redis nor the generation can be
// updated, the write returns ErrNotConfirmed: the API answers 503, so the
// promise (which starts at a successful answer) is not broken, but the cache
// may serve the previous value until CacheTTL or a successful retry.
//
// The argument assumes a KV read sees every write acknowledged before it
// started. That holds for a bucket with one replica (natsinfra's default),
// and for replicated buckets because provisioning turns their direct gets
// off (natsinfra.Options.LeaderReads): reads are answered by the bucket's
// leader, which acknowledged the write, not by a follower that may lag.
// Two windows remain with replicated buckets: a process that opened the
// bucket while another one was changing its settings may keep direct gets
// until it restarts (see natsinfra's provisionBucket), and right after a
// leader change a read can reach a new leader that has not yet applied
// the last writes it holds: a read that falls back to KV in that moment
// can return the older value, and if the generation moves at that moment,
// cache it until the next write or CacheTTL.
package webhooks
