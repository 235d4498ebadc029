package rayletclient

import (
	"strings"
	"testing"
)

func TestTaskMarkRoundTrip(t *testing.T) {
	key := TaskLogKey([]byte("task-id-bytes"), 2)
	if key == 0 || key == TaskLogKey([]byte("task-id-bytes"), 3) || key == TaskLogKey([]byte("task-id-byteZ"), 2) {
		t.Fatalf("keys of different attempts collide or are 0: %x", key)
	}
	for _, c := range []struct {
		name string
		key  uint64
	}{{"Talker.Say", key}, {"main/x.go:12", 0}, {"", 1}} {
		line := string(AppendTaskMark(nil, c.name, c.key))
		if !strings.HasPrefix(line, NameMarker) || !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
			t.Fatalf("mark %q is not one line starting with the marker", line)
		}
		name, k := ParseTaskMark([]byte(strings.TrimSuffix(line[len(NameMarker):], "\n")))
		if string(name) != c.name || k != c.key {
			t.Errorf("%q, %x came back as %q, %x", c.name, c.key, name, k)
		}
	}
}

func TestParseTaskMarkRefusesABadKey(t *testing.T) {
	for _, s := range []string{"f\x00", "f\x00xyz", "f\x00ABC", "f\x0012345678901234567", "f"} {
		name, k := ParseTaskMark([]byte(s))
		if string(name) != "f" || k != 0 {
			t.Errorf("%q: got %q, %x; want \"f\", 0", s, name, k)
		}
	}
}
