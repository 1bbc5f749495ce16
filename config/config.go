// Package config is the dispatcher's one typed configuration, read from the
// environment (docs/contract.md, Operator settings, plus the project's own
// settings): typed defaults (Defaults), the variables that override them
// (Variables, which is also the README's table), and a Validate that
// reports every problem at once. The delivery pipeline's tunables are
// gathered in Pipeline.
//
// The package depends on no other package of the project, so the
// dispatcher's packages may use its values and limits (package schedule
// builds the retry policy from Pipeline.RetryDelays).
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config is everything the dispatcher program needs. It is passed down
// explicitly; nothing reads the environment after Load.
type Config struct {
	// NATSURL is an external NATS server; empty starts an embedded one.
	NATSURL string
	// RedisURL is the config cache; empty means KV only.
	RedisURL       string
	RedisKeyPrefix string

	HTTPAddr   string
	AdminToken string
	DataDir    string
	NATSListen string
	// NATSListenExplicit records whether the operator set NATSListen: a busy
	// explicit address is an error, a busy default falls back to a free port.
	NATSListenExplicit bool
	// SecretKey encrypts webhook secrets at rest (32 bytes).
	SecretKey           []byte
	AllowPrivateTargets bool

	// Pipeline are the delivery pipeline's tunables.
	Pipeline Pipeline

	// EventRetention and DuplicateWindow are provisioned into JetStream:
	// how long events (and so the delivery log) are kept, and how long a
	// Nats-Msg-Id is remembered.
	EventRetention    time.Duration
	DuplicateWindow   time.Duration
	NATSReplicas      int
	NATSMemoryStorage bool
	LogFormat         string
	LogLevel          string
	OTLPEndpoint      string

	// PprofAddr, when set, serves net/http/pprof on a listener of its own.
	PprofAddr string

	// PublicURL is the dispatcher's address as browsers reach it
	// (scheme://host[:port]), for portal links; empty uses the Host of the
	// API request that asks for a link. An https PublicURL also marks the
	// session cookie Secure.
	PublicURL string
	// PortalSessionTTL bounds a Webhook section session; PortalLinkTTL is
	// how long a portal link can be used.
	PortalSessionTTL time.Duration
	PortalLinkTTL    time.Duration
	// PortalFrameAncestors are the origins allowed to embed the pages.
	PortalFrameAncestors []string

	// secretKeySet records that DISPATCHER_SECRET_KEY was given, valid or
	// not, for the "required with NATS_URL" check.
	secretKeySet bool
	problems     []error
}

// Pipeline gathers what shapes the delivery pipeline: how many attempts
// run at once, how long one may take, how large an event may be, when a
// failed attempt is tried again, and how long shutdown waits.
type Pipeline struct {
	// Concurrency is the attempts in flight per process, every integration
	// and both lanes together.
	Concurrency int
	// EndpointMaxConcurrency bounds attempts in flight to one endpoint
	// across every dispatcher of the deployment.
	EndpointMaxConcurrency int
	// QueueMaxMessages bounds the messages one process holds waiting for
	// their turn (package flow).
	QueueMaxMessages int
	// AttemptTimeout limits one HTTP attempt (docs/contract.md, Attempt
	// outcome).
	AttemptTimeout time.Duration
	// ShutdownTimeout is how long SIGTERM waits for attempts in flight.
	ShutdownTimeout time.Duration
	// MaxEventBytes is the event size limit (docs/contract.md, Publishing
	// events).
	MaxEventBytes int
	// RetryDelays are the delays before attempts 2..N; its length + 1 is
	// the attempt limit. Package schedule builds the retry policy of them.
	RetryDelays []time.Duration
}

