package rayletclient

import "encoding/binary"

// A Go worker captures its own output, so that a task that prints nothing
// costs no write: the raylet starts it with stdout and stderr on its
// capture pipe, and EnvOutput names three more descriptors, "R,W,L": the
// capture pipe's read and write ends, and the label page. The worker moves
// fd 1 and 2 onto the capture pipe and forwards what comes through it to
// its original stdout, the raylet's pipe, with a task mark before the
// first bytes of each task (AppendTaskMark). A worker that does not
// (a shell script) writes to the raylet's pipe directly.
//
// The label page is a small shared file that says whose output the worker
// would label next: the running task's name and TaskLogKey, written on
// every task start. The raylet reads it when the worker has died, to label
// what was left in the capture pipe (the lines a task printed just before
// os.Exit or a crash), and, for the flags, when it answers for a task's
// log.
const EnvOutput = "RAYO_OUTPUT"

// The label page's size and its flags.
const (
	LabelSize = 4096
	// LabelCapturing says the worker captures its output: a task whose
	// mark did not come printed nothing.
	LabelCapturing = 1 << 0
	// LabelConcurrent says the worker runs calls at once (an actor with
	// MaxConcurrency > 1): their marks carry no key, and their lines are
	// found by time.
	LabelConcurrent = 1 << 1
)

// The layout of the label page: flags at 0, the key at 8, the name's
// length at 16 and the name from 18.
const (
	labelFlags = 0
	labelKey   = 8
	labelLen   = 16
	labelName  = 18
)

// PutLabel writes the running task's name and key to the page (of
// LabelSize bytes); a longer name is cut.
func PutLabel(page []byte, name string, key uint64) {
	binary.LittleEndian.PutUint64(page[labelKey:], key)
	n := copy(page[labelName:LabelSize], name)
	binary.LittleEndian.PutUint16(page[labelLen:], uint16(n))
}

// SetLabelFlags sets flags on the page.
func SetLabelFlags(page []byte, flags byte) { page[labelFlags] |= flags }

// ReadLabel reads a page written by PutLabel and SetLabelFlags; a short
// or malformed page reads as no label.
func ReadLabel(page []byte) (flags byte, name string, key uint64) {
	if len(page) < labelName {
		return 0, "", 0
	}
	n := int(binary.LittleEndian.Uint16(page[labelLen:]))
	if labelName+n > len(page) {
		return page[labelFlags], "", 0
	}
	return page[labelFlags], string(page[labelName : labelName+n]), binary.LittleEndian.Uint64(page[labelKey:])
}
