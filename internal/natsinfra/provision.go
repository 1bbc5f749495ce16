// Package natsinfra holds what every part of the system needs from NATS:
// idempotent provisioning of the streams, consumers and KV buckets, the
// server-version check, the embedded server, and the trace-header carrier.
package natsinfra

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of everything the dispatcher keeps in JetStream. They are fixed by
// the contract (the events stream: docs/contract.md, Publishing events) or
// by this project; operators see them in
// `nats stream ls`.
const (
	EventsStream   = "BLAZELOCK_EVENTS"
	EventsSubjects = "blazelock.events.>"
	// EventsSubjectPrefix + "<integration_id>.<event>" is an event's subject.
	EventsSubjectPrefix = "blazelock.events."
	EventsConsumer      = "dispatcher"

	// RetriesStream holds attempts 2..N. Each scheduled attempt is a NATS
	// message schedule (server ≥ 2.12) on RetriesSchedulePrefix+<delivery>
	// that the server fires onto RetriesDuePrefix+<integration> at its time,
	// so waiting retries occupy no consumer ack slot (see DESIGN: the
	// MaxAckPending trap) and survive dispatcher restarts.
	RetriesStream         = "BLAZELOCK_RETRIES"
	RetriesSchedulePrefix = "blazelock.retries.schedule."
	RetriesDuePrefix      = "blazelock.retries.due."
	RetriesConsumer       = "dispatcher-retries"

	// WebhooksBucket is the source of truth for webhook configurations.
	WebhooksBucket = "BLAZELOCK_WEBHOOKS"
	// DeliveriesBucket is the delivery log.
	DeliveriesBucket = "BLAZELOCK_DELIVERIES"

	// FleetBucket holds one key per running dispatcher, refreshed by its
	// heartbeat (see dispatcher/fleet), so every dispatcher knows how many
	// share the per-integration concurrency budget.
	FleetBucket = "BLAZELOCK_DISPATCHERS"
	// FleetTTL is how long a dispatcher's key outlives its last heartbeat,
	// so the keys of crashed processes leave the bucket. A dispatcher stops
	// counting a silent peer well before that (fleet.Options.StaleAfter).
	FleetTTL = 30 * time.Second

	// PortalBucket holds the Webhook section's sessions and single-use
	// portal links (see dispatcher/portal), shared by every dispatcher.
	PortalBucket = "BLAZELOCK_PORTAL"
)

// Options are the operator's choices for provisioning.
type Options struct {
	Replicas int
	Storage  jetstream.StorageType
	// EventsMaxAge is how long published events (and so the delivery log,
	// which refers to them for replays) are kept.
	EventsMaxAge time.Duration
	// DuplicateWindow is how long a Nats-Msg-Id is remembered for dedupe.
	DuplicateWindow time.Duration
	// MaxMsgBytes is the largest message the streams store. It is above the
	// dispatcher's event limit on purpose, so oversized events reach the
	// dispatcher and end as `rejected` with a reason instead of vanishing.
	MaxMsgBytes int32
	// AckWait bounds one attempt plus its bookkeeping before JetStream
	// redelivers the message to another dispatcher.
	AckWait time.Duration
	// MaxAckPending caps messages handed out but not yet acknowledged, per consumer.
	MaxAckPending int
	// PortalTTL is how long the portal bucket keeps a session or link
	// record: at least their longest lifetime (each record also carries its
	// own expiry, which is what is enforced).
	PortalTTL time.Duration
}

// DefaultOptions are used by the embedded default and the tests.
func DefaultOptions() Options {
	return Options{
		Replicas:        1,
		Storage:         jetstream.FileStorage,
		EventsMaxAge:    7 * 24 * time.Hour,
		DuplicateWindow: 2 * time.Minute,
		MaxMsgBytes:     1 << 20,
		AckWait:         60 * time.Second,
		MaxAckPending:   20000,
		PortalTTL:       24 * time.Hour,
	}
}

// Streams returns the stream configurations provisioning creates.
func (o Options) Streams() []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name:        EventsStream,
			Description: "Blazelock scan events published by scan services (docs/contract.md, Publishing events)",
			Subjects:    []string{EventsSubjects},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      o.EventsMaxAge,
			Duplicates:  o.DuplicateWindow,
			MaxMsgSize:  o.MaxMsgBytes,
			Storage:     o.Storage,
			Replicas:    o.Replicas,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:              RetriesStream,
			Description:       "Scheduled webhook attempts 2..N and API retries",
			Subjects:          []string{RetriesSchedulePrefix + ">", RetriesDuePrefix + ">"},
			Retention:         jetstream.WorkQueuePolicy,
			MaxAge:            o.EventsMaxAge,
			Duplicates:        o.DuplicateWindow,
			MaxMsgSize:        o.MaxMsgBytes,
			Storage:           o.Storage,
			Replicas:          o.Replicas,
			AllowMsgSchedules: true,
		},
	}
}