// Defaults returns the configuration with no variable set: the embedded
// default. These values are the defaults; the Default column of Variables
// is written from them.
func Defaults() Config {
	return Config{
		RedisKeyPrefix: "blazelock:",
		HTTPAddr:       "127.0.0.1:8080",
		DataDir:        "./data",
		NATSListen:     "127.0.0.1:4222",
		Pipeline: Pipeline{
			Concurrency:            512,
			EndpointMaxConcurrency: 64,
			QueueMaxMessages:       40000,
			AttemptTimeout:         15 * time.Second,
			ShutdownTimeout:        20 * time.Second,
			MaxEventBytes:          256 << 10,
			RetryDelays:            DefaultRetryDelays(),
		},
		EventRetention:   7 * 24 * time.Hour,
		DuplicateWindow:  2 * time.Minute,
		NATSReplicas:     1,
		LogFormat:        "text",
		LogLevel:         "info",
		PortalSessionTTL: 8 * time.Hour,
		PortalLinkTTL:    15 * time.Minute,
	}
}

// Variable is one environment variable the dispatcher reads, for the README
// table, `dispatcher -help` and the compose-file check.
type Variable struct {
	Name, Default, Meaning string
}

// Variables lists every environment variable Load reads, in README order.
// Where a variable has a value by default, Default is that value of
// Defaults, written as an operator would set it.
var Variables = variables(Defaults())

func variables(d Config) []Variable {
	p := d.Pipeline
	return []Variable{
		{"NATS_URL", "unset: start an embedded nats-server", "external NATS server (JetStream, nats-server ≥ 2.12)"},
		{"REDIS_URL", "unset: no Redis, configs read from JetStream KV (a warning is logged)", "Redis cache of webhook configs, e.g. redis://127.0.0.1:6379/0; behind Redis Sentinel, one sentinel's address, the others as addr= and the monitored master's name: redis://sentinel-1:26379/0?master_name=blazelock&addr=sentinel-2:26379&addr=sentinel-3:26379; a Redis Cluster, one node's address and the others as addr=: redis://node-1:6379?addr=node-2:6379&addr=node-3:6379 (docs/operations.md, Running in production)"},
		{"DISPATCHER_REDIS_PREFIX", d.RedisKeyPrefix, "prefix of every Redis key, to share one Redis safely"},
		{"DISPATCHER_HTTP_ADDR", d.HTTPAddr, "management API, Webhook section pages (/portal/), /healthz, /readyz and /metrics listener"},
		{"DISPATCHER_ADMIN_TOKEN", "required with NATS_URL; generated into the data dir by the embedded default", "bearer token of the management API (at least 32 characters)"},
		{"DISPATCHER_DATA_DIR", d.DataDir, "embedded NATS store and the generated development keys"},
		{"DISPATCHER_NATS_LISTEN", d.NATSListen, "client listener of the embedded NATS; a busy default falls back to a free port (printed, and recorded in `DISPATCHER_DATA_DIR/nats-url` for `dispatcher publish`), a busy explicit address is an error"},
		{"DISPATCHER_SECRET_KEY", "required with NATS_URL; generated into the data dir by the embedded default", "32 random bytes in standard base64 (head -c 32 /dev/urandom | base64) encrypting webhook secrets at rest; shared by all dispatchers"},
		{"DISPATCHER_ALLOW_PRIVATE_TARGETS", strconv.FormatBool(d.AllowPrivateTargets), "allow http and loopback/private webhook targets (local development and tests only)"},
		{"DISPATCHER_RETRY_SCHEDULE", formatDelays(p.RetryDelays), "delays before attempts 2..N; its length + 1 is the attempt limit"},
		{"DISPATCHER_ATTEMPT_TIMEOUT", formatDuration(p.AttemptTimeout), "limit of one HTTP attempt, from connecting to reading the response (docs/contract.md, Attempt outcome; lower it only in tests)"},
		{"DISPATCHER_MAX_EVENT_BYTES", strconv.Itoa(p.MaxEventBytes), "events larger than this are rejected, never delivered; give publishers the same limit (publisher.WithMaxEventBytes)"},
		{"DISPATCHER_CONCURRENCY", strconv.Itoa(p.Concurrency), "attempts in flight per dispatcher process, all integrations and both lanes together"},
		{"DISPATCHER_ENDPOINT_MAX_CONCURRENCY", strconv.Itoa(p.EndpointMaxConcurrency), "most attempts in flight to one integration's endpoint across all dispatchers; each endpoint's limit adapts between 1 and this (docs/operations.md, Flow control)"},
		{"DISPATCHER_QUEUE_MAX_MESSAGES", strconv.Itoa(p.QueueMaxMessages), "messages one process holds waiting for their turn, its memory budget; the consumers' ack windows bound all processes together (docs/operations.md, Flow control)"},
		{"DISPATCHER_SHUTDOWN_TIMEOUT", formatDuration(p.ShutdownTimeout), "how long SIGTERM waits for in-flight attempts before handing them back to JetStream"},
		{"DISPATCHER_EVENT_RETENTION", formatDuration(d.EventRetention), "how long events and the delivery log are kept"},
		{"DISPATCHER_DUPLICATE_WINDOW", formatDuration(d.DuplicateWindow), "JetStream de-duplication window for Nats-Msg-Id"},
		{"DISPATCHER_NATS_REPLICAS", strconv.Itoa(d.NATSReplicas), "replicas of streams and buckets (3 on a NATS cluster, where buckets are then read from their leader)"},
		{"DISPATCHER_NATS_STORAGE", storageName(d.NATSMemoryStorage), "file or memory storage for streams and buckets"},
		{"DISPATCHER_LOG_FORMAT", d.LogFormat, "text or json"},
		{"DISPATCHER_LOG_LEVEL", d.LogLevel, "debug, info, warn or error"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "unset: no OTLP export", "OTLP/HTTP endpoint for traces and metrics (the other OTEL_* variables apply too)"},
		{"DISPATCHER_PUBLIC_URL", "unset: the Host of the API request that creates a portal link, over http", "the dispatcher's address as browsers reach it (https://webhooks.example.com), used in portal links; https also marks the session cookie Secure"},
		{"DISPATCHER_PORTAL_SESSION_TTL", formatDuration(d.PortalSessionTTL), "lifetime of a Webhook section session from sign-in (not extended by use)"},
		{"DISPATCHER_PORTAL_LINK_TTL", formatDuration(d.PortalLinkTTL), "how long a portal link (POST /v1/integrations/{id}/portal-links) can be used; each works once"},
		{"DISPATCHER_PORTAL_FRAME_ANCESTORS", "unset: no page may embed the Webhook section", "space-separated origins allowed to embed the pages in a frame (CSP frame-ancestors), e.g. https://dashboard.blazelock.com; use an origin of the same site, as the session cookie is SameSite=Strict"},
		{"DISPATCHER_PPROF_ADDR", "unset: no profiling listener", "host:port serving Go's net/http/pprof on a listener of its own, for profiling (unauthenticated: loopback only)"},
	}
}

