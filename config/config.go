// Package config is the dispatcher's one typed configuration, read from the
// environment (SPEC §5.3 plus the project's own settings), with defaults in
// code and a Validate that reports every problem at once.
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

	"github.com/blazelock/webhooks/dispatcher/schedule"
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
	RetrySchedule       schedule.Schedule
	AttemptTimeout      time.Duration
	MaxEventBytes       int
	Concurrency         int
	// EndpointMaxConcurrency bounds attempts in flight to one endpoint
	// across every dispatcher of the deployment.
	EndpointMaxConcurrency int
	// QueueMaxMessages bounds the messages one process holds waiting for
	// their turn (package flow).
	QueueMaxMessages  int
	ShutdownTimeout   time.Duration
	EventRetention    time.Duration
	DuplicateWindow   time.Duration
	NATSReplicas      int
	NATSMemoryStorage bool
	LogFormat         string
	LogLevel          string
	OTLPEndpoint      string
	DeliveriesPageMax int
	secretKeyText     string
	retryScheduleText string
	problems          []error

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
}

// Variable is one environment variable the dispatcher reads, for the README
// table and the compose-file check.
type Variable struct {
	Name, Default, Meaning string
}

// Variables lists every environment variable Load reads, in README order.
var Variables = []Variable{
	{"NATS_URL", "unset: start an embedded nats-server", "external NATS server (JetStream, nats-server ≥ 2.12)"},
	{"REDIS_URL", "unset: no Redis, configs read from JetStream KV (a warning is logged)", "Redis cache of webhook configs, e.g. redis://127.0.0.1:6379/0; behind Redis Sentinel, one sentinel's address, the others as addr= and the monitored master's name: redis://sentinel-1:26379/0?master_name=blazelock&addr=sentinel-2:26379&addr=sentinel-3:26379 (README: Running in production)"},
	{"DISPATCHER_REDIS_PREFIX", "blazelock:", "prefix of every Redis key, to share one Redis safely"},
	{"DISPATCHER_HTTP_ADDR", "127.0.0.1:8080", "management API, Webhook section pages (/portal/), /healthz, /readyz and /metrics listener"},
	{"DISPATCHER_ADMIN_TOKEN", "required with NATS_URL; generated into the data dir by the embedded default", "bearer token of the management API (at least 32 characters)"},
	{"DISPATCHER_DATA_DIR", "./data", "embedded NATS store and the generated development keys"},
	{"DISPATCHER_NATS_LISTEN", "127.0.0.1:4222", "client listener of the embedded NATS; a busy default falls back to a free port (printed), a busy explicit address is an error"},
	{"DISPATCHER_SECRET_KEY", "required with NATS_URL; generated into the data dir by the embedded default", "32 random bytes in standard base64 (head -c 32 /dev/urandom | base64) encrypting webhook secrets at rest; shared by all dispatchers"},
	{"DISPATCHER_ALLOW_PRIVATE_TARGETS", "false", "allow http and loopback/private webhook targets (local development and tests only)"},
	{"DISPATCHER_RETRY_SCHEDULE", "1m,2m,5m,10m,30m,1h,2h,4h,8h", "delays before attempts 2..N; its length + 1 is the attempt limit"},
	{"DISPATCHER_ATTEMPT_TIMEOUT", "15s", "limit of one HTTP attempt (SPEC: 15 s; lower only in tests)"},
	{"DISPATCHER_MAX_EVENT_BYTES", "262144", "events larger than this are rejected (SPEC 5.1: 256 KiB)"},
	{"DISPATCHER_CONCURRENCY", "512", "attempts in flight per dispatcher process, all integrations and both lanes together"},
	{"DISPATCHER_ENDPOINT_MAX_CONCURRENCY", "64", "most attempts in flight to one integration's endpoint across all dispatchers; each endpoint's limit adapts between 1 and this (README: Flow control)"},
	{"DISPATCHER_QUEUE_MAX_MESSAGES", "40000", "messages one process holds waiting for their turn, its memory budget (about 2 KiB each for 1 KiB events); the two consumers' max ack pending (20000 each) bounds all processes together"},
	{"DISPATCHER_SHUTDOWN_TIMEOUT", "20s", "how long SIGTERM waits for in-flight attempts before handing them back to JetStream"},
	{"DISPATCHER_EVENT_RETENTION", "168h", "how long events and the delivery log are kept"},
	{"DISPATCHER_DUPLICATE_WINDOW", "2m", "JetStream de-duplication window for Nats-Msg-Id"},
	{"DISPATCHER_NATS_REPLICAS", "1", "replicas of streams and buckets (3 on a NATS cluster, where buckets are then read from their leader)"},
	{"DISPATCHER_NATS_STORAGE", "file", "file or memory storage for streams and buckets"},
	{"DISPATCHER_LOG_FORMAT", "text", "text or json"},
	{"DISPATCHER_LOG_LEVEL", "info", "debug, info, warn or error"},
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "unset: no OTLP export", "OTLP/HTTP endpoint for traces and metrics (the other OTEL_* variables apply too)"},
	{"DISPATCHER_PUBLIC_URL", "unset: the Host of the API request that creates a portal link, over http", "the dispatcher's address as browsers reach it (https://webhooks.example.com), used in portal links; https also marks the session cookie Secure"},
	{"DISPATCHER_PORTAL_SESSION_TTL", "8h", "lifetime of a Webhook section session from sign-in (not extended by use)"},
	{"DISPATCHER_PORTAL_LINK_TTL", "15m", "how long a portal link (POST /v1/integrations/{id}/portal-links) can be used; each works once"},
	{"DISPATCHER_PORTAL_FRAME_ANCESTORS", "unset: no page may embed the Webhook section", "space-separated origins allowed to embed the pages in a frame (CSP frame-ancestors), e.g. https://dashboard.blazelock.com; use an origin of the same site, as the session cookie is SameSite=Strict"},
	{"DISPATCHER_PPROF_ADDR", "unset: no profiling listener", "host:port serving Go's net/http/pprof on a listener of its own, for profiling (unauthenticated: loopback only)"},
}

