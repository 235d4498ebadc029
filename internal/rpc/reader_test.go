package rpc

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// script is a source that answers each Read with the next of its sizes
// (at most len(p)) and records the size of the buffer it was given.
type script struct {
	sizes []int
	asked []int
	next  byte
}

func (s *script) Read(p []byte) (int, error) {
	s.asked = append(s.asked, len(p))
	if len(s.sizes) == 0 {
		return 0, io.EOF
	}
	n := min(s.sizes[0], len(p))
	s.sizes = s.sizes[1:]
	for i := range p[:n] {
		p[i] = s.next
		s.next++
	}
	return n, nil
}

func TestFrameReaderBorrowsOnlyWhileBusy(t *testing.T) {
	src := &script{sizes: []int{smallRead, bigRead, 100, 10}}
	r := newFrameReader(src)
	var got []byte
	p := make([]byte, 10)
	for {
		if err := r.readFull(p); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("readFull: %v", err)
			}
			break
		}
		got = append(got, p...)
	}
	// A read that filled the small buffer is followed by one into the
	// large buffer; one that filled the large buffer by another; one that
	// did not, by the small buffer again: a read that waits for a quiet
	// peer holds the small buffer only.
	want := []int{smallRead, bigRead, bigRead, smallRead, smallRead}
	if len(src.asked) != len(want) {
		t.Fatalf("reads of %v bytes, want %v", src.asked, want)
	}
	for i := range want {
		if src.asked[i] != want[i] {
			t.Fatalf("reads of %v bytes, want %v", src.asked, want)
		}
	}
	if r.big != nil {
		t.Error("the large buffer is still held at the end of input")
	}
	for i, b := range got {
		if b != byte(i) {
			t.Fatalf("byte %d is %d, want %d", i, b, byte(i))
		}
	}
	if total := smallRead + bigRead + 100 + 10; len(got) != total {
		t.Fatalf("read %d bytes, want %d", len(got), total)
	}
}

func TestFrameReaderStream(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	pr, pw := io.Pipe()
	go func() {
		// Writes of every size, small to larger than the large buffer.
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rnd.IntN(400<<10))
			if rnd.IntN(2) == 0 {
				n = min(len(rest), 1+rnd.IntN(200))
			}
			if _, err := pw.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
		pw.Close()
	}()
	r := newFrameReader(pr)
	var got []byte
	for len(got) < len(data) {
		n := min(len(data)-len(got), 1+rand.IntN(300<<10))
		p := make([]byte, n)
		if err := r.readFull(p); err != nil {
			t.Fatalf("readFull after %d bytes: %v", len(got), err)
		}
		got = append(got, p...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes read differ from bytes written")
	}
	if err := r.readFull(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("readFull at the end: %v, want io.EOF", err)
	}
}

func TestFrameReaderUnexpectedEOF(t *testing.T) {
	for _, c := range []struct {
		name  string
		sizes []int
		want  int
		err   error
	}{
		{"nothing", nil, headerLen, io.EOF},
		{"part of a header", []int{5}, headerLen, io.ErrUnexpectedEOF},
		{"part of a large body", []int{100}, 2 * bigRead, io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newFrameReader(&script{sizes: c.sizes})
			if err := r.readFull(make([]byte, c.want)); !errors.Is(err, c.err) {
				t.Fatalf("readFull: %v, want %v", err, c.err)
			}
		})
	}
}