// Consumers returns the durable pull consumers, keyed by stream name.
func (o Options) Consumers() map[string]jetstream.ConsumerConfig {
	return map[string]jetstream.ConsumerConfig{
		EventsStream: {
			Durable:       EventsConsumer,
			Description:   "first attempts, shared by every dispatcher",
			FilterSubject: EventsSubjects,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       o.AckWait,
			MaxAckPending: o.MaxAckPending,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			Replicas:      o.Replicas,
		},
		RetriesStream: {
			Durable:       RetriesConsumer,
			Description:   "scheduled attempts that are due, shared by every dispatcher",
			FilterSubject: RetriesDuePrefix + ">",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       o.AckWait,
			MaxAckPending: o.MaxAckPending,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			Replicas:      o.Replicas,
		},
	}
}

// Buckets returns the KV bucket configurations.
func (o Options) Buckets() []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{
			Bucket:      WebhooksBucket,
			Description: "webhook configuration per integration (secrets encrypted)",
			History:     1,
			Storage:     o.Storage,
			Replicas:    o.Replicas,
		},
		{
			Bucket:      DeliveriesBucket,
			Description: "delivery log: each delivery with its attempts",
			History:     1,
			TTL:         o.EventsMaxAge,
			Storage:     o.Storage,
			Replicas:    o.Replicas,
		},
		{
			Bucket:      FleetBucket,
			Description: "live dispatchers: one key per process, refreshed by its heartbeat",
			History:     1,
			TTL:         FleetTTL,
			Storage:     o.Storage,
			Replicas:    o.Replicas,
		},
		{
			Bucket:      PortalBucket,
			Description: "Webhook section sessions and portal links (keys are hashes of the secrets)",
			History:     1,
			TTL:         o.PortalTTL,
			Storage:     o.Storage,
			Replicas:    o.Replicas,
		},
	}
}

