// Package e2e holds Gatehouse's browser end-to-end tests: they build the real
// binary, run it with the embedded development provider (-dev), and drive
// Debian's Chromium (/usr/bin/chromium, never a downloaded browser) headless
// through the Chrome DevTools Protocol with chromedp.
//
// The tests fail, never skip, when Chromium is missing: scripts/test.sh
// installs it. Run them with
//
//	go test ./internal/e2e
//
// and regenerate the README's screenshots with
//
//	GATEHOUSE_SCREENSHOTS=docs/screenshots go test ./internal/e2e -run TestScreenshots
//
// (a relative GATEHOUSE_SCREENSHOTS is taken from the repository root).
// Every test also leaves its screenshots in its artifact directory: pass
// -artifacts (and -outputdir) to go test to keep them.
package e2e