// Load reads the configuration through getenv (os.Getenv in the program, a
// map in tests): Defaults, with every variable that is set (after trimming
// spaces) replacing its default. Parse problems are kept and reported by
// Validate, so the operator sees every problem in one go.
func Load(getenv func(string) string) Config {
	c := Defaults()
	e := env{getenv: getenv, problems: &c.problems}
	p := &c.Pipeline

	c.NATSURL = e.value("NATS_URL")
	c.RedisURL = e.value("REDIS_URL")
	e.string("DISPATCHER_REDIS_PREFIX", &c.RedisKeyPrefix)
	e.string("DISPATCHER_HTTP_ADDR", &c.HTTPAddr)
	c.AdminToken = e.value("DISPATCHER_ADMIN_TOKEN")
	e.string("DISPATCHER_DATA_DIR", &c.DataDir)
	c.NATSListenExplicit = e.string("DISPATCHER_NATS_LISTEN", &c.NATSListen)
	e.bool("DISPATCHER_ALLOW_PRIVATE_TARGETS", &c.AllowPrivateTargets)
	if text := e.value("DISPATCHER_RETRY_SCHEDULE"); text != "" {
		delays, err := ParseRetryDelays(text)
		if err != nil {
			e.problem(fmt.Errorf("DISPATCHER_RETRY_SCHEDULE: %w", err))
		}
		p.RetryDelays = delays
	}
	e.duration("DISPATCHER_ATTEMPT_TIMEOUT", &p.AttemptTimeout)
	e.int("DISPATCHER_MAX_EVENT_BYTES", &p.MaxEventBytes)
	e.int("DISPATCHER_CONCURRENCY", &p.Concurrency)
	e.int("DISPATCHER_ENDPOINT_MAX_CONCURRENCY", &p.EndpointMaxConcurrency)
	e.int("DISPATCHER_QUEUE_MAX_MESSAGES", &p.QueueMaxMessages)
	if e.value("DISPATCHER_INTEGRATION_IN_FLIGHT") != "" {
		e.problem(errors.New("DISPATCHER_INTEGRATION_IN_FLIGHT was replaced by DISPATCHER_ENDPOINT_MAX_CONCURRENCY, which caps the whole deployment rather than one process"))
	}
	e.duration("DISPATCHER_SHUTDOWN_TIMEOUT", &p.ShutdownTimeout)
	e.duration("DISPATCHER_EVENT_RETENTION", &c.EventRetention)
	e.duration("DISPATCHER_DUPLICATE_WINDOW", &c.DuplicateWindow)
	e.int("DISPATCHER_NATS_REPLICAS", &c.NATSReplicas)
	if storage := e.value("DISPATCHER_NATS_STORAGE"); storage != "" {
		switch storage {
		case "file", "memory":
			c.NATSMemoryStorage = storage == "memory"
		default:
			e.problem(fmt.Errorf("DISPATCHER_NATS_STORAGE=%q: want file or memory", storage))
		}
	}
	e.string("DISPATCHER_LOG_FORMAT", &c.LogFormat)
	e.string("DISPATCHER_LOG_LEVEL", &c.LogLevel)
	c.OTLPEndpoint = e.value("OTEL_EXPORTER_OTLP_ENDPOINT")
	c.PublicURL = strings.TrimRight(e.value("DISPATCHER_PUBLIC_URL"), "/")
	e.duration("DISPATCHER_PORTAL_SESSION_TTL", &c.PortalSessionTTL)
	e.duration("DISPATCHER_PORTAL_LINK_TTL", &c.PortalLinkTTL)
	if origins := strings.Fields(getenv("DISPATCHER_PORTAL_FRAME_ANCESTORS")); len(origins) > 0 {
		c.PortalFrameAncestors = origins
	}
	c.PprofAddr = e.value("DISPATCHER_PPROF_ADDR")

	if text := e.value("DISPATCHER_SECRET_KEY"); text != "" {
		c.secretKeySet = true
		key, err := base64.StdEncoding.DecodeString(text)
		switch {
		case err != nil:
			e.problem(errors.New("DISPATCHER_SECRET_KEY is not standard base64 (make one with: head -c 32 /dev/urandom | base64)"))
		case len(key) != 32:
			e.problem(fmt.Errorf("DISPATCHER_SECRET_KEY decodes to %d bytes, want 32 (make one with: head -c 32 /dev/urandom | base64)", len(key)))
		default:
			c.SecretKey = key
		}
	}
	return c
}

