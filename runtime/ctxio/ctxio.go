// Package ctxio ends long copies when their context ends: io.Copy takes no
// context, so a reader that checks it between reads bounds a copy of a
// large disk or archive by the caller's deadline.
package ctxio

import (
	"context"
	"io"
)

// Reader returns r that fails with ctx's error once ctx is done.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx: ctx, r: r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
