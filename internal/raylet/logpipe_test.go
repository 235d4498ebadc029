package raylet

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// Marks written one by one, as a busy worker starts task after task, are
// read many at a time: the pipe is polled, not watched, so that a mark does
// not wake this process (it did, one read per mark).
func TestLogPipeReadsMarksInBatches(t *testing.T) {
	exited := make(chan struct{})
	p, w, err := newLogPipe(exited)
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
		close(exited)
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

// Once the worker has exited, what its output still holds is read to the
// end, and Read says io.EOF.
func TestLogPipeEndsAfterTheWorker(t *testing.T) {
	exited := make(chan struct{})
	p, w, err := newLogPipe(exited)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := w.Write([]byte("last words\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	close(exited)
	b, err := io.ReadAll(p)
	if err != nil || string(b) != "last words\n" {
		t.Fatalf("ReadAll = %q, %v", b, err)
	}
	if n, err := p.unread(); n != 0 || err != nil {
		t.Fatalf("unread = %d, %v on a drained pipe", n, err)
	}
}
