package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/blazelock/webhooks/config"
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
	if c.NATSListenExplicit || c.AllowPrivateTargets || c.AttemptTimeout != 15*time.Second || c.MaxEventBytes != 256<<10 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.RetrySchedule.MaxAttempts() != 10 {
		t.Fatalf("default schedule allows %d attempts, SPEC says 10", c.RetrySchedule.MaxAttempts())
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
	if c.RetrySchedule.MaxAttempts() != 4 {
		t.Fatalf("MaxAttempts = %d, want 4", c.RetrySchedule.MaxAttempts())
	}
}

func TestExplicitNATSListen(t *testing.T) {
	c := config.Load(env(map[string]string{"DISPATCHER_NATS_LISTEN": "127.0.0.1:14222"}))
	if !c.NATSListenExplicit || c.NATSListen != "127.0.0.1:14222" {
		t.Fatalf("explicit listen not recorded: %+v", c)
	}
}

// REDIS_URL takes one Redis or, with master_name, go-redis's Sentinel
// form; each is parsed as the dispatcher will, and an error never quotes
// the URL (it may hold a password).
func TestRedisURL(t *testing.T) {
	for _, tc := range []struct {
		url      string
		sentinel bool
		wantErr  string
	}{
		{"redis://127.0.0.1:6379/0", false, ""},
		{"rediss://user:pw@cache.internal:6380/2", false, ""},
		{"unix:///run/redis.sock", false, ""},
		{"redis://s1:26379/0?master_name=blazelock&addr=s2:26379&addr=s3:26379", true, ""},
		{"rediss://sentinel-user:pw@s1:26379/0?master_name=blazelock&password=pw2", true, ""},
		{"http://x", false, "REDIS_URL must look like"},
		{"redis://127.0.0.1:6379/zero", false, "invalid database number"},
		{"redis://127.0.0.1:6379/0?pool=9", false, "unexpected option"},
		{"redis://s1:26379/0?master_name=", true, "master_name is empty"},
		{"redis://s1:26379/0?master_name=m&addr=nope", true, "unable to parse addr"},
		{"redis://s1:26379/0?master_name=m&typo=1", true, "unexpected option"},
		{"redis://u:hunter2@s1:26379/0/1?master_name=m", true, "invalid URL path"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			if got := config.RedisSentinel(tc.url); got != tc.sentinel {
				t.Errorf("RedisSentinel = %v, want %v", got, tc.sentinel)
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
