// Package webtest drives a headless Chromium for the dashboard's browser
// tests: it starts the browser, records every console error, uncaught
// exception and browser-log error of the page, and waits for text to show.
// It is a plain package, not a _test file, so that the end-to-end tests of
// other packages (a dashboard against a real cluster) can use it too.
package webtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ErrNoChromium is returned by FindChromium when no browser is installed.
var ErrNoChromium = errors.New("webtest: no chromium, chromium-browser or google-chrome in PATH; run `make deps` (it installs Debian's chromium)")

// DefaultTimeout bounds each step that Browser runs.
const DefaultTimeout = 10 * time.Second

// FindChromium returns the path of the first of chromium, chromium-browser
// and google-chrome found in PATH.
func FindChromium() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNoChromium
}

// A Browser is one tab of a headless Chromium that a test owns.
type Browser struct {
	ctx    context.Context // the tab's chromedp context
	cancel context.CancelFunc

	mu       sync.Mutex
	problems []string // protects: console errors, exceptions, log errors
	answer   *string  // protects: what to answer a prompt; nil: dismiss it
	prompts  []string // protects: the messages of the dialogs the page opened
}

// AnswerPrompts has the tab answer the page's next prompt() dialogs with
// text (they are dismissed otherwise), and returns a function that lists
// the messages of the dialogs opened so far.
func (b *Browser) AnswerPrompts(text string) (opened func() []string) {
	b.mu.Lock()
	b.answer = &text
	b.mu.Unlock()
	return func() []string {
		b.mu.Lock()
		defer b.mu.Unlock()
		return append([]string(nil), b.prompts...)
	}
}

// Start starts a headless Chromium (no sandbox, so it runs as root in CI;
// a fresh user-data directory) and opens a tab. It fails t when no browser
// is installed, and closes the browser when t ends.
func Start(t testing.TB) *Browser {
	t.Helper()
	path, err := FindChromium()
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-gpu", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &Browser{}
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(b.record))
	b.ctx = ctx
	b.cancel = func() { cancelTab(); cancelAlloc() }
	// The first Do starts the browser; it must have no timeout (see chromedp.Run).
	if err := chromedp.Do(ctx); err != nil {
		b.cancel()
		t.Fatalf("webtest: starting %s: %v", path, err)
	}
	t.Cleanup(b.Close)
	return b
}

// record keeps the events that show the page misbehaving. Network errors
// (an HTTP status >= 400) are not among them: the dashboard is expected to
// show those on the page, which tests check there.
func (b *Browser) record(ev any) {
	var msg string
	switch e := ev.(type) {
	case *page.EventJavascriptDialogOpening:
		b.mu.Lock()
		b.prompts = append(b.prompts, e.Message)
		answer := b.answer
		b.mu.Unlock()
		// A listener must not block: the answer goes from a goroutine of
		// its own, which ends with the call (or with the tab).
		p := page.HandleJavaScriptDialogParams{Accept: answer != nil}
		if answer != nil {
			p.PromptText = *answer
		}
		go func() { _, _ = chromedp.Call(b.ctx, page.HandleJavaScriptDialog, p) }()
		return
	case *runtime.EventConsoleAPICalled:
		if e.Type != runtime.ConsoleAPICalledTypeError && e.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		parts := make([]string, 0, len(e.Args))
		for _, a := range e.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		msg = "console." + string(e.Type) + ": " + strings.Join(parts, " ")
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg = "exception: " + d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		msg += fmt.Sprintf(" at %s:%d", d.URL, d.LineNumber)
	case *log.EventEntryAdded:
		if e.Entry.Level != log.EntryLevelError || e.Entry.Source == log.EntrySourceNetwork {
			return
		}
		msg = "log(" + string(e.Entry.Source) + "): " + e.Entry.Text + " " + e.Entry.URL
	default:
		return
	}
	b.mu.Lock()
	b.problems = append(b.problems, msg)
	b.mu.Unlock()
}