// Provision creates or updates every stream, consumer and bucket, then reads
// each back and fails if the server stored something other than what was
// asked (older servers silently drop options they do not know). Running it
// again with the same options changes nothing.
func Provision(ctx context.Context, js jetstream.JetStream, o Options) error {
	var problems []error
	for _, want := range o.Streams() {
		var info *jetstream.StreamInfo
		err := retry(ctx, func(ctx context.Context) error {
			s, err := js.CreateOrUpdateStream(ctx, want)
			if err != nil {
				return err
			}
			info, err = s.Info(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("provision stream %s: %w", want.Name, err)
		}
		problems = append(problems, compareStream(want, info.Config)...)
		if cc, ok := o.Consumers()[want.Name]; ok {
			var ci *jetstream.ConsumerInfo
			err := retry(ctx, func(ctx context.Context) error {
				c, err := js.CreateOrUpdateConsumer(ctx, want.Name, cc)
				if err != nil {
					return err
				}
				ci, err = c.Info(ctx)
				return err
			})
			if err != nil {
				return fmt.Errorf("provision consumer %s on %s: %w", cc.Durable, want.Name, err)
			}
			problems = append(problems, compareConsumer(cc, ci.Config)...)
		}
	}
	for _, want := range o.Buckets() {
		var st jetstream.KeyValueStatus
		err := retry(ctx, func(ctx context.Context) error {
			kv, err := provisionBucket(ctx, js, want, !o.LeaderReads())
			if err != nil {
				return err
			}
			st, err = kv.Status(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("provision KV bucket %s: %w", want.Bucket, err)
		}
		if st.TTL() != want.TTL || st.History() != int64(want.History) {
			problems = append(problems, fmt.Errorf("KV bucket %s: server stored ttl=%s history=%d, asked ttl=%s history=%d",
				want.Bucket, st.TTL(), st.History(), want.TTL, want.History))
		}
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo().Config.AllowDirect != !o.LeaderReads() {
			problems = append(problems, fmt.Errorf("KV bucket %s: server stored allow_direct=%v, asked %v",
				want.Bucket, bs.StreamInfo().Config.AllowDirect, !o.LeaderReads()))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("the NATS server did not store the configuration asked for (is it older than %s?): %w", MinServerVersion, err)
	}
	return nil
}

// provisionCallTimeout bounds one step of provisioning (a create or update
// and its read-back), which retry repeats until the caller's context ends.
const provisionCallTimeout = 5 * time.Second

// retry runs step, each time with provisionCallTimeout, until it succeeds,
// fails for a reason that is not temporary (see temporary), or ctx ends. Every step is idempotent. A
// JetStream API answer can be lost, or refused while a leader is being
// elected: on a NATS cluster formed a moment before, the answer to the
// first stream creation never came and the dispatcher gave up after its
// whole provisioning timeout (seen in the reliability suite's cluster
// tests under load); asking again gets the answer.
func retry(ctx context.Context, step func(context.Context) error) error {
	for {
		stepCtx, cancel := context.WithTimeout(ctx, provisionCallTimeout)
		err := step(stepCtx)
		cancel()
		if err == nil || ctx.Err() != nil || !temporary(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// errNoSuitablePeers is JetStream's "no suitable peers for placement":
// fewer cluster nodes are online than the replicas asked for.
const errNoSuitablePeers jetstream.ErrorCode = 10005

// temporary reports whether a JetStream API call may succeed if made
// again: a timeout, no responder, JetStream temporarily unavailable (503,
// an election), or too few nodes online for the replicas, which a cluster
// that has just formed or is restarting a node reports for a moment (seen
// at the start of the reliability suite's cluster tests). A cluster that
// really lacks the nodes keeps answering it, and provisioning then fails
// with it when its deadline passes.
func temporary(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		(errors.As(err, &apiErr) && (apiErr.Code == 503 || apiErr.ErrorCode == errNoSuitablePeers))
}

// LeaderReads reports whether KV reads go to each bucket's leader rather
// than to any replica: with replicated buckets (Replicas > 1). nats.go
// creates buckets with direct gets, which any replica answers: a follower
// may answer slightly behind the leader (a read just after a write can
// miss it), and while the node of a bucket's leader is cut off from the
// others, part of the direct gets keep going to it and time out until
// the servers close the dead routes (a minute and more with nats-server's
// default route pings; reliability: TestClusterNodePartitioned). Leader
// reads see every write the leader acknowledged, and recover as soon as
// a new leader is elected. With one replica both are the same server and
// direct gets are cheaper, so they stay.
func (o Options) LeaderReads() bool { return o.Replicas > 1 }

// provisionBucket creates the bucket, or updates it when its settings
// differ from want, then sets whether any replica may answer reads
// (direct). It writes nothing when the bucket is already as asked, so a
// dispatcher that starts never changes a setting under the running ones
// (nats.go's CreateOrUpdateKeyValue always asks for direct gets, so it is
// called only when something else must change; a process that opens the
// bucket in the moment before direct is set again keeps direct gets until
// it restarts).
func provisionBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig, direct bool) (jetstream.KeyValue, error) {
	name := "KV_" + want.Bucket
	s, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		s = nil
	case err != nil:
		return nil, err
	}
	if s == nil || !bucketAsAsked(s.CachedInfo().Config, want) {
		if _, err := js.CreateOrUpdateKeyValue(ctx, want); err != nil {
			return nil, err
		}
		if s, err = js.Stream(ctx, name); err != nil {
			return nil, err
		}
	}
	if cfg := s.CachedInfo().Config; cfg.AllowDirect != direct {
		cfg.AllowDirect = direct
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("set allow_direct=%v: %w", direct, err)
		}
	}
	return js.KeyValue(ctx, want.Bucket)
}

// bucketAsAsked compares the settings Buckets sets with a bucket's stream.
func bucketAsAsked(got jetstream.StreamConfig, want jetstream.KeyValueConfig) bool {
	history, replicas := int64(max(want.History, 1)), max(want.Replicas, 1)
	return got.Description == want.Description && got.MaxMsgsPerSubject == history && got.MaxAge == want.TTL &&
		got.Storage == want.Storage && got.Replicas == replicas
}

func compareStream(want, got jetstream.StreamConfig) []error {
	return mismatches("stream "+want.Name, []field{
		{"subjects", want.Subjects, got.Subjects},
		{"retention", want.Retention, got.Retention},
		{"max age", want.MaxAge, got.MaxAge},
		{"duplicate window", want.Duplicates, got.Duplicates},
		{"max message size", want.MaxMsgSize, got.MaxMsgSize},
		{"storage", want.Storage, got.Storage},
		{"replicas", want.Replicas, got.Replicas},
		{"message schedules", want.AllowMsgSchedules, got.AllowMsgSchedules},
	})
}

func compareConsumer(want, got jetstream.ConsumerConfig) []error {
	return mismatches("consumer "+want.Durable, []field{
		{"filter subject", want.FilterSubject, got.FilterSubject},
		{"ack policy", want.AckPolicy, got.AckPolicy},
		{"ack wait", want.AckWait, got.AckWait},
		{"max ack pending", want.MaxAckPending, got.MaxAckPending},
	})
}

// field is one setting asked for and the value the server stored.
type field struct {
	name      string
	want, got any
}

func mismatches(object string, fields []field) []error {
	var p []error
	for _, f := range fields {
		if !reflect.DeepEqual(f.want, f.got) {
			p = append(p, fmt.Errorf("%s %s: stored %v, asked %v", object, f.name, f.got, f.want))
		}
	}
	return p
}

// EventSubject is the subject an event for an integration is published on.
func EventSubject(integrationID, event string) string {
	return EventsSubjectPrefix + integrationID + "." + event
}

// ParseEventSubject splits an event subject into integration id and event
// name; ok is false when the subject does not have that shape.
func ParseEventSubject(subject string) (integrationID, event string, ok bool) {
	rest, found := strings.CutPrefix(subject, EventsSubjectPrefix)
	if !found {
		return "", "", false
	}
	integrationID, event, found = strings.Cut(rest, ".")
	if !found || integrationID == "" || event == "" {
		return "", "", false
	}
	return integrationID, event, true
}
