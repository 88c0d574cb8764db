package browsertest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromiumPackage is the Debian package the tests need (make deps installs it).
const chromiumPackage = "chromium"

// browser is one headless chromium with a fresh profile. Problems the
// page reports (console errors, uncaught exceptions, failed loads) and
// requests to anything but loopback are collected for the test to check.
type browser struct {
	t      *testing.T
	ctx    context.Context
	cancel context.CancelFunc // closes the tab (the browser for the first)
	mu     sync.Mutex
	probs  []string
}

// chromiumPath finds the browser, or says which package to install.
func chromiumPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("the browser tests need Debian's %s package: apt-get install -y %s (make deps installs it)", chromiumPackage, chromiumPackage)
}

func findChromium(t *testing.T) string {
	t.Helper()
	p, err := chromiumPath()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := findChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-proxy-server", true),
		// Names never resolve: the pages are on loopback addresses.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.*"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelAlloc)
	b := &browser{t: t, ctx: ctx, cancel: cancel}
	b.watch()
	return b
}

// tab opens a new tab of the same browser: its session storage is empty.
func (b *browser) tab() *browser {
	ctx, cancel := chromedp.NewContext(b.ctx)
	nb := &browser{t: b.t, ctx: ctx, cancel: cancel}
	nb.watch()
	return nb
}

func (b *browser) problem(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probs = append(b.probs, fmt.Sprintf(format, args...))
}

// problems returns what the page reported so far.
func (b *browser) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.probs...)
}

// watch starts the browser (or opens the tab) and collects console
// errors, uncaught exceptions, browser log errors (a failed load) and
// requests to anything but loopback until the tab closes.
func (b *browser) watch() {
	b.t.Helper()
	if err := chromedp.Listen(b.ctx, func(ev any) {
		if ev, ok := ev.(*network.EventRequestWillBeSent); ok && !loopbackURL(ev.Request.URL) {
			b.problem("request to a non-loopback address: %s", ev.Request.URL)
		}
	}); err != nil {
		b.t.Fatalf("starting chromium: %v", err)
	}
	messages := chromedp.Console(b.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.problem("console %s: %s %s", m.Type, m.Text, m.URL)
			}
		}
	}()
	// Cleanups run last first: this one, registered after the browser's,
	// closes the tab and waits for the reader before the browser goes.
	b.t.Cleanup(func() {
		b.cancel()
		<-done
	})
}

// loopbackURL: the URL is a page's own data, or goes to 127.0.0.0/8 or ::1.
func loopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "data", "blob", "about":
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// run runs steps with a deadline.
func (b *browser) run(t testing.TB, within time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, within)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v (page problems so far: %v)", what, err, b.problems())
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// screenshot saves the whole page as dir/name.png.
func (b *browser) screenshot(t testing.TB, dir, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// artifacts is where the test keeps its screenshots: under
// $RAFTER_ARTIFACTS when set, else in a new temporary directory. Either
// way the path is logged, and the files stay after the test.
func artifacts(t *testing.T) string {
	t.Helper()
	base := os.Getenv("RAFTER_ARTIFACTS")
	var dir string
	var err error
	if base != "" {
		dir = filepath.Join(base, "dashboard")
		if err = os.MkdirAll(dir, 0o755); err == nil {
			dir, err = os.MkdirTemp(dir, strings.ReplaceAll(t.Name(), "/", "-")+"-*")
		}
	} else {
		dir, err = os.MkdirTemp("", "rafter-dashboard-*")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// Without chromium on the PATH the tests fail naming the package to
// install; they never skip.
func TestMissingChromiumNamesThePackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := chromiumPath()
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y chromium") {
		t.Fatalf("without chromium: %v, want the package named", err)
	}
}

func TestLoopbackURL(t *testing.T) {
	for u, want := range map[string]bool{
		"http://127.0.0.1:7700/ui/":       true,
		"http://127.0.0.3:7700/v1/events": true,
		"http://[::1]:7700/":              true,
		"data:,":                          true,
		"http://10.0.0.1/":                false,
		"https://example.com/":            false,
		"http://localhost.example/":       false,
	} {
		if got := loopbackURL(u); got != want {
			t.Errorf("loopbackURL(%q) = %v, want %v", u, got, want)
		}
	}
}
