package rpc

import "context"

// The client side of the table in methods.go: a call of the wrong types
// does not compile, as a Mux handler of the wrong types does not.

// Call sends a request of r on c and waits for its reply.
func Call[Q, R any, PQ message[Q], PR message[R]](ctx context.Context, c *Conn, r Request[Q, R], req PQ) (PR, error) {
	rep := PR(new(R))
	if err := c.Call(ctx, r.Method, req, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// Go sends a request of r on c and calls cb with its reply, decoded, or
// the error, on c's read loop.
func Go[Q, R any, PQ message[Q], PR message[R]](c *Conn, r Request[Q, R], req PQ, cb func(PR, error)) {
	c.Go(r.Method, req, func(body []byte, err error) {
		if err != nil {
			cb(nil, err)
			return
		}
		rep := PR(new(R))
		if err := Decode(body, rep); err != nil {
			cb(nil, err)
			return
		}
		cb(rep, nil)
	})
}

// Notify sends a notification of n on c.
func Notify[Q any, PQ message[Q]](c *Conn, n Notice[Q], msg PQ) error {
	return c.Notify(n.Method, msg)
}
