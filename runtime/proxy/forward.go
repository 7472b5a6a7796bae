package proxy

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// unary is the shape of every generated unary client method.
type unary[Req, Resp proto.Message] func(context.Context, Req, ...grpc.CallOption) (Resp, error)

// forward sends req to runtime b: IDs and image names stripped on the way
// in, prefixed on the way out.
func forward[Req, Resp proto.Message](ctx context.Context, b *backend, req Req, call unary[Req, Resp]) (Resp, error) {
	b.inbound(req)
	resp, err := call(ctx, req)
	if err != nil {
		var zero Resp
		return zero, b.wrap(err)
	}
	b.answered()
	b.outbound(resp)
	return resp, nil
}

// forwardStatus is forward for the status calls kubelet polls
// (PodSandboxStatus, ContainerStatus): a named runtime that is briefly down
// is answered for by its last answer to the same request, as in listAll.
// kubelet's `logs -f`, for one, ends when a container's status fails.
func forwardStatus[Req, Resp proto.Message](ctx context.Context, p *Proxy, b *backend, what string, req Req, call unary[Req, Resp]) (Resp, error) {
	key := cacheKey(what, req)
	resp, err := forward(ctx, b, req, call)
	if err == nil {
		if !b.primary {
			b.keepList(key, proto.Clone(resp))
		}
		return resp, nil
	}
	if last, ok := b.lastList(key, p.downGrace, err); ok {
		p.log.Debug(what+": runtime down: its last answer stands in", "runtime", b.name, "err", err)
		return proto.Clone(last.(proto.Message)).(Resp), nil
	}
	return resp, err
}

// listAll sends a copy of req to every runtime and concatenates the items
// of the answers, primary first. A named runtime that is unavailable but
// answered less than DownGrace ago is represented by its last answer to
// the same request (Options.DownGrace says why).
func listAll[Req, Resp proto.Message, Item any](ctx context.Context, p *Proxy, what string, req Req,
	call func(b *backend) unary[Req, Resp], items func(Resp) []Item) ([]Item, error) {
	key := cacheKey(what, req)
	lists, err := fanOut(ctx, p, what, func(ctx context.Context, b *backend) ([]Item, error) {
		r := clone(req)
		b.inbound(r)
		resp, err := call(b)(ctx, r)
		if err != nil {
			if last, ok := b.lastList(key, p.downGrace, err); ok {
				p.log.Debug(what+": runtime down: its last answer stands in", "runtime", b.name, "err", err)
				return last.([]Item), nil
			}
			return nil, err
		}
		b.answered()
		b.outbound(resp)
		got := items(resp)
		if !b.primary {
			b.keepList(key, got)
		}
		return got, nil
	})
	if err != nil {
		return nil, err
	}
	var out []Item
	for _, l := range lists {
		out = append(out, l...)
	}
	return out, nil
}

// cacheKey names a list request: the method and the request's bytes.
func cacheKey(what string, req proto.Message) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	return what + "\x00" + string(b)
}

// opener is the shape of every generated server-streaming client method.
type opener[Req proto.Message, M any] func(context.Context, Req, ...grpc.CallOption) (grpc.ServerStreamingClient[M], error)

// relay copies the streams of runtimes bs, one after the other, to the
// caller. The primary's errors end the call; another runtime's error is
// logged and the relay goes on with the next runtime.
func relay[Req proto.Message, M any](ctx context.Context, p *Proxy, what string, bs []*backend, req Req,
	open func(b *backend) opener[Req, M], send func(*M) error) error {
	for _, b := range bs {
		err := relayOne(ctx, b, clone(req), open(b), send)
		var sendErr sendError
		switch {
		case err == nil:
		case errors.As(err, &sendErr):
			return sendErr.err
		case b.primary || len(bs) == 1:
			return b.wrap(err)
		default:
			p.log.Warn(what+": runtime left out of the result", "runtime", b.name, "err", err)
		}
	}
	return nil
}

// sendError marks a failure to send to the caller, as opposed to a
// failure of the runtime.
type sendError struct{ err error }

func (e sendError) Error() string { return e.err.Error() }

func relayOne[Req proto.Message, M any](ctx context.Context, b *backend, req Req, open opener[Req, M], send func(*M) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.inbound(req)
	s, err := open(ctx, req)
	if err != nil {
		return err
	}
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		b.outbound(any(m).(proto.Message))
		if err := send(m); err != nil {
			return sendError{err}
		}
	}
}
