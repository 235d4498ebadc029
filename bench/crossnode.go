package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/rayo-dev/rayo"
)

// Metrics across nodes, measured when the suite runs against a cluster of
// two nodes or more (--address): tasks run on another node than the
// driver's, and an object moves from the driver's node to another.

// FloorLoopbackTCP is the floor the object bandwidth between nodes is
// compared with: one TCP stream over loopback in this process.
const FloorLoopbackTCP = "loopback_tcp_gigabytes"

var (
	byteLen = rayo.Func1(func(b []byte) int { return len(b) })
)

// otherNode is a live node other than the driver's, or an error saying the
// metric needs one.
func otherNode(ctx context.Context) (string, error) {
	nodes, err := rayo.Nodes(ctx)
	if err != nil {
		return "", err
	}
	for _, n := range nodes {
		if n.Alive && n.ID != rayo.NodeID() {
			return n.ID, nil
		}
	}
	return "", errors.New("needs a cluster of two nodes or more (rayo microbenchmark --address)")
}

// cross_node_tasks_sync: one task at a time, each on another node.
func crossNodeTasksSync(e *env) (float64, string, error) {
	other, err := otherNode(e.ctx)
	if err != nil {
		return 0, "", err
	}
	f := noop.Options(rayo.NodeAffinity(other, false))
	v, err := e.rate(1, func() error {
		_, err := rayo.Get(e.ctx, f.Remote())
		return err
	})
	return v, fmt.Sprintf("%s per task on node %s", dur(v), other), err
}

// cross_node_tasks_async: batches of tasks, all on another node.
func crossNodeTasksAsync(e *env) (float64, string, error) {
	other, err := otherNode(e.ctx)
	if err != nil {
		return 0, "", err
	}
	f := noop.Options(rayo.NodeAffinity(other, false))
	refs := make([]rayo.Ref[int], e.cfg.Batch)
	v, err := e.rate(float64(len(refs)), func() error {
		for i := range refs {
			refs[i] = f.Remote()
		}
		_, err := rayo.GetAll(e.ctx, refs)
		return err
	})
	return v, fmt.Sprintf("batches of %d", len(refs)), err
}

// cross_node_object_gigabytes: a []byte of cfg.PutBytes put by the driver
// and read by a task on another node, which pulls it first. Each round
// puts a new object, so each is pulled.
func crossNodeObjectGigabytes(e *env) (float64, string, error) {
	other, err := otherNode(e.ctx)
	if err != nil {
		return 0, "", err
	}
	data := make([]byte, e.cfg.PutBytes)
	for i := range data {
		data[i] = byte(i)
	}
	f := byteLen.Options(rayo.NodeAffinity(other, false))
	var moved time.Duration
	rounds := 0
	deadline := time.Now().Add(e.cfg.Duration)
	for rounds < 2 || time.Now().Before(deadline) {
		r := rayo.Put(e.ctx, data)
		if err := r.Err(); err != nil {
			return 0, "", err
		}
		start := time.Now()
		n, err := rayo.Get(e.ctx, f.Remote(r))
		took := time.Since(start)
		r.Release()
		if err != nil {
			return 0, "", err
		}
		if n != len(data) {
			return 0, "", fmt.Errorf("the other node read %d bytes of %d", n, len(data))
		}
		if rounds > 0 { // the first round starts the job's worker there
			moved += took
		}
		rounds++
	}
	v := float64(len(data)) * float64(rounds-1) / 1e9 / moved.Seconds()
	return v, fmt.Sprintf("%s per %s object (pull and task)", dur(v/(float64(len(data))/1e9)), size(len(data))), nil
}

// loopback_tcp_gigabytes: one TCP stream over loopback, written in 4 MiB
// pieces and read into a buffer: the floor for moving objects.
func loopbackTCPGigabytes(e *env) (float64, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, "", err
	}
	defer ln.Close()
	total := int64(e.cfg.PutBytes)
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 4<<20)
		for {
			if _, err := io.ReadFull(c, buf[:8]); err != nil {
				done <- nil
				return
			}
			if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, total), buf); err != nil {
				done <- err
				return
			}
			if _, err := c.Write([]byte{1}); err != nil {
				done <- err
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, "", err
	}
	chunk := make([]byte, 4<<20)
	v, err := e.rate(float64(total)/1e9, func() error {
		if _, err := c.Write(make([]byte, 8)); err != nil {
			return err
		}
		for sent := int64(0); sent < total; {
			n := min(int64(len(chunk)), total-sent)
			if _, err := c.Write(chunk[:n]); err != nil {
				return err
			}
			sent += n
		}
		var ack [1]byte
		_, err := io.ReadFull(c, ack[:])
		return err
	})
	_ = c.Close()
	if rerr := <-done; err == nil {
		err = rerr
	}
	return v, fmt.Sprintf("%s per %s over one stream", dur(v/(float64(total)/1e9)), size(int(total))), err
}
