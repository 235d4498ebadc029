package hostres

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrBadSize means a size could not be read as a number of bytes.
var ErrBadSize = errors.New("hostres: bad size")

// units are the suffixes ParseBytes accepts, as Kubernetes reads them:
// binary with an i (Ki, Mi, Gi, Ti, optionally followed by B), decimal
// without (K or KB, M or MB, G or GB, T or TB).
var units = map[string]float64{
	"": 1, "B": 1,
	"K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9, "T": 1e12, "TB": 1e12,
	"KI": 1 << 10, "KIB": 1 << 10, "MI": 1 << 20, "MIB": 1 << 20,
	"GI": 1 << 30, "GIB": 1 << 30, "TI": 1 << 40, "TIB": 1 << 40,
}

// ParseBytes reads a positive size in bytes: a plain number ("1073741824")
// or one with a unit, binary with an i ("512MiB", "2Gi") or decimal
// without ("2G", "1.5GB"); units are case-insensitive. The result is a
// whole number of bytes, rounded down.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToUpper(strings.TrimSpace(t[i:]))
	mult, ok := units[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("%w %q: want bytes, such as 1073741824, 512MiB, 2GiB or 2G", ErrBadSize, s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %q: %w", ErrBadSize, s, err)
	}
	b := math.Floor(v * mult)
	if b < 1 || b >= math.MaxInt64 {
		return 0, fmt.Errorf("%w %q: want from 1 byte to 8 EiB, such as 512MiB", ErrBadSize, s)
	}
	return int64(b), nil
}
