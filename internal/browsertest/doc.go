// Package browsertest drives the dashboard (/ui/) of a real 3-node
// cluster in Debian's chromium through the DevTools protocol (chromedp):
// the page loads without console errors, follows the cluster live, its
// actions take effect through the admin API, and a read-only token is
// offered none. Screenshots of every view are kept as test artifacts
// ($RAFTER_ARTIFACTS/dashboard, or a temporary directory the test logs).
//
// The browser starts headless with a fresh profile, without background
// networking, and every request it makes is checked to go to loopback.
// Without chromium the tests fail, naming the package to install.
package browsertest
