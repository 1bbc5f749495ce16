package config_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blazelock/webhooks/config"
	"github.com/blazelock/webhooks/publisher"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c := config.Load(env(nil))
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults must be valid: %v", err)
	}
	if !c.Embedded() || c.HTTPAddr != "127.0.0.1:8080" || c.DataDir != "./data" || c.NATSListen != "127.0.0.1:4222" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.NATSListenExplicit || c.AllowPrivateTargets || c.Pipeline.AttemptTimeout != 15*time.Second || c.Pipeline.MaxEventBytes != 256<<10 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if n := len(c.Pipeline.RetryDelays) + 1; n != 10 {
		t.Fatalf("default schedule allows %d attempts, the contract says 10", n)
	}
	if !reflect.DeepEqual(c, config.Defaults()) {
		t.Fatalf("Load with nothing set differs from Defaults:\n got  %+v\n want %+v", c, config.Defaults())
	}
}

// TestVariablesDefaultsRoundTrip: setting every variable to the default
// Variables shows gives the configuration of setting nothing, so the help
// text and the README table state the defaults Load uses.
func TestVariablesDefaultsRoundTrip(t *testing.T) {
	set := map[string]string{}
	for _, v := range config.Variables {
		if strings.HasPrefix(v.Default, "unset") || strings.HasPrefix(v.Default, "required") {
			continue
		}
		set[v.Name] = v.Default
	}
	if len(set) < 15 {
		t.Fatalf("only %d variables have a plain default; this test's reading of Variables is stale", len(set))
	}
	c := config.Load(env(set))
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// Only the explicit-listen flag records that a variable was set.
	c.NATSListenExplicit = false
	if want := config.Load(env(nil)); !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults as written in Variables load differently:\n got  %+v\n want %+v", c, want)
	}
}

