package ids

import (
	"encoding/hex"
	"errors"
	"sync"
	"testing"
)

func TestFromRoundTrips(t *testing.T) {
	tid := NewTaskID()
	if got, err := TaskIDFrom(tid[:]); err != nil || got != tid {
		t.Fatalf("TaskIDFrom = %v, %v", got, err)
	}
	oid := ForReturn(tid, 2)
	if got, err := ObjectIDFrom(oid[:]); err != nil || got != oid {
		t.Fatalf("ObjectIDFrom = %v, %v", got, err)
	}
	wid := NewWorkerID()
	if got, err := WorkerIDFrom(wid[:]); err != nil || got != wid {
		t.Fatalf("WorkerIDFrom = %v, %v", got, err)
	}
	nid := NewNodeID()
	if got, err := NodeIDFrom(nid[:]); err != nil || got != nid {
		t.Fatalf("NodeIDFrom = %v, %v", got, err)
	}
	gid := NewPlacementGroupID()
	if got, err := PlacementGroupIDFrom(gid[:]); err != nil || got != gid {
		t.Fatalf("PlacementGroupIDFrom = %v, %v", got, err)
	}
}

// Every parser refuses a slice of the wrong length, and copies the right
// one (a later change to the slice does not reach the ID).
func TestFromWrongLength(t *testing.T) {
	parsers := map[string]struct {
		parse func([]byte) error
		size  int
	}{
		"task":   {func(b []byte) error { _, err := TaskIDFrom(b); return err }, TaskIDLen},
		"object": {func(b []byte) error { _, err := ObjectIDFrom(b); return err }, ObjectIDLen},
		"worker": {func(b []byte) error { _, err := WorkerIDFrom(b); return err }, 16},
		"node":   {func(b []byte) error { _, err := NodeIDFrom(b); return err }, 16},
		"group":  {func(b []byte) error { _, err := PlacementGroupIDFrom(b); return err }, 16},
	}
	for name, p := range parsers {
		parse := p.parse
		if err := parse(make([]byte, p.size)); err != nil {
			t.Errorf("%s from %d bytes: %v", name, p.size, err)
		}
		for _, n := range []int{0, 1, 15, 16, 17, 19, 20, 21, 40} {
			if n == p.size {
				continue
			}
			if err := parse(make([]byte, n)); !errors.Is(err, ErrBadID) {
				t.Errorf("%s from %d bytes: %v, want ErrBadID", name, n, err)
			}
		}
		if err := parse(nil); !errors.Is(err, ErrBadID) {
			t.Errorf("%s from nil: %v", name, err)
		}
	}
	b := make([]byte, ObjectIDLen)
	o, _ := ObjectIDFrom(b)
	b[0] = 9
	if o[0] != 0 {
		t.Fatal("ObjectIDFrom aliases its input")
	}
}

func TestReturnAndPutIDs(t *testing.T) {
	tid := NewTaskID()
	for i := 0; i < 3; i++ {
		o := ForReturn(tid, i)
		if o.Task() != tid || o.Index() != i+1 {
			t.Fatalf("ForReturn(t, %d): task %v index %d", i, o.Task(), o.Index())
		}
		if o.IsNil() {
			t.Fatal("a return ID is nil")
		}
	}
	if ForReturn(tid, 0) == ForReturn(tid, 1) {
		t.Fatal("two returns share an ID")
	}
	p := ForPut()
	if p.Index() != 0 {
		t.Fatalf("put index %d, want 0", p.Index())
	}
	if (ObjectID{}).IsNil() != true {
		t.Fatal("zero ID not nil")
	}
	// Task IDs and put IDs come from one counter: a put never names a task's return.
	if p.Task() == tid {
		t.Fatal("a put ID shares its task part with a task")
	}
}

func TestStrings(t *testing.T) {
	tid := NewTaskID()
	if s := tid.String(); len(s) != 2*TaskIDLen {
		t.Fatalf("TaskID.String = %q", s)
	} else if b, err := hex.DecodeString(s); err != nil || string(b) != string(tid[:]) {
		t.Fatalf("TaskID.String is not its hex: %q", s)
	}
	o := ForReturn(tid, 0)
	if len(o.String()) != 2*ObjectIDLen {
		t.Fatalf("ObjectID.String = %q", o.String())
	}
	n := NewNodeID()
	if n.Name() != n.String()[:12] {
		t.Fatalf("NodeID.Name = %q", n.Name())
	}
	if len(NewWorkerID().String()) != 32 || len(NewPlacementGroupID().String()) != 32 {
		t.Fatal("worker or group ID string length")
	}
}

// IDs made at once on many goroutines are all distinct, and share this
// process's prefix.
func TestUnique(t *testing.T) {
	const goroutines, each = 8, 2000
	var mu sync.Mutex
	tasks := make(map[TaskID]bool)
	puts := make(map[ObjectID]bool)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := make([]TaskID, each)
			ps := make([]ObjectID, each)
			for i := range ts {
				ts[i], ps[i] = NewTaskID(), ForPut()
			}
			mu.Lock()
			defer mu.Unlock()
			for i := range ts {
				tasks[ts[i]], puts[ps[i]] = true, true
			}
		}()
	}
	wg.Wait()
	if len(tasks) != goroutines*each || len(puts) != goroutines*each {
		t.Fatalf("%d task IDs and %d put IDs distinct of %d", len(tasks), len(puts), goroutines*each)
	}
	a, b := NewTaskID(), NewTaskID()
	if string(a[:8]) != string(b[:8]) {
		t.Fatal("task IDs of one process have different prefixes")
	}
	if NewWorkerID() == NewWorkerID() || NewNodeID() == NewNodeID() || NewPlacementGroupID() == NewPlacementGroupID() {
		t.Fatal("random IDs repeat")
	}
}
