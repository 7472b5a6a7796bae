package pod

import "context"

// undo collects what a verb made, step by step, so that one deferred call
// takes it all back if a later step fails:
//
//	var u undo
//	defer u.runIfFailed(ctx, &err)
//	... make X; u.push(func(ctx context.Context) { remove X })
//	... record the result; u.commit()
//
// Steps run in reverse order, with a context that kubelet giving up does
// not cancel: a half-made VM or network must not be left behind.
type undo []func(ctx context.Context)

func (u *undo) push(step func(ctx context.Context)) { *u = append(*u, step) }

// commit keeps what was made: the verb's result is recorded, and a later
// error (the caller gave up meanwhile) must not take it back.
func (u *undo) commit() { *u = nil }

// runIfFailed is deferred (through a pointer, so that it sees the steps
// pushed after the defer statement).
func (u *undo) runIfFailed(ctx context.Context, err *error) {
	if *err == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i](ctx)
	}
}
