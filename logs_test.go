package rayo

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Talker prints what it is told.
type Talker struct{}

// Say prints s after pausing ms: an actor's calls run one after another on
// its one worker, so their lines share a log.
func (Talker) Say(s string, ms int) int {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	fmt.Println(s)
	return len(s)
}

// Pause pauses ms and prints nothing.
func (Talker) Pause(ms int) int {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return ms
}

var (
	newTalker = Actor0(func() Talker { return Talker{} })
	say       = Method2(newTalker, Talker.Say)
	pause     = Method1(newTalker, Talker.Pause)
	lastWords = Method1(newTalker, Talker.LastWords)
)

// exitAtOnce prints s and ends its process before it returns, well before
// its worker reports it running.
var exitAtOnce = Func1(func(s string) int {
	fmt.Println(s)
	os.Exit(7)
	return 0
}, MaxRetries(0))

// LastWords prints s and ends its process before it returns.
func (Talker) LastWords(s string) int {
	fmt.Println(s)
	os.Exit(7)
	return 0
}

// logOf fetches a log from the API server until it holds want (lines
// reach the raylet on their own), and returns it.
func logOf(t *testing.T, query, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(DashboardURL() + "/api/v0/logs?" + query)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
			return string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %s: %s %q, want %q in it", query, resp.Status, body, want)
		}
		time.Sleep(50 * time.Millisecond) // the task's events reach the state table every 200 ms
	}
}

func TestTaskLogHoldsItsOwnLines(t *testing.T) {
	ctx := ctxT(t)
	a := newTalker.Remote()
	defer Kill(ctx, a)
	first := say.Remote(a, V("alpha from the first call"), V(0))
	if _, err := Get(ctx, first); err != nil {
		t.Fatal(err)
	}
	// The second call follows at once: each call's lines are told apart
	// by the mark its worker prints as it starts, not by when they reach
	// the raylet.
	second := say.Remote(a, V("beta from the second call"), V(0))
	if _, err := Get(ctx, second); err != nil {
		t.Fatal(err)
	}
	one := logOf(t, "task_id="+first.ID()[:32], "alpha from the first call")
	two := logOf(t, "task_id="+second.ID()[:32], "beta from the second call")
	if strings.Contains(one, "beta") || strings.Contains(two, "alpha") {
		t.Fatalf("the calls' logs mix:\nfirst: %q\nsecond: %q", one, two)
	}
	both := logOf(t, "actor_id="+a.ID(), "beta from the second call")
	if !strings.Contains(both, "alpha from the first call") {
		t.Fatalf("the actor's log lacks the first call's line: %q", both)
	}
}

// A call that prints nothing has an empty log, not the lines its
// neighbours printed around it: its worker marks a task only once it
// prints, and the raylet knows a missing mark means silence.
func TestSilentTaskLogIsEmpty(t *testing.T) {
	ctx := ctxT(t)
	a := newTalker.Remote()
	defer Kill(ctx, a)
	before := say.Remote(a, V("delta before the silent call"), V(0))
	silent := pause.Remote(a, V(20))
	after := say.Remote(a, V("epsilon after the silent call"), V(0))
	if _, err := Get(ctx, after); err != nil {
		t.Fatal(err)
	}
	if _, err := Get(ctx, before); err != nil {
		t.Fatal(err)
	}
	logOf(t, "task_id="+after.ID()[:32], "epsilon after the silent call")
	logOf(t, "task_id="+before.ID()[:32], "delta before the silent call")
	if got := logOf(t, "task_id="+silent.ID()[:32], ""); got != "" {
		t.Fatalf("the silent call's log: %q, want it empty", got)
	}
}

// What a task prints just before its process exits is in its log and
// reaches the driver: the raylet reads what the worker left behind.
func TestLastWordsBeforeExitAreKept(t *testing.T) {
	ctx := ctxT(t)
	const words = "zeta, the last words before os.Exit"
	a := newTalker.Remote()
	if _, err := Get(ctx, pause.Remote(a, V(0))); err != nil {
		t.Fatal(err)
	}
	if _, err := Get(ctx, lastWords.Remote(a, V(words))); err == nil {
		t.Fatal("a call whose process exited returned no error")
	}
	if got := logOf(t, "actor_id="+a.ID(), words); strings.Count(got, words) != 1 {
		t.Fatalf("the actor's log holds its last words %d times: %q", strings.Count(got, words), got)
	}
}

// TestLastWordsOfAShortTaskAreFoundByTask: a task whose process exits
// before its worker reports it running still names its worker in its
// record (its owner knows the lease), so its log is found by task.
func TestLastWordsOfAShortTaskAreFoundByTask(t *testing.T) {
	ctx := ctxT(t)
	const words = "eta, the last words of a task that exits at once"
	ref := exitAtOnce.Remote(V(words))
	if _, err := Get(ctx, ref); !errors.Is(err, ErrWorkerDied) {
		t.Fatalf("a task whose process exited: %v, want ErrWorkerDied", err)
	}
	if got := logOf(t, "task_id="+ref.ID()[:32], words); strings.Count(got, words) != 1 {
		t.Fatalf("the task's log holds its last words %d times: %q", strings.Count(got, words), got)
	}
}

// TestLogsArePrivate: the raylet's and the workers' logs are readable by
// their user only.
func TestLogsArePrivate(t *testing.T) {
	ctx := ctxT(t)
	if _, err := Get(ctx, add.Remote(V(1), V(2))); err != nil { // a worker has run
		t.Fatal(err)
	}
	cluster.Lock()
	dir := filepath.Join(cluster.session, "logs")
	cluster.Unlock()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	workers := 0
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: others may read it", e.Name(), info.Mode().Perm())
		}
		if strings.HasPrefix(e.Name(), "worker-") {
			workers++
		}
	}
	if workers == 0 {
		t.Fatalf("no worker log in %s", dir)
	}
}