// Load reads the configuration through getenv (os.Getenv in the program, a
// map in tests). Parse problems are kept and reported by Validate, so the
// operator sees every problem in one go.
func Load(getenv func(string) string) Config {
	get := func(name string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		for _, v := range Variables {
			if v.Name == name {
				return defaultValue(v.Default)
			}
		}
		return ""
	}
	c := Config{
		NATSURL:              strings.TrimSpace(getenv("NATS_URL")),
		RedisURL:             strings.TrimSpace(getenv("REDIS_URL")),
		RedisKeyPrefix:       get("DISPATCHER_REDIS_PREFIX"),
		HTTPAddr:             get("DISPATCHER_HTTP_ADDR"),
		AdminToken:           strings.TrimSpace(getenv("DISPATCHER_ADMIN_TOKEN")),
		DataDir:              get("DISPATCHER_DATA_DIR"),
		NATSListen:           get("DISPATCHER_NATS_LISTEN"),
		secretKeyText:        strings.TrimSpace(getenv("DISPATCHER_SECRET_KEY")),
		retryScheduleText:    strings.TrimSpace(getenv("DISPATCHER_RETRY_SCHEDULE")),
		LogFormat:            get("DISPATCHER_LOG_FORMAT"),
		LogLevel:             get("DISPATCHER_LOG_LEVEL"),
		OTLPEndpoint:         strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")),
		PprofAddr:            strings.TrimSpace(getenv("DISPATCHER_PPROF_ADDR")),
		PublicURL:            strings.TrimRight(strings.TrimSpace(getenv("DISPATCHER_PUBLIC_URL")), "/"),
		PortalFrameAncestors: strings.Fields(getenv("DISPATCHER_PORTAL_FRAME_ANCESTORS")),
		DeliveriesPageMax:    100,
	}
	c.NATSListenExplicit = strings.TrimSpace(getenv("DISPATCHER_NATS_LISTEN")) != ""
	c.AllowPrivateTargets = c.parseBool("DISPATCHER_ALLOW_PRIVATE_TARGETS", get)
	c.AttemptTimeout = c.parseDuration("DISPATCHER_ATTEMPT_TIMEOUT", get)
	c.ShutdownTimeout = c.parseDuration("DISPATCHER_SHUTDOWN_TIMEOUT", get)
	c.EventRetention = c.parseDuration("DISPATCHER_EVENT_RETENTION", get)
	c.DuplicateWindow = c.parseDuration("DISPATCHER_DUPLICATE_WINDOW", get)
	c.PortalSessionTTL = c.parseDuration("DISPATCHER_PORTAL_SESSION_TTL", get)
	c.PortalLinkTTL = c.parseDuration("DISPATCHER_PORTAL_LINK_TTL", get)
	c.MaxEventBytes = c.parseInt("DISPATCHER_MAX_EVENT_BYTES", get)
	c.Concurrency = c.parseInt("DISPATCHER_CONCURRENCY", get)
	c.EndpointMaxConcurrency = c.parseInt("DISPATCHER_ENDPOINT_MAX_CONCURRENCY", get)
	c.QueueMaxMessages = c.parseInt("DISPATCHER_QUEUE_MAX_MESSAGES", get)
	if strings.TrimSpace(getenv("DISPATCHER_INTEGRATION_IN_FLIGHT")) != "" {
		c.problems = append(c.problems, errors.New("DISPATCHER_INTEGRATION_IN_FLIGHT was replaced by DISPATCHER_ENDPOINT_MAX_CONCURRENCY, which caps the whole deployment rather than one process"))
	}
	c.NATSReplicas = c.parseInt("DISPATCHER_NATS_REPLICAS", get)
	switch storage := get("DISPATCHER_NATS_STORAGE"); storage {
	case "file":
	case "memory":
		c.NATSMemoryStorage = true
	default:
		c.problems = append(c.problems, fmt.Errorf("DISPATCHER_NATS_STORAGE=%q: want file or memory", storage))
	}

	if c.retryScheduleText == "" {
		c.RetrySchedule = schedule.Default()
	} else if s, err := schedule.Parse(c.retryScheduleText); err != nil {
		c.problems = append(c.problems, fmt.Errorf("DISPATCHER_RETRY_SCHEDULE: %w", err))
	} else {
		c.RetrySchedule = s
	}
	if c.secretKeyText != "" {
		key, err := base64.StdEncoding.DecodeString(c.secretKeyText)
		switch {
		case err != nil:
			c.problems = append(c.problems, errors.New("DISPATCHER_SECRET_KEY is not standard base64 (make one with: head -c 32 /dev/urandom | base64)"))
		case len(key) != 32:
			c.problems = append(c.problems, fmt.Errorf("DISPATCHER_SECRET_KEY decodes to %d bytes, want 32 (make one with: head -c 32 /dev/urandom | base64)", len(key)))
		default:
			c.SecretKey = key
		}
	}
	return c
}

