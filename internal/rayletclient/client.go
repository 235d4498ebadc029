// Package rayletclient is the client side of a raylet: what a worker or a
// driver uses to reach its node's raylet (and other nodes' raylets), and
// the environment a raylet starts its workers with. It depends on neither
// the raylet nor the owner's runtime, whose RayletClient it implements.
package rayletclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Environment variables a worker process is started with.
const (
	EnvWorkerID   = "RAYO_WORKER_ID"
	EnvRaylet     = "RAYO_RAYLET"
	EnvStore      = "RAYO_STORE"
	EnvSessionDir = "RAYO_SESSION_DIR"
	EnvJob        = "RAYO_JOB"
	// In a cluster of several nodes:
	EnvListen   = "RAYO_LISTEN"    // where the worker serves other nodes (HOST:0)
	EnvToken    = "RAYO_TOKEN"     // the cluster's secret
	EnvNode     = "RAYO_NODE"      // the node's name in endpoints
	EnvNodeAddr = "RAYO_NODE_ADDR" // the raylet's TCP address
)

// NameMarker starts the line a worker writes to its own output when a
// task starts, to say whose lines follow (AppendTaskMark); the raylet
// strips it.
const NameMarker = "\x00rayo-task:"

// AppendTaskMark appends to b the line a worker writes to its output as a
// task starts: the marker, the task's name and, when key is not 0, a NUL
// and the attempt's TaskLogKey in hex.
func AppendTaskMark(b []byte, name string, key uint64) []byte {
	b = append(b, NameMarker...)
	b = append(b, name...)
	if key != 0 {
		b = append(b, 0)
		b = strconv.AppendUint(b, key, 16)
	}
	return append(b, '\n')
}

// ParseTaskMark reads what follows NameMarker in a line: the task's name
// and its attempt's key (0: none given, or not hex). It works on the
// bytes the raylet scanned, so that a mark costs no allocation.
func ParseTaskMark(s []byte) (name []byte, key uint64) {
	name, hex, ok := bytes.Cut(s, []byte{0})
	if !ok || len(hex) == 0 || len(hex) > 16 {
		return name, 0
	}
	for _, c := range hex {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		default:
			return name, 0
		}
		key = key<<4 | uint64(d)
	}
	return name, key
}

// TaskLogKey names one attempt of a task in its worker's output: a hash
// of the task's ID and the attempt (never 0).
func TaskLogKey(taskID []byte, attempt int32) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(taskID)
	_, _ = h.Write([]byte{byte(attempt >> 24), byte(attempt >> 16), byte(attempt >> 8), byte(attempt)})
	return max(h.Sum64(), 1)
}

// WorkerSocket is where the worker of process pid listens in the session
// folder sessionDir; its raylet removes it when the worker is gone.
func WorkerSocket(sessionDir string, pid int) string {
	return filepath.Join(sessionDir, fmt.Sprintf("w-%d.sock", pid))
}

// Client reaches a raylet over its socket; workers and drivers use it.
type Client struct {
	Conn *rpc.Conn
}

// RequestLease asks for a worker.
func (c *Client) RequestLease(req *pb.RequestLease, cb func(*pb.LeaseReply, error)) {
	c.Conn.Go(rpc.MRequestLease, req, func(body []byte, err error) {
		if err != nil {
			cb(nil, err)
			return
		}
		r := &pb.LeaseReply{}
		if err := rpc.Decode(body, r); err != nil {
			cb(nil, fmt.Errorf("raylet: lease reply: %w", err))
			return
		}
		cb(r, nil)
	})
}

// ReturnLease gives a worker back.
func (c *Client) ReturnLease(req *pb.ReturnLease) { _ = c.Conn.Notify(rpc.MReturnLease, req) }

// SetBlocked tells the raylet this worker is blocked (or not).
func (c *Client) SetBlocked(w ids.WorkerID, blocked bool) {
	_ = c.Conn.Notify(rpc.MBlocked, &pb.BlockedChange{WorkerId: w[:], Blocked: blocked})
}

// CreateObject reserves space in the store for an object owned by the
// process at the endpoint owner. An object already sealed there is not
// created again: the error is an *objstore.ExistingError saying where it
// is.
func (c *Client) CreateObject(ctx context.Context, id ids.ObjectID, size int64, owner string) (int64, error) {
	r := &pb.CreateObjectReply{}
	if err := c.Conn.Call(ctx, rpc.MCreateObject, &pb.CreateObject{ObjectId: id[:], Size: size, OwnerAddr: owner}, r); err != nil {
		if ctx.Err() != nil {
			// It may still be waiting for room: abandon it (or free it).
			c.FreeObjects([]ids.ObjectID{id})
		}
		return 0, fmt.Errorf("raylet: create object: %w", err)
	}
	if r.Exists {
		// Sealed there already: a task run again, whose result that is.
		return 0, &objstore.ExistingError{ID: id, Offset: r.Offset, Size: r.Size}
	}
	if r.Error != "" {
		if r.Full {
			return 0, storeError(r.Error)
		}
		return 0, errors.New(r.Error)
	}
	return r.Offset, nil
}