// env reads variables for Load. Each typed reader leaves *dst (the
// default) alone when the variable is unset or blank; a value that does not
// parse is recorded as a problem and leaves the zero value, which Validate
// reports again as out of range.
type env struct {
	getenv   func(string) string
	problems *[]error
}

func (e env) value(name string) string { return strings.TrimSpace(e.getenv(name)) }

func (e env) problem(err error) { *e.problems = append(*e.problems, err) }

// string sets *dst to the variable's value and reports whether it was set.
func (e env) string(name string, dst *string) bool {
	v := e.value(name)
	if v != "" {
		*dst = v
	}
	return v != ""
}

func (e env) bool(name string, dst *bool) {
	if v := e.value(name); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.problem(fmt.Errorf("%s=%q: want true or false", name, v))
		}
		*dst = b
	}
}

func (e env) int(name string, dst *int) {
	if v := e.value(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.problem(fmt.Errorf("%s=%q: want an integer", name, v))
		}
		*dst = n
	}
}

func (e env) duration(name string, dst *time.Duration) {
	if v := e.value(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.problem(fmt.Errorf("%s=%q: want a duration like 15s or 2m", name, v))
		}
		*dst = d
	}
}

// formatDuration writes d as an operator would: 15s, 2m, 168h, 1h30m.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func storageName(memory bool) string {
	if memory {
		return "memory"
	}
	return "file"
}

