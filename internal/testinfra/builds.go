package testinfra

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/blazelock/webhooks/internal/harness"
)

// Binaries this package builds, once per test process, into one
// temporary directory that RemoveBuilds deletes.
var builds struct {
	mu   sync.Mutex
	dir  string
	bins map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// binary returns the binary called name, built from pkg with flags the
// first time it is asked for.
func binary(t testing.TB, name, pkg string, flags ...string) string {
	t.Helper()
	builds.mu.Lock()
	if builds.bins == nil {
		builds.bins = map[string]*build{}
	}
	b := builds.bins[name]
	if b == nil {
		b = &build{}
		builds.bins[name] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() {
		builds.mu.Lock()
		if builds.dir == "" {
			builds.dir, b.err = os.MkdirTemp("", "testinfra-builds-")
		}
		dir := builds.dir
		builds.mu.Unlock()
		if b.err != nil {
			return
		}
		b.path = filepath.Join(dir, name)
		b.err = harness.GoBuild(context.Background(), b.path, pkg, flags...)
	})
	if b.err != nil {
		t.Fatalf("testinfra: %v", b.err)
	}
	return b.path
}

// NATSServerBinary returns a nats-server built from the module's own
// nats-server dependency, the version the dispatcher embeds, once per
// test process. A package whose tests use it removes the build with
// RemoveBuilds in its TestMain.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	return binary(t, "nats-server", harness.NATSServerPackage)
}

// DispatcherBinary returns the dispatcher program, built once per test
// process, with -race when this test binary runs under the race detector
// (so data races in the children are reported too). A package whose
// tests use it removes the build with RemoveBuilds in its TestMain.
func DispatcherBinary(t testing.TB) string {
	t.Helper()
	var flags []string
	if raceEnabled {
		flags = append(flags, "-race")
	}
	return binary(t, "dispatcher", harness.DispatcherPackage, flags...)
}

// RemoveBuilds deletes the binaries this package built (call it from
// TestMain after m.Run).
func RemoveBuilds() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
	}
}
