package dashboard

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rayo-dev/rayo/internal/jobs"
)

// endless yields n bytes of c, without holding them.
type endless struct {
	c byte
	n int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	for i := range p {
		p[i] = e.c
	}
	e.n -= int64(len(p))
	return len(p), nil
}

// counting counts the bytes read through it.
type counting struct {
	r io.Reader
	n int64
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestSubmissionBoundsPartHeaders sends the attack input of GO-2026-6608
// to job submission: a multipart body whose part headers hold one line of
// 64 MiB. Go 1.26.8's multipart reader would read at least 10 MiB of it
// into memory (and past any bound once its budget runs low); the handler
// must stop after a few tens of KiB with 413, and start nothing. It checks
// the first part and the second (after a good request part) alike.
func TestSubmissionBoundsPartHeaders(t *testing.T) {
	m, err := jobs.New(jobs.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	h := New(Config{Source: newFake(), Jobs: m, Token: "sekret"})
	const boundary = "b0undary"
	const attack = 64 << 20
	good := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"request\"\r\n\r\n" +
		`{"entrypoint": "echo ran", "submission_id": "smuggled"}` + "\r\n"
	cases := []struct {
		name   string
		prefix string
		bound  int64 // the most the handler may read
	}{
		{"first part", "--" + boundary + "\r\nX-Long: ", maxPartHeaders + 8<<10},
		{"second part", good + "--" + boundary + "\r\nX-Long: ", int64(len(good)) + maxPartHeaders + 8<<10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := &counting{r: io.MultiReader(strings.NewReader(tc.prefix), &endless{c: 'a', n: attack},
				strings.NewReader("\r\n\r\nx\r\n--"+boundary+"--\r\n"))}
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/api/jobs/", body)
			req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
			req.Header.Set("Authorization", "Bearer sekret")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "part headers exceed") {
				t.Fatalf("status %d %q, want 413 naming the part headers", rec.Code, rec.Body.String())
			}
			if body.n > tc.bound {
				t.Fatalf("the handler read %d bytes of a %d-byte header line, want at most %d", body.n, attack, tc.bound)
			}
			if _, err := m.Get("smuggled"); err == nil {
				t.Fatal("a submission whose part headers were refused was started")
			}
		})
	}
}

// TestSubmissionPartHeadersOverHTTP checks the same bound through a real
// server and socket, and that ordinary headers (a long file name) pass.
func TestSubmissionPartHeadersOverHTTP(t *testing.T) {
	srv, m := jobServer(t)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreateFormField("request")
	_, _ = part.Write([]byte(`{"entrypoint": "true", "submission_id": "long-name"}`))
	part, _ = mw.CreateFormFile("working_dir", strings.Repeat("n", 8<<10)+".tar.gz")
	if err := jobs.Pack(part, t.TempDir(), jobs.MaxWorkingDir); err != nil {
		t.Fatal(err)
	}
	_ = mw.Close()
	if code, out := do(t, "POST", srv.URL+"/api/jobs/", "sekret", mw.FormDataContentType(), body.Bytes()); code != http.StatusOK {
		t.Fatalf("a submission with 8 KiB of part headers: %d %s", code, out)
	}
	if _, err := m.Get("long-name"); err != nil {
		t.Fatal(err)
	}

	huge := fmt.Sprintf("--b\r\nContent-Disposition: form-data; name=\"request\"\r\nX-Long: %s\r\n\r\n{}\r\n--b--\r\n",
		strings.Repeat("a", 2*maxPartHeaders))
	code, out := do(t, "POST", srv.URL+"/api/jobs/", "sekret", "multipart/form-data; boundary=b", []byte(huge))
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(out, "part headers exceed") {
		t.Fatalf("part headers of %d KiB: %d %s, want 413", 2*maxPartHeaders>>10, code, out)
	}
}