// defaultValue turns a README default into the value used: descriptions
// such as "unset: ..." or "required ..." mean no default.
func defaultValue(readme string) string {
	if strings.HasPrefix(readme, "unset") || strings.HasPrefix(readme, "required") {
		return ""
	}
	return readme
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
		if c.secretKeyText == "" {
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
	positive("DISPATCHER_MAX_EVENT_BYTES", c.MaxEventBytes)
	positive("DISPATCHER_CONCURRENCY", c.Concurrency)
	positive("DISPATCHER_ENDPOINT_MAX_CONCURRENCY", c.EndpointMaxConcurrency)
	positive("DISPATCHER_QUEUE_MAX_MESSAGES", c.QueueMaxMessages)
	positive("DISPATCHER_NATS_REPLICAS", c.NATSReplicas)
	if c.MaxEventBytes > 1<<20-4096 {
		add("DISPATCHER_MAX_EVENT_BYTES must stay below 1 MiB minus header room (NATS max_payload)")
	}
	durations := []struct {
		name string
		v    time.Duration
	}{
		{"DISPATCHER_ATTEMPT_TIMEOUT", c.AttemptTimeout},
		{"DISPATCHER_SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
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

// checkRedisURL parses REDIS_URL the way the dispatcher will. Its errors
// never quote the URL, which may hold a password.
func checkRedisURL(redisURL string) error {
	const form = "REDIS_URL must look like redis://host:6379/0 (or rediss://, unix://), or, for Sentinel, redis://sentinel:26379/0?master_name=NAME&addr=sentinel-2:26379"
	u, err := url.Parse(redisURL)
	if err != nil {
		return errors.New(form)
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

func (c *Config) parseBool(name string, get func(string) string) bool {
	v, err := strconv.ParseBool(get(name))
	if err != nil {
		c.problems = append(c.problems, fmt.Errorf("%s=%q: want true or false", name, get(name)))
	}
	return v
}

func (c *Config) parseInt(name string, get func(string) string) int {
	v, err := strconv.Atoi(get(name))
	if err != nil {
		c.problems = append(c.problems, fmt.Errorf("%s=%q: want an integer", name, get(name)))
	}
	return v
}

func (c *Config) parseDuration(name string, get func(string) string) time.Duration {
	v, err := time.ParseDuration(get(name))
	if err != nil {
		c.problems = append(c.problems, fmt.Errorf("%s=%q: want a duration like 15s or 2m", name, get(name)))
	}
	return v
}
