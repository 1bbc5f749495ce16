package main

import (
	"strings"
	"testing"
)

// Passwords in REDIS_URL, NATS_URL and the like never reach a log line,
// whether in the userinfo or, as in a Sentinel REDIS_URL, the query.
func TestRedactURL(t *testing.T) {
	for _, raw := range []string{
		"redis://:hunter2@cache:6379/0",
		"rediss://user:hunter2@s1:26379/0?master_name=m&password=hunter2&addr=s2:26379",
		"redis://s1:26379/0?master_name=m&Password=hunter2",
		"nats://user:hunter2@n1:4222",
	} {
		got := redactURL(raw)
		if strings.Contains(got, "hunter2") {
			t.Errorf("redactURL(%q) = %q", raw, got)
		}
		if !strings.Contains(got, "xxxxx") {
			t.Errorf("redactURL(%q) = %q, want the password replaced", raw, got)
		}
	}
	if got := redactURL("redis://s1:26379/0?master_name=m&addr=s2:26379"); !strings.Contains(got, "master_name=m") || !strings.Contains(got, "addr=s2") {
		t.Errorf("redactURL dropped what is not a password: %q", got)
	}
}
