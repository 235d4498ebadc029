package raylet

import "testing"

// TestTaskSpans: a task's lines run from its mark to the next task's,
// whatever the time they reached the raylet.
func TestTaskSpans(t *testing.T) {
	w := &workerProc{}
	w.markLine(int64(len("before any task\n")))
	w.markTask(11)
	w.markLine(int64(len("alpha\n")))
	w.markTask(0) // a call of a concurrent actor: no key
	w.markLine(int64(len("mixed\n")))
	w.markTask(22)
	w.markLine(int64(len("beta\n")))
	w.markLine(int64(len("gamma\n")))
	for _, c := range []struct {
		key      uint64
		lo, hi   int64
		last, ok bool
	}{
		{11, 16, 22, false, true},
		{22, 28, 39, true, true},
		{33, 0, 0, false, false}, // no mark of it
		{0, 0, 0, false, false},  // a task without a key is found by time
	} {
		lo, hi, last, ok := w.taskSpan(c.key)
		if lo != c.lo || hi != c.hi || last != c.last || ok != c.ok {
			t.Errorf("task %d: [%d, %d) last %v ok %v; want [%d, %d) last %v ok %v", c.key, lo, hi, last, ok, c.lo, c.hi, c.last, c.ok)
		}
	}
}

// TestTaskMarksAreBounded: a worker that ran many tasks keeps the marks of
// its latest ones only.
func TestTaskMarksAreBounded(t *testing.T) {
	w := &workerProc{}
	for k := uint64(1); k <= maxTaskMarks+1; k++ {
		w.markTask(k)
		w.markLine(2)
	}
	if len(w.tasks) > maxTaskMarks {
		t.Fatalf("%d task marks kept, want at most %d", len(w.tasks), maxTaskMarks)
	}
	if _, _, _, ok := w.taskSpan(1); ok {
		t.Error("the oldest task's mark is still kept")
	}
	lo, hi, last, ok := w.taskSpan(maxTaskMarks + 1)
	if !ok || !last || hi-lo != 2 {
		t.Errorf("the latest task: [%d, %d) last %v ok %v", lo, hi, last, ok)
	}
}
