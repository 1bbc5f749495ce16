package testinfra

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
)

// Browser starts a headless Chromium for the test and returns its context;
// BrowserTab opens isolated tabs in it. The binary is BLAZELOCK_CHROMIUM,
// else the first of chromium, chromium-browser, google-chrome on PATH
// (.ci/run installs Debian's chromium). Without one the test fails under
// CI=true and is skipped loudly otherwise.
func Browser(t testing.TB) context.Context {
	t.Helper()
	path := os.Getenv("BLAZELOCK_CHROMIUM")
	if path == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		unavailable(t, "no Chromium for the browser tests: apt-get install -y chromium (or set BLAZELOCK_CHROMIUM)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// Tests run as root in CI, where Chromium's sandbox cannot start.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		// The machine has no outside network: keep Chromium from trying.
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		t.Fatalf("testinfra: start Chromium (%s): %v", path, err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// BrowserTab opens a tab in a browser context of its own (its own cookies
// and storage), closed at cleanup.
func BrowserTab(t testing.TB, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("testinfra: open a browser tab: %v", err)
	}
	t.Cleanup(cancel)
	return ctx
}
