package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints results as a table: metric, value, unit, ratio to the
// floor, DESIGN target and whether this run met it, and a note.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tvalue\tunit\tratio\ttarget (DESIGN §8)\tmet\tnote")
	for _, r := range results {
		val, ratio, met := "ERROR", "", ""
		note := r.Note
		if r.Err != "" {
			note = r.Err
		} else {
			val = number(r.Value)
			if r.Ratio > 0 {
				ratio = fmt.Sprintf("%.3g", r.Ratio)
			}
		}
		if r.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*r.Met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, val, r.Unit, ratio, r.Target, met, note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "ratio to floor: per-second figure ÷ unix_socket_round_trips; GB/s ÷ memcpy_gigabytes.")
	return err
}

// WriteJSON prints results as a JSON array of {"name","value","unit"}
// objects, with "ratio" where there is one and "error" for a failed metric.
func WriteJSON(w io.Writer, results []Result) error {
	if results == nil {
		results = []Result{}
	}
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// describe is a result in one line, for progress.
func describe(r Result) string {
	if r.Err != "" {
		return "ERROR: " + r.Err
	}
	s := number(r.Value) + " " + r.Unit
	if r.Note != "" {
		s += "  (" + r.Note + ")"
	}
	return s
}

// number formats v with thousands separators, and decimals only for small
// figures.
func number(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Sprint(v)
	case math.Abs(v) < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case math.Abs(v) < 1000:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// perCall is the time of one call at a rate of perSec.
func perCall(perSec float64) string {
	return dur(perSec) + " per call"
}

// dur is the period of a rate, rounded for reading.
func dur(perSec float64) string {
	if perSec <= 0 {
		return "∞"
	}
	d := time.Duration(float64(time.Second) / perSec)
	switch {
	case d < time.Microsecond:
		return d.String()
	case d < time.Millisecond:
		return fmt.Sprintf("%.2fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Millisecond).String()
}

// size formats a byte count.
func size(n int) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Min(xs)
}