// Problems returns the console errors, uncaught exceptions and browser-log
// errors recorded since the start or the last ResetProblems.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// ResetProblems forgets the recorded problems.
func (b *Browser) ResetProblems() {
	b.mu.Lock()
	b.problems = nil
	b.mu.Unlock()
}

// CheckNoProblems fails t with every recorded problem, if any.
func (b *Browser) CheckNoProblems(t testing.TB) {
	t.Helper()
	for _, p := range b.Problems() {
		t.Errorf("browser: %s", p)
	}
}

// Context returns the tab's chromedp context, for actions this package
// does not wrap. Derive a timeout from it for each action.
func (b *Browser) Context() context.Context { return b.ctx }

// Do runs chromedp actions in the tab, within DefaultTimeout.
func (b *Browser) Do(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, DefaultTimeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// Navigate loads url in the tab and waits for its load event.
func (b *Browser) Navigate(url string) error {
	if err := b.Do(chromedp.Navigate(url)); err != nil {
		return fmt.Errorf("navigating to %s: %w", url, err)
	}
	return nil
}

// Eval evaluates a JavaScript expression in the tab and decodes its value.
func Eval[T any](b *Browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, DefaultTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// WaitText waits up to timeout for a visible element matching the CSS
// selector whose text contains text. On timeout the error quotes what the
// page shows.
func (b *Browser) WaitText(selector, text string, timeout time.Duration) error {
	return b.WaitJS(fmt.Sprintf(`[...document.querySelectorAll(%s)].some(
		(e) => e.checkVisibility() && e.textContent.includes(%s))`, jsString(selector), jsString(text)),
		timeout, fmt.Sprintf("%q showing %q", selector, text))
}

// WaitJS waits up to timeout for a JavaScript expression to be truthy;
// what describes the condition in the error.
func (b *Browser) WaitJS(expr string, timeout time.Duration, what string) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr,
		chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		shown, _ := Eval[string](b, `document.body ? document.body.innerText.slice(0, 1500) : ""`)
		return fmt.Errorf("waiting for %s: %w; the page shows:\n%s", what, err, shown)
	}
	return nil
}

// Click clicks the first visible element matching the CSS selector.
func (b *Browser) Click(selector string) error {
	if err := b.Do(chromedp.Click(chromedp.CSS(selector))); err != nil {
		return fmt.Errorf("clicking %q: %w", selector, err)
	}
	return nil
}

// SetValue sets a form field's value and fires its change event, as a
// user's edit does.
func (b *Browser) SetValue(selector, value string) error {
	_, err := Eval[bool](b, fmt.Sprintf(`(() => {
		const e = document.querySelector(%s);
		if (!e) throw new Error("no element " + %s);
		e.value = %s;
		e.dispatchEvent(new Event("change", { bubbles: true }));
		return true;
	})()`, jsString(selector), jsString(selector), jsString(value)))
	if err != nil {
		return fmt.Errorf("setting %q to %q: %w", selector, value, err)
	}
	return nil
}

// Hover moves the mouse to the centre of the first element matching the
// CSS selector.
func (b *Browser) Hover(selector string) error {
	pt, err := Eval[[2]float64](b, fmt.Sprintf(`(() => {
		const r = document.querySelector(%s).getBoundingClientRect();
		return [r.left + r.width / 2, r.top + r.height / 2];
	})()`, jsString(selector)))
	if err != nil {
		return fmt.Errorf("finding %q: %w", selector, err)
	}
	return b.Do(chromedp.MouseEvent(chromedp.MouseMoved, pt[0], pt[1]))
}

// Close stops the browser and waits for it to exit. Start registers it
// with t.Cleanup; calling it again does nothing.
func (b *Browser) Close() {
	b.cancel()
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	q, _ := json.Marshal(s) // a string always marshals
	return string(q)
}
