package jobs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newManager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(Config{Dir: t.TempDir(), Env: []string{"RAYO_ADDRESS=127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// wait returns a submission once it ended.
func wait(t *testing.T, m *Manager, id string) Info {
	t.Helper()
	done, err := m.Done(id)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not end", id)
	}
	info, err := m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func logOf(t *testing.T, info Info) string {
	t.Helper()
	b, err := os.ReadFile(info.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSubmitRunsTheEntrypointWithItsWorkingDirAndEnvironment(t *testing.T) {
	t.Setenv("HEAD_SECRET", "do not pass on")
	m, err := New(Config{Dir: t.TempDir(), Env: []string{"RAYO_ADDRESS=127.0.0.1:1"}, Hide: []string{"HEAD_SECRET"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "data", "input.txt"), []byte("forty-two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\ncat data/input.txt\necho \"$RAYO_ADDRESS $RAYO_SUBMISSION_ID $GREETING${HEAD_SECRET:-}\"\necho oops >&2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if err := Pack(&archive, src, MaxWorkingDir); err != nil {
		t.Fatal(err)
	}
	info, err := m.Submit(Request{Entrypoint: "./run.sh", SubmissionID: "first", WorkingDir: &archive,
		Env: map[string]string{"GREETING": "hello"}, Metadata: map[string]string{"owner": "me"}})
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != StatusRunning || info.PID == 0 {
		t.Fatalf("just submitted: %+v", info)
	}
	info = wait(t, m, "first")
	if info.Status != StatusSucceeded || info.ExitCode == nil || *info.ExitCode != 0 || info.EndTimeMs < info.StartTimeMs || info.Metadata["owner"] != "me" {
		t.Fatalf("ended: %+v", info)
	}
	if got, want := logOf(t, info), "forty-two\n127.0.0.1:1 first hello\noops\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if _, err := m.Submit(Request{Entrypoint: "true", SubmissionID: "first"}); !errors.Is(err, ErrConflict) {
		t.Errorf("a second submission with the same ID: %v", err)
	}
}

func TestFailuresAreReported(t *testing.T) {
	m := newManager(t)
	info, err := m.Submit(Request{Entrypoint: "echo about to fail; exit 7"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info.SubmissionID, "rayosubmit_") {
		t.Errorf("made-up ID %q", info.SubmissionID)
	}
	info = wait(t, m, info.SubmissionID)
	if info.Status != StatusFailed || *info.ExitCode != 7 || !strings.Contains(info.Message, "code 7") {
		t.Fatalf("a failing entrypoint: %+v", info)
	}
	// A working directory that is not an archive fails the submission,
	// not the manager.
	info, err = m.Submit(Request{Entrypoint: "true", WorkingDir: strings.NewReader("not a tarball")})
	if err != nil || info.Status != StatusFailed || !strings.Contains(info.Message, "gzip") {
		t.Fatalf("bad archive: %+v %v", info, err)
	}
}

func TestBadRequests(t *testing.T) {
	m := newManager(t)
	for _, req := range []Request{
		{Entrypoint: "  "},
		{Entrypoint: "true", SubmissionID: "../escape"},
		{Entrypoint: "true", SubmissionID: strings.Repeat("x", 129)},
		{Entrypoint: "true", Env: map[string]string{"A=B": "c"}},
	} {
		if _, err := m.Submit(req); !errors.Is(err, ErrBad) {
			t.Errorf("%+v: %v, want ErrBad", req, err)
		}
	}
	if _, err := m.Get("nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Get of an unknown ID: %v", err)
	}
	if _, err := m.Stop("nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Stop of an unknown ID: %v", err)
	}
	if err := m.Delete("nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Delete of an unknown ID: %v", err)
	}
	if len(m.List()) != 0 {
		t.Errorf("bad requests were kept: %v", m.List())
	}
}

// alive reports whether a process group has a member left that is not a
// zombie (an orphan's exit waits for whoever reaps it, maybe not soon).
func alive(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == fmt.Sprint(pgid) {
			return true
		}
	}
	return false
}

func TestStopEndsTheWholeProcessGroup(t *testing.T) {
	old := stopGrace
	stopGrace = 200 * time.Millisecond
	t.Cleanup(func() { stopGrace = old })
	m := newManager(t)
	// A child that ignores SIGTERM, under a shell that obeys it: the
	// child goes too, with SIGKILL after the grace.
	info, err := m.Submit(Request{Entrypoint: "sh -c 'trap \"\" TERM; echo child up; sleep 60' & wait", SubmissionID: "long"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logOf(t, info), "child up") {
		if time.Now().After(deadline) {
			t.Fatal("the child never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.Delete("long"); !errors.Is(err, ErrConflict) {
		t.Errorf("Delete of a running submission: %v", err)
	}
	if ok, err := m.Stop("long"); !ok || err != nil {
		t.Fatalf("Stop: %v %v", ok, err)
	}
	info = wait(t, m, "long")
	if info.Status != StatusStopped || info.Message != "stopped on request" {
		t.Fatalf("stopped: %+v", info)
	}
	deadline = time.Now().Add(5 * time.Second)
	for alive(info.PID) {
		if time.Now().After(deadline) {
			t.Fatal("a process of the stopped submission is still there")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, err := m.Stop("long"); ok || err != nil {
		t.Errorf("a second Stop: %v %v", ok, err)
	}
	if err := m.Delete("long"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(info.LogFile)); !os.IsNotExist(err) {
		t.Errorf("the folder of a deleted submission: %v", err)
	}
}

func TestCloseStopsWhatRuns(t *testing.T) {
	m, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.Submit(Request{Entrypoint: "sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := m.Get(info.SubmissionID)
	if got.Status != StatusStopped || alive(info.PID) {
		t.Fatalf("after Close: %+v (alive %v)", got, alive(info.PID))
	}
	if _, err := m.Submit(Request{Entrypoint: "true"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close: %v", err)
	}
}

func TestEndedSubmissionsAreBounded(t *testing.T) {
	var now time.Time
	m, err := New(Config{Dir: t.TempDir(), Now: func() time.Time { now = now.Add(time.Millisecond); return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	// Submissions whose working directory does not unpack end at once.
	for i := range maxFinished + 5 {
		if _, err := m.Submit(Request{Entrypoint: "true", SubmissionID: fmt.Sprint("s", i), WorkingDir: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	list := m.List()
	if len(list) != maxFinished || list[0].SubmissionID != fmt.Sprint("s", maxFinished+4) {
		t.Fatalf("%d kept, newest %s", len(list), list[0].SubmissionID)
	}
	if _, err := m.Get("s0"); !errors.Is(err, ErrUnknown) {
		t.Errorf("the oldest is still there: %v", err)
	}
}

// archive builds a gzip-compressed tar of headers with contents.
func archive(t testing.TB, entries ...*tar.Header) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = 1
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	_ = tw.Close()
	_ = zw.Close()
	return &buf
}

func TestUnpackRefusesWhatWouldEscapeOrOverflow(t *testing.T) {
	for name, tc := range map[string]struct {
		archive *bytes.Buffer
		limit   int64
		want    string
	}{
		"parent":   {archive(t, &tar.Header{Name: "../outside", Typeflag: tar.TypeReg, Mode: 0o644}), 1 << 20, "outside the working directory"},
		"deep":     {archive(t, &tar.Header{Name: "a/../../outside", Typeflag: tar.TypeReg, Mode: 0o644}), 1 << 20, "outside the working directory"},
		"absolute": {archive(t, &tar.Header{Name: "/etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}), 1 << 20, "outside the working directory"},
		"symlink":  {archive(t, &tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc"}), 1 << 20, "only regular files and folders"},
		"too big":  {archive(t, &tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2048}), 1024, "more than 1024 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			err := Unpack(tc.archive, filepath.Join(dir, "work"), tc.limit)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Unpack: %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "outside")); !os.IsNotExist(err) {
				t.Errorf("a file was written outside: %v", err)
			}
		})
	}
}

// FuzzUnpack feeds Unpack arbitrary archives: it must return (an error or
// not) without panicking, and write nothing outside its folder.
func FuzzUnpack(f *testing.F) {
	f.Add(archive(f, &tar.Header{Name: "a/b.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}).Bytes())
	f.Add(archive(f, &tar.Header{Name: "../x", Typeflag: tar.TypeReg, Mode: 0o644}).Bytes())
	f.Add(archive(f, &tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}).Bytes())
	f.Add([]byte("not an archive"))
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		work := filepath.Join(root, "work")
		_ = Unpack(bytes.NewReader(data), work, 1<<20)
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "work" {
				t.Fatalf("Unpack wrote %q outside its folder", e.Name())
			}
		}
	})
}

// TestOnEndHearsEachEnd: OnEnd hears once how each submission ended,
// stopped, failed (with its exit) or succeeded, as Get says it.
func TestOnEndHearsEachEnd(t *testing.T) {
	old := stopGrace
	stopGrace = 200 * time.Millisecond
	t.Cleanup(func() { stopGrace = old })
	ends := make(chan Info, 10)
	m, err := New(Config{Dir: t.TempDir(), OnEnd: func(i Info) { ends <- i }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	for _, r := range []Request{{Entrypoint: "true", SubmissionID: "ok"}, {Entrypoint: "exit 3", SubmissionID: "bad"},
		{Entrypoint: "kill -9 $$", SubmissionID: "killed"}, {Entrypoint: "sleep 60", SubmissionID: "stopped"}} {
		if _, err := m.Submit(r); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := m.Stop("stopped"); !ok || err != nil {
		t.Fatalf("Stop: %v %v", ok, err)
	}
	want := map[string]string{"ok": StatusSucceeded + " ", "bad": StatusFailed + " the entrypoint exited with code 3",
		"killed": StatusFailed + " the entrypoint ended: signal: killed", "stopped": StatusStopped + " stopped on request"}
	for n := len(want); n > 0; n-- {
		select {
		case i := <-ends:
			if got := i.Status + " " + i.Message; got != want[i.SubmissionID] {
				t.Errorf("OnEnd heard %s end %q, want %q", i.SubmissionID, got, want[i.SubmissionID])
			}
			if got := wait(t, m, i.SubmissionID); got.Status != i.Status || got.EndTimeMs != i.EndTimeMs {
				t.Errorf("OnEnd heard %+v, Get says %+v", i, got)
			}
			delete(want, i.SubmissionID)
		case <-time.After(30 * time.Second):
			t.Fatalf("no end heard of %v", want)
		}
	}
	select {
	case i := <-ends:
		t.Errorf("a second end heard: %+v", i)
	default:
	}
}

func TestValidID(t *testing.T) {
	long := strings.Repeat("a", maxIDLen)
	for id, want := range map[string]bool{
		"raysubmit_1": true, "A-b.c_9": true, long: true, long + "a": false,
		"": false, "a b": false, "a/b": false, "é": false, "a\x00": false,
	} {
		if got := validID(id); got != want {
			t.Errorf("validID(%.20q…) = %v, want %v", id, got, want)
		}
	}
}
