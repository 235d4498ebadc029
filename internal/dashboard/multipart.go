package dashboard

import (
	"errors"
	"fmt"
	"io"
)

// maxPartHeaders bounds what a job submission's multipart reader may read
// while it looks for the next part and parses that part's headers.
//
// Go 1.26.8's textproto header reader, which mime/multipart's NextPart uses
// with a 10 MiB budget, can be made to read an arbitrarily long line once
// less than 400 bytes of that budget remain (GO-2026-6608). Capping the
// bytes the reader can pull from the request body at this much, far below
// 10 MiB, means the budget never runs that low: headers beyond it end the
// request with 413 before the vulnerable code sees them.
const maxPartHeaders = 64 << 10

// errPartHeaders is what the multipart reader gets when a part's headers
// (and the bytes before them) exceed their budget.
var errPartHeaders = fmt.Errorf("a multipart submission's part headers exceed %d KiB", maxPartHeaders>>10)

// budgetReader reads from r at most left more bytes, then fails with
// errPartHeaders; a negative left is no bound.
type budgetReader struct {
	r    io.Reader
	left int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left < 0 {
		return b.r.Read(p)
	}
	if b.left == 0 {
		return 0, errPartHeaders
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// isPartHeaders reports whether err came from a budgetReader's bound.
func isPartHeaders(err error) bool { return errors.Is(err, errPartHeaders) }
