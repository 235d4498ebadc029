package rpc

import (
	"io"
	"sync"
)

// Buffer sizes of a connection's reader.
const (
	// smallRead is the buffer every connection owns: what an idle
	// connection costs, and enough for dozens of small frames per read.
	smallRead = 4 << 10
	// bigRead is the buffer a busy connection borrows from bigReads.
	bigRead = 256 << 10
)

// bigReads holds the large read buffers of the connections that are busy.
var bigReads = sync.Pool{New: func() any { b := make([]byte, bigRead); return &b }}

// frameReader buffers a connection's input for its read loop. A process
// may hold thousands of connections (one per actor it calls), most of them
// idle, so the reader keeps only a small buffer of its own. A read that
// fills it says the peer is sending much: the next read goes into a large
// buffer from a shared pool, so a busy connection reads many frames per
// system call; the large buffer goes back to the pool as soon as it is
// drained by a read that did not fill it.
type frameReader struct {
	src   io.Reader
	small []byte
	big   *[]byte // borrowed from bigReads while the connection is busy
	buf   []byte  // small or *big: buf[r:w] is unread
	r, w  int
	full  bool // the last read filled buf
	// mayBorrow, if set, says whether a large buffer may be borrowed now
	// (not before the peer has authenticated).
	mayBorrow func() bool
	// beforeRead, if set, runs before readFull reads the source, that is
	// whenever what is buffered has run out and the next read may wait.
	beforeRead func()
}

func newFrameReader(src io.Reader) *frameReader {
	small := make([]byte, smallRead)
	return &frameReader{src: src, small: small, buf: small}
}

// buffered is how many bytes are read and not yet taken.
func (f *frameReader) buffered() int { return f.w - f.r }

// fill reads more input once buf is drained.
func (f *frameReader) fill() error {
	switch {
	case f.full && f.big == nil && (f.mayBorrow == nil || f.mayBorrow()):
		f.big = bigReads.Get().(*[]byte)
		f.buf = *f.big
	case !f.full && f.big != nil:
		f.release()
	}
	n, err := f.src.Read(f.buf)
	f.r, f.w, f.full = 0, n, n == len(f.buf)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// release gives the large buffer back, if any, dropping what it holds
// unread.
func (f *frameReader) release() {
	if f.big != nil {
		bigReads.Put(f.big)
		f.big, f.buf = nil, f.small
	}
}

// readFull fills p, from what is buffered and then from the source: a
// body larger than what is buffered is read straight into p.
// As io.ReadFull, the end of input after part of p is
// io.ErrUnexpectedEOF.
func (f *frameReader) readFull(p []byte) error {
	got := false
	for len(p) > 0 {
		if f.r == f.w {
			if f.beforeRead != nil {
				f.beforeRead()
			}
			if len(p) >= len(f.buf) {
				f.release()
				n, err := io.ReadFull(f.src, p)
				if err == io.EOF && (got || n > 0) {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
			if err := f.fill(); err != nil {
				if err == io.EOF && got {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		got = true
		n := copy(p, f.buf[f.r:f.w])
		f.r += n
		p = p[n:]
	}
	return nil
}
