package raylet

import (
	"bufio"
	"bytes"
	"io"
	"sync"
	"testing"
	"time"
)

// Marks written one by one, as a busy worker starts task after task, are
// read many at a time: the copier paces its reads while they come fast, so
// that a mark does not wake this process (each did, one read per mark).
func TestLogPipeReadsMarksInBatches(t *testing.T) {
	p, w, err := newLogPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const marks = 200
	mark := []byte("\x00rayo-task:noop\n")
	go func() {
		defer w.Close()
		for range marks {
			if _, err := w.Write(mark); err != nil {
				return
			}
			for start := time.Now(); time.Since(start) < 50*time.Microsecond; {
				// an empty task's time, about (a sleep would last a millisecond)
			}
		}
	}()
	var got bytes.Buffer
	reads := 0
	buf := make([]byte, 64<<10)
	for {
		n, err := p.Read(buf)
		if n > 0 {
			reads++
			got.Write(buf[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got.Len() != marks*len(mark) {
		t.Fatalf("read %d bytes, want %d", got.Len(), marks*len(mark))
	}
	if reads > marks/4 {
		t.Fatalf("%d reads for %d marks written one by one, want a quarter as many at most", reads, marks)
	}
}

// A line that follows a silence is read at once, not at a later poll: the
// driver that waits for the task sees its lines before it goes on.
func TestLogPipeReadsAfterSilenceAtOnce(t *testing.T) {
	p, w, err := newLogPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	defer w.Close()
	buf := make([]byte, 4096)
	for range 3 { // a stream: reads close together
		if _, err := w.Write([]byte("line\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	read := make(chan time.Time)
	go func() {
		_, _ = p.Read(buf) // paces, then waits for output
		read <- time.Now()
	}()
	silence := time.Now()
	for time.Since(silence) < 50*time.Millisecond {
		time.Sleep(logPace)
	}
	written := time.Now()
	if _, err := w.Write([]byte("after\n")); err != nil {
		t.Fatal(err)
	}
	// At once, give or take a busy machine's scheduling: a copier that
	// polled, waiting longer as output stopped, took up to 100 ms.
	if d := (<-read).Sub(written); d >= 20*time.Millisecond {
		t.Fatalf("a line after a silence was read %v after it was written, want at once", d)
	}
}

// The copier reads a worker's output to the end: io.EOF once the last
// writer closed it.
func TestLogPipeEndsWithTheWriters(t *testing.T) {
	p, w, err := newLogPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := w.Write([]byte("last words\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b, err := io.ReadAll(p)
	if err != nil || string(b) != "last words\n" {
		t.Fatalf("ReadAll = %q, %v", b, err)
	}
}

// A flush (caughtUp) ends only once every whole line the pipe held when it
// was asked has been handled, however the copier is paced, and at once
// when nothing waits; closing the pipe lets a waiting flush go.
func TestLogPipeCaughtUpAfterTheLinesAreHandled(t *testing.T) {
	p, w, err := newLogPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var mu sync.Mutex
	handled := 0
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(p)
		for sc.Scan() {
			time.Sleep(100 * time.Microsecond) // a line takes its time to pass on
			mu.Lock()
			handled++
			mu.Unlock()
		}
	}()
	for round := 1; round <= 20; round++ {
		// Lines written close together: the copier paces its reads.
		for range 10 {
			if _, err := w.Write([]byte("a line\n")); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-p.caughtUp():
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the flush never ended", round)
		}
		mu.Lock()
		n := handled
		mu.Unlock()
		if n != round*10 {
			t.Fatalf("round %d: the flush ended with %d lines handled, want %d", round, n, round*10)
		}
	}
	// Nothing written since: the copier waits in a read, and a flush ends
	// at once (it is closed before caughtUp returns).
	select {
	case <-p.caughtUp():
	default:
		t.Fatal("a flush of an idle pipe waits")
	}
	// A partial line is not waited for: it is the next line's start.
	if _, err := w.Write([]byte("no newline yet")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.caughtUp():
	case <-time.After(10 * time.Second):
		t.Fatal("a flush waited for a line's end")
	}
	w.Close()
	<-copied
	stuck := make(chan struct{})
	p.mu.Lock()
	p.waiters = append(p.waiters, stuck)
	p.reading = false
	p.mu.Unlock()
	p.Close()
	select {
	case <-stuck:
	default:
		t.Fatal("closing the pipe left a flush waiting")
	}
	select {
	case <-p.caughtUp():
	default:
		t.Fatal("a flush of a closed pipe waits")
	}
}
