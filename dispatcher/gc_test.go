package main

import (
	"runtime/debug"
	"testing"
)

// TestSetGCDefault: the dispatcher's GOGC default applies only when the
// environment sets none.
func TestSetGCDefault(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	for _, c := range []struct {
		env  string
		want int
	}{
		{"", defaultGCPercent},
		{"50", 100}, // the runtime already applied GOGC=50; the default leaves it alone
		{"off", 100},
	} {
		debug.SetGCPercent(100)
		setGCDefault(func(string) string { return c.env })
		if got := debug.SetGCPercent(100); got != c.want {
			t.Errorf("GOGC=%q: GC percent %d, want %d", c.env, got, c.want)
		}
	}
}