// TestMaxEventBytesMatchesPublisher: publishers and dispatchers agree on
// the event size limit out of the box.
func TestMaxEventBytesMatchesPublisher(t *testing.T) {
	if got := config.Defaults().Pipeline.MaxEventBytes; got != publisher.DefaultMaxEventBytes {
		t.Fatalf("DISPATCHER_MAX_EVENT_BYTES defaults to %d, publisher.DefaultMaxEventBytes is %d", got, publisher.DefaultMaxEventBytes)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := config.Load(env(map[string]string{
		"NATS_URL":                         "nats://127.0.0.1:4222",
		"DISPATCHER_HTTP_ADDR":             "no-port",
		"DISPATCHER_ATTEMPT_TIMEOUT":       "soon",
		"DISPATCHER_CONCURRENCY":           "-1",
		"DISPATCHER_ALLOW_PRIVATE_TARGETS": "maybe",
		"DISPATCHER_RETRY_SCHEDULE":        "1s,,2s",
		"DISPATCHER_LOG_FORMAT":            "xml",
		"DISPATCHER_NATS_STORAGE":          "tape",
		"REDIS_URL":                        "http://x",
	}))
	err := c.Validate()
	if err == nil {
		t.Fatal("expected problems")
	}
	for _, want := range []string{
		"DISPATCHER_ADMIN_TOKEN is required",
		"DISPATCHER_SECRET_KEY is required",
		"DISPATCHER_HTTP_ADDR",
		"DISPATCHER_ATTEMPT_TIMEOUT",
		"DISPATCHER_CONCURRENCY",
		"DISPATCHER_ALLOW_PRIVATE_TARGETS",
		"DISPATCHER_RETRY_SCHEDULE",
		"DISPATCHER_LOG_FORMAT",
		"DISPATCHER_NATS_STORAGE",
		"REDIS_URL",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
}

func TestSecretKey(t *testing.T) {
	for _, tc := range []struct {
		name, key, wantErr string
	}{
		{"valid", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", ""},
		{"short", "c2hvcnQ=", "decodes to 5 bytes"},
		{"not base64", "%%%", "not standard base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Load(env(map[string]string{
				"NATS_URL":               "nats://127.0.0.1:4222",
				"DISPATCHER_ADMIN_TOKEN": strings.Repeat("t", 32),
				"DISPATCHER_SECRET_KEY":  tc.key,
			}))
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil || len(c.SecretKey) != 32 {
					t.Fatalf("valid key refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v does not contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestShortAdminTokenRefused(t *testing.T) {
	c := config.Load(env(map[string]string{"DISPATCHER_ADMIN_TOKEN": "short"}))
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short token accepted: %v", err)
	}
}

func TestRetrySchedule(t *testing.T) {
	c := config.Load(env(map[string]string{"DISPATCHER_RETRY_SCHEDULE": "1s,2s,5s"}))
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 5 * time.Second}; !slices.Equal(c.Pipeline.RetryDelays, want) {
		t.Fatalf("RetryDelays = %v, want %v", c.Pipeline.RetryDelays, want)
	}
}

func TestParseRetryDelays(t *testing.T) {
	tests := []struct {
		in      string
		want    []time.Duration
		wantErr string // substring; "" means success
	}{
		{in: "1s,2s,5s", want: []time.Duration{time.Second, 2 * time.Second, 5 * time.Second}},
		{in: " 1s , 2s ,5s ", want: []time.Duration{time.Second, 2 * time.Second, 5 * time.Second}},
		{in: "1m", want: []time.Duration{time.Minute}},
		{in: "0s,0,10ms", want: []time.Duration{0, 0, 10 * time.Millisecond}},
		{in: "1h30m,24h", want: []time.Duration{90 * time.Minute, 24 * time.Hour}},
		{in: "1m,2m,5m,10m,30m,1h,2h,4h,8h", want: config.DefaultRetryDelays()},
		{in: "", wantErr: "retry schedule is empty"},
		{in: "   ", wantErr: "retry schedule is empty"},
		{in: "1s,,2s", wantErr: "item 2 is empty"},
		{in: "1s,2s,", wantErr: "item 3 is empty"},
		{in: ",1s", wantErr: "item 1 is empty"},
		{in: "1s,abc", wantErr: `item 2 "abc" is not a duration`},
		{in: "5", wantErr: `item 1 "5" is not a duration`},
		{in: "1s;2s", wantErr: `item 1 "1s;2s" is not a duration`},
		{in: "1s,-2s", wantErr: "item 2: -2s is negative"},
		{in: "25h", wantErr: "item 1: 25h0m0s exceeds the maximum of 24h0m0s"},
		{in: "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s", wantErr: "10 delays; at most 9"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := config.ParseRetryDelays(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRetryDelays(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRetryDelays(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ParseRetryDelays(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	// Validate catches what Load did not parse: a Config built in code.
	c := config.Defaults()
	c.Pipeline.RetryDelays = make([]time.Duration, config.MaxRetryDelays+1)
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "DISPATCHER_RETRY_SCHEDULE") {
		t.Fatalf("Validate of %d delays: %v", len(c.Pipeline.RetryDelays), err)
	}
}

func TestExplicitNATSListen(t *testing.T) {
	c := config.Load(env(map[string]string{"DISPATCHER_NATS_LISTEN": "127.0.0.1:14222"}))
	if !c.NATSListenExplicit || c.NATSListen != "127.0.0.1:14222" {
		t.Fatalf("explicit listen not recorded: %+v", c)
	}
}

// REDIS_URL takes one Redis, go-redis's Sentinel form (master_name) or its
// Redis Cluster form (addr= without master_name); each is parsed as the
// dispatcher will, and an error never quotes the URL (it may hold a
// password).
func TestRedisURL(t *testing.T) {
	const one, sentinel, cluster = "one", "sentinel", "cluster"
	for _, tc := range []struct {
		url     string
		form    string
		wantErr string
	}{
		{"redis://127.0.0.1:6379/0", one, ""},
		{"rediss://user:pw@cache.internal:6380/2", one, ""},
		{"unix:///run/redis.sock", one, ""},
		{"redis://s1:26379/0?master_name=blazelock&addr=s2:26379&addr=s3:26379", sentinel, ""},
		{"rediss://sentinel-user:pw@s1:26379/0?master_name=blazelock&password=pw2", sentinel, ""},
		{"redis://n1:6379?addr=n2:6379&addr=n3:6379", cluster, ""},
		{"rediss://u:pw@n1:6380/0?addr=n2:6380&dial_timeout=3s", cluster, ""},
		{"http://x", one, "REDIS_URL must look like"},
		{"redis://127.0.0.1:6379/zero", one, "invalid database number"},
		{"redis://127.0.0.1:6379/0?pool=9", one, "unexpected option"},
		{"redis://s1:26379/0?master_name=", sentinel, "master_name is empty"},
		{"redis://s1:26379/0?master_name=m&addr=nope", sentinel, "unable to parse addr"},
		{"redis://s1:26379/0?master_name=m&typo=1", sentinel, "unexpected option"},
		{"redis://u:hunter2@s1:26379/0/1?master_name=m", sentinel, "invalid URL path"},
		{"redis://u:hunter2@n1:6379/3?addr=n2:6379", cluster, "database 0 only"},
		{"redis://n1:6379?addr=n2:6379&typo=1", cluster, "unexpected option"},
		{"redis://n1:6379?addr=n2:6379&read_only=true", cluster, "primaries only"},
		{"redis://n1:6379?addr=n2:6379&route_randomly=true", cluster, "primaries only"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			if got := config.RedisSentinel(tc.url); got != (tc.form == sentinel) {
				t.Errorf("RedisSentinel = %v, form %s", got, tc.form)
			}
			if got := config.RedisCluster(tc.url); got != (tc.form == cluster) {
				t.Errorf("RedisCluster = %v, form %s", got, tc.form)
			}
			c := config.Load(env(map[string]string{"REDIS_URL": tc.url}))
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			case err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), tc.url)):
				t.Fatalf("error quotes the URL: %v", err)
			}
		})
	}
}