// PinObject keeps a sealed object of the node's store in memory (not
// spilled, moved or freed) until UnpinObjects, restoring it first if it
// was spilled, and returns its offset. It fails with objstore.ErrObjectLost
// when the node does not have it.
func (c *Client) PinObject(ctx context.Context, id ids.ObjectID) (int64, error) {
	r := &pb.CreateObjectReply{}
	if err := c.Conn.Call(ctx, rpc.MPinObject, &pb.CreateObject{ObjectId: id[:]}, r); err != nil {
		if ctx.Err() != nil {
			// It may still be restoring: give it up (or drop it).
			c.UnpinObjects([]ids.ObjectID{id})
		}
		return 0, fmt.Errorf("raylet: pin object: %w", err)
	}
	if r.Error != "" {
		switch {
		case r.Lost:
			return 0, fmt.Errorf("%w: %s", objstore.ErrObjectLost, r.Error)
		case r.Full:
			return 0, storeError(r.Error)
		}
		return 0, errors.New(r.Error)
	}
	return r.Offset, nil
}

// UnpinObjects drops pins PinObject took.
func (c *Client) UnpinObjects(list []ids.ObjectID) {
	_ = c.Conn.Notify(rpc.MUnpinObjects, idList(list))
}

// storeError rebuilds a store's lack of room from a reply, which carries
// only its text: an object larger than the whole store matches
// objstore.ErrTooLarge (waiting or collecting cannot help it), any other
// objstore.ErrFull.
func storeError(msg string) error {
	if strings.Contains(msg, objstore.ErrTooLarge.Error()) {
		return &replyError{msg: msg, is: objstore.ErrTooLarge}
	}
	return &replyError{msg: msg, is: objstore.ErrFull}
}

// replyError is an error received as text that matches the sentinel it
// was made from.
type replyError struct {
	msg string
	is  error
}

func (e *replyError) Error() string { return e.msg }

func (e *replyError) Unwrap() error { return e.is }

// SealObjects makes created objects readable.
func (c *Client) SealObjects(list []ids.ObjectID) {
	_ = c.Conn.Notify(rpc.MSealObjects, idList(list))
}

// FreeObjects deletes objects from the store.
func (c *Client) FreeObjects(list []ids.ObjectID) {
	_ = c.Conn.Notify(rpc.MFreeObjects, idList(list))
}

func idList(list []ids.ObjectID) *pb.ObjectIDs {
	m := &pb.ObjectIDs{Ids: make([][]byte, len(list))}
	for i := range list {
		m.Ids[i] = list[i][:]
	}
	return m
}

// RegisterActorName names an actor in the control store.
func (c *Client) RegisterActorName(ctx context.Context, a *pb.ActorName) error {
	r := &pb.ActorNameReply{}
	if err := c.Conn.Call(ctx, rpc.MRegisterActorName, a, r); err != nil {
		return fmt.Errorf("raylet: register actor name: %w", err)
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	return nil
}

// LookupActorName finds a named actor in the control store.
func (c *Client) LookupActorName(ctx context.Context, namespace, name string) (*pb.ActorName, error) {
	r := &pb.ActorNameReply{}
	if err := c.Conn.Call(ctx, rpc.MLookupActorName, &pb.ActorName{Namespace: namespace, Name: name}, r); err != nil {
		return nil, fmt.Errorf("raylet: look up actor name: %w", err)
	}
	if r.Error != "" {
		return nil, errors.New(r.Error)
	}
	return r.Actor, nil
}

// ActorAlive records where a detached actor runs.
func (c *Client) ActorAlive(actorID []byte, workerAddr string) {
	_ = c.Conn.Notify(rpc.MActorAlive, &pb.ActorName{ActorId: actorID, WorkerAddr: workerAddr})
}

// PullObject asks the raylet to copy an object from another node's store
// into its own, pinned for this process until UnpinObjects, and returns
// where it is there.
func (c *Client) PullObject(ctx context.Context, id ids.ObjectID, from string, size int64) (int64, error) {
	r := &pb.CreateObjectReply{}
	if err := c.Conn.Call(ctx, rpc.MPullObject, &pb.PullObject{ObjectId: id[:], From: from, Size: size}, r); err != nil {
		return 0, fmt.Errorf("raylet: pull object: %w", err)
	}
	if r.Error != "" {
		if r.Full {
			return 0, storeError(r.Error)
		}
		if r.Lost {
			return 0, fmt.Errorf("%w: %s", objstore.ErrObjectLost, r.Error)
		}
		return 0, errors.New(r.Error)
	}
	return r.Offset, nil
}

// Close closes the connection to the raylet.
func (c *Client) Close() error { return c.Conn.Close() }

// ReportEvents sends task and actor events to the raylet.
func (c *Client) ReportEvents(b *pb.StateEvents) { _ = c.Conn.Notify(rpc.MReportEvents, b) }

// Dial connects to the raylet at addr (TCP, HOST:PORT) and presents the
// cluster's token: how an owner reaches other nodes' raylets. What the
// raylet pushes goes to h.
func Dial(ctx context.Context, addr, token string, h rpc.Handler) (*Client, error) {
	c, err := rpc.DialToken(ctx, "tcp:"+addr, token, h)
	if err != nil {
		return nil, err
	}
	return &Client{Conn: c}, nil
}

// PlacementGroup passes a placement group request to the raylet.
func (c *Client) PlacementGroup(ctx context.Context, req *pb.PlacementGroupRequest) (*pb.PlacementGroupReply, error) {
	r := &pb.PlacementGroupReply{}
	if err := c.Conn.Call(ctx, rpc.MPlacementGroup, req, r); err != nil {
		return nil, fmt.Errorf("raylet: placement group: %w", err)
	}
	return r, nil
}
