// Package codec serializes task arguments, return values and stored objects
// for the task engine.
//
// An encoded value is a Payload: a small Header whose first byte names the
// layout, followed by a Body. Keeping the two parts separate lets Encode hand
// out a numeric slice's memory as the Body without copying it; Payload.CopyTo
// writes both parts straight into their final destination (for example a
// shared-memory object buffer).
//
// # Raw layout ('R')
//
// A slice whose element kind is a fixed-size number (uint8, int8, uint16,
// int16, uint32, int32, uint64, int64, int, uint, float32, float64),
// including named slice and element types such as `type Vec []float64`, is
// encoded as an 8-byte header
//
//	'R' | element-kind code | 0 | 0 | element size (uint32, little-endian)
//
// followed by the elements' memory, in host byte order. Encode does not copy
// it: Payload.Body aliases the source slice's backing array, so the source
// must not be modified until the Payload has been consumed. (Types that
// implement cbor.Marshaler or encoding.BinaryMarshaler keep their own
// encoding and use the CBOR layout instead.) Hosts exchanging raw data are
// assumed to share byte order; every platform the engine targets is
// little-endian.
//
// Decode copies raw data into a fresh slice: what it returns never shares
// memory with its input. DecodeView, into a *[]E (or a pointer to a named
// slice type) whose element kind matches, is zero-copy when the body is
// suitably aligned for E: the decoded slice ALIASES the input bytes, and the
// caller must keep those bytes alive and unchanged for as long as the slice
// is used. If the body is misaligned, the elements are copied instead. A raw
// payload with an 8-byte aligned start therefore always views without a
// copy. Empty slices (nil or not) encode with an empty Body and decode to a
// non-nil empty slice.
// Decoding raw data into *any always copies, producing the canonical slice
// type ([]float64, []int32, []byte, ...).
//
// The element kinds must match exactly: []int data does not decode into
// []int64 even though both are 8 bytes wide on 64-bit hosts.
//
// # CBOR layout ('C')
//
// Every other value is encoded as the one-byte header 'C' followed by CBOR
// (RFC 8949) produced by github.com/fxamacker/cbor/v2. As usual for that
// library, only exported struct fields are serialized, types implementing
// cbor.Marshaler / cbor.Unmarshaler control their own encoding, and
// time.Time is written as an RFC 3339 string with nanoseconds under tag 0.
// A value is sent whole or not at all: Encode refuses, with
// ErrUnserializable naming the type and field (e.g. main.Point.x), a value
// holding a struct with an unexported field, which the library would
// silently leave out (see CheckType for what is fine: fields tagged
// `cbor:"-"`, zero-size and blank fields, the promoted fields of embedded
// structs, and types with their own encoding). The verdict is worked out
// once per type; only values held by interfaces are looked at each time.
// Channels, functions and unsafe pointers cannot be serialized, wherever they
// appear; Encode reports them with ErrUnserializable. Strings are not required
// to be valid UTF-8. Cyclic pointer structures are not detected and must not
// be encoded. Decode rejects data nested more than 1024 levels deep.
//
// int, int64, uint64, float64, string, bool and nil are encoded and decoded by
// hand-written code that produces and accepts the same bytes as the library,
// without reflection.
//
// When CBOR data is decoded into *any (or into an any nested in a container),
// integers become int64 (values that do not fit become *big.Int), floats
// become float64, byte strings []byte, text strings string, arrays []any,
// maps map[any]any and tagged times time.Time.
//
// # Errors
//
// Failures wrap one of ErrUnserializable (Encode), ErrTypeMismatch (the data
// is valid but does not fit the target) or ErrCorrupt (malformed or truncated
// data, including errors returned by a cbor.Unmarshaler), so callers can use
// errors.Is. Decode never panics on malformed input.
package codec