// Embedded reports whether the dispatcher runs its own nats-server.
func (c Config) Embedded() bool { return c.NATSURL == "" }

// Validate reports every problem at once. With an external NATS the admin
// token and secret key are required: generated keys belong to the local
// default only, since every dispatcher of a deployment must share them.
func (c Config) Validate() error {
	problems := append([]error(nil), c.problems...)
	add := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }

	if c.NATSURL != "" {
		if u, err := url.Parse(strings.Split(c.NATSURL, ",")[0]); err != nil || u.Host == "" {
			add("NATS_URL=%q is not a URL like nats://host:4222", c.NATSURL)
		}
		if c.AdminToken == "" {
			add("DISPATCHER_ADMIN_TOKEN is required with NATS_URL (for example: head -c 32 /dev/urandom | base64)")
		}
		if !c.secretKeySet {
			add("DISPATCHER_SECRET_KEY is required with NATS_URL (head -c 32 /dev/urandom | base64), the same on every dispatcher")
		}
	}
	if c.AdminToken != "" && len(c.AdminToken) < 32 {
		add("DISPATCHER_ADMIN_TOKEN is %d characters; use at least 32", len(c.AdminToken))
	}
	if c.RedisURL != "" {
		if err := checkRedisURL(c.RedisURL); err != nil {
			problems = append(problems, err)
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		add("DISPATCHER_HTTP_ADDR=%q is not host:port", c.HTTPAddr)
	}
	if _, _, err := net.SplitHostPort(c.PprofAddr); c.PprofAddr != "" && err != nil {
		add("DISPATCHER_PPROF_ADDR=%q is not host:port", c.PprofAddr)
	}
	if c.Embedded() {
		if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			add("DISPATCHER_NATS_LISTEN=%q is not host:port", c.NATSListen)
		}
		if c.DataDir == "" {
			add("DISPATCHER_DATA_DIR must not be empty")
		}
	}
	positive := func(name string, v int) {
		if v <= 0 {
			add("%s must be a positive integer", name)
		}
	}
	p := c.Pipeline
	positive("DISPATCHER_MAX_EVENT_BYTES", p.MaxEventBytes)
	positive("DISPATCHER_CONCURRENCY", p.Concurrency)
	positive("DISPATCHER_ENDPOINT_MAX_CONCURRENCY", p.EndpointMaxConcurrency)
	positive("DISPATCHER_QUEUE_MAX_MESSAGES", p.QueueMaxMessages)
	positive("DISPATCHER_NATS_REPLICAS", c.NATSReplicas)
	if p.MaxEventBytes > 1<<20-4096 {
		add("DISPATCHER_MAX_EVENT_BYTES must stay below 1 MiB minus header room (NATS max_payload)")
	}
	durations := []struct {
		name string
		v    time.Duration
	}{
		{"DISPATCHER_ATTEMPT_TIMEOUT", p.AttemptTimeout},
		{"DISPATCHER_SHUTDOWN_TIMEOUT", p.ShutdownTimeout},
		{"DISPATCHER_EVENT_RETENTION", c.EventRetention},
		{"DISPATCHER_DUPLICATE_WINDOW", c.DuplicateWindow},
		{"DISPATCHER_PORTAL_SESSION_TTL", c.PortalSessionTTL},
		{"DISPATCHER_PORTAL_LINK_TTL", c.PortalLinkTTL},
	}
	for _, d := range durations {
		if d.v <= 0 {
			add("%s must be a positive duration", d.name)
		}
	}
	if err := CheckRetryDelays(p.RetryDelays); err != nil {
		add("DISPATCHER_RETRY_SCHEDULE: %w", err)
	}
	if c.DuplicateWindow > c.EventRetention && c.EventRetention > 0 {
		add("DISPATCHER_DUPLICATE_WINDOW must not exceed DISPATCHER_EVENT_RETENTION")
	}
	if c.PortalSessionTTL > 7*24*time.Hour || c.PortalLinkTTL > 7*24*time.Hour {
		add("DISPATCHER_PORTAL_SESSION_TTL and DISPATCHER_PORTAL_LINK_TTL must not exceed 168h")
	}
	if c.PublicURL != "" && !isOrigin(c.PublicURL) {
		add("DISPATCHER_PUBLIC_URL=%q must be scheme://host[:port] with http or https and no path", c.PublicURL)
	}
	for _, o := range c.PortalFrameAncestors {
		if !isOrigin(o) {
			add("DISPATCHER_PORTAL_FRAME_ANCESTORS: %q is not an origin such as https://dashboard.example.com", o)
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		add("DISPATCHER_LOG_FORMAT=%q: want text or json", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("DISPATCHER_LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return nil
}

// RedisSentinel reports whether a REDIS_URL names Redis Sentinel rather
// than one Redis: go-redis's failover URL (redis.ParseFailoverURL), a
// redis:// or rediss:// URL of a sentinel whose query names the monitored
// master (master_name) and any other sentinels (addr=host:port, repeated).
// A plain Redis URL cannot carry master_name (redis.ParseURL refuses
// unknown options), so the two forms never overlap.
func RedisSentinel(redisURL string) bool {
	u, err := url.Parse(redisURL)
	return err == nil && (u.Scheme == "redis" || u.Scheme == "rediss") && u.Query().Has("master_name")
}

// RedisCluster reports whether a REDIS_URL names a Redis Cluster: go-redis's
// cluster URL (redis.ParseClusterURL), a redis:// or rediss:// URL of one
// node with the other seed nodes as addr=host:port (repeated) and no
// master_name. A plain Redis URL cannot carry addr= (redis.ParseURL
// refuses unknown options), so the forms never overlap.
func RedisCluster(redisURL string) bool {
	u, err := url.Parse(redisURL)
	return err == nil && (u.Scheme == "redis" || u.Scheme == "rediss") && u.Query().Has("addr") && !u.Query().Has("master_name")
}

// checkRedisURL parses REDIS_URL the way the dispatcher will. Its errors
// never quote the URL, which may hold a password.
func checkRedisURL(redisURL string) error {
	const form = "REDIS_URL must look like redis://host:6379/0 (or rediss://, unix://); for Sentinel, redis://sentinel:26379/0?master_name=NAME&addr=sentinel-2:26379; for Redis Cluster, redis://node-1:6379?addr=node-2:6379&addr=node-3:6379"
	u, err := url.Parse(redisURL)
	if err != nil {
		return errors.New(form)
	}
	if RedisCluster(redisURL) {
		o, err := redis.ParseClusterURL(redisURL)
		switch {
		case err != nil:
			return fmt.Errorf("REDIS_URL (Redis Cluster): %v", err)
		case u.Path != "" && u.Path != "/" && u.Path != "/0":
			// go-redis ignores the path; Redis Cluster has database 0 only.
			return errors.New("REDIS_URL (Redis Cluster): a cluster has database 0 only; drop the path")
		case o.ReadOnly || o.RouteByLatency || o.RouteRandomly:
			// Replicas lag and never hold the cache's scripts
			// (webhooks package comment): reads go to primaries.
			return errors.New("REDIS_URL (Redis Cluster): read_only, route_by_latency and route_randomly are not supported: the cache reads primaries only")
		}
		return nil
	}
	if RedisSentinel(redisURL) {
		o, err := redis.ParseFailoverURL(redisURL)
		switch {
		case err != nil:
			return fmt.Errorf("REDIS_URL (Sentinel): %v", err)
		case o.MasterName == "":
			return errors.New("REDIS_URL (Sentinel): master_name is empty")
		}
		return nil
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix" {
		return errors.New(form)
	}
	if _, err := redis.ParseURL(redisURL); err != nil {
		return fmt.Errorf("REDIS_URL: %v", err)
	}
	return nil
}

// isOrigin accepts http(s)://host[:port] and nothing else, so the value is
// safe to place in a URL prefix or a CSP header.
func isOrigin(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" &&
		u.User == nil && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.Fragment == "" &&
		!strings.ContainsAny(s, " ;,'\"")
}
