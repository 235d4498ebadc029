package hostres

import (
	"errors"
	"testing"
)

func TestParseBytes(t *testing.T) {
	good := map[string]int64{
		"1073741824": 1 << 30,
		"512MiB":     512 << 20,
		"2GiB":       2 << 30,
		"2gi":        2 << 30,
		"2G":         2e9,
		"1.5GB":      1.5e9,
		"64 MiB":     64 << 20,
		"100k":       100e3,
		"1TiB":       1 << 40,
		" 42B ":      42,
	}
	for in, want := range good {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "2XB", "-5", "0", "0.1", "1.2.3G", "MiB", "99999999999TiB"} {
		if got, err := ParseBytes(in); !errors.Is(err, ErrBadSize) {
			t.Errorf("ParseBytes(%q) = %d, %v; want ErrBadSize", in, got, err)
		}
	}
}
