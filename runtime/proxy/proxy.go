package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Proxy serves the CRI RuntimeService and ImageService and forwards each
// call to the runtime that owns the pod, container or image.
type Proxy struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	log      *slog.Logger
	primary  *backend
	all      []*backend          // primary first, then named runtimes in config order
	byName   map[string]*backend // named runtimes
	handlers map[string]*backend // runtime_handler -> runtime
	targets  map[string]*backend // kubernetes.io/target-runtime value -> runtime
	// byAnnotation is Config.AnnotationRouting.
	byAnnotation bool

	downGrace time.Duration // see Options.DownGrace

	mu         sync.Mutex
	lastConfig *runtimeapi.UpdateRuntimeConfigRequest // replayed to runtimes that come back
	stop       chan struct{}
	wg         sync.WaitGroup
}

// Options tune a Proxy; the zero value is fine.
type Options struct {
	// MaxBackoff caps the reconnection backoff to a runtime that is down
	// (default 5s).
	MaxBackoff time.Duration
	// DownGrace is how long after its last answer a runtime that is down
	// is represented in lists by that answer (default 2m). A list without
	// a runtime's pods tells kubelet they are gone: it then tries to
	// recreate their sandboxes and counts a restart of each, which a
	// restart of podvisor (a DaemonSet rollout) must not cause. Failing
	// the list instead would stall kubelet's relist, and with it the
	// rollout of podvisor's own pod. A runtime down for longer is left out.
	DownGrace time.Duration
}

// New validates cfg and creates the client connections. It does not wait
// for any runtime: a runtime that is down is reconnected with backoff.
func New(cfg Config, opts Options, log *slog.Logger) (*Proxy, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.DownGrace <= 0 {
		opts.DownGrace = 2 * time.Minute
	}
	p := &Proxy{
		log:      log,
		byName:   map[string]*backend{},
		handlers: map[string]*backend{},
		targets:  map[string]*backend{},
		stop:     make(chan struct{}),

		downGrace:    opts.DownGrace,
		byAnnotation: *cfg.AnnotationRouting,
	}
	p.primary = &backend{name: "primary", endpoint: cfg.Primary, primary: true}
	p.all = append(p.all, p.primary)
	for _, r := range cfg.Runtimes {
		b := &backend{
			name:        r.Name,
			endpoint:    r.Endpoint,
			idPrefix:    r.Name + IDSeparator,
			imagePrefix: r.TargetRuntime + "/",
			target:      r.TargetRuntime,
			keepDomain:  *r.KeepImageDomain,
			prefixes:    r.ImagePrefixes,
		}
		p.all = append(p.all, b)
		p.byName[r.Name] = b
		p.targets[r.TargetRuntime] = b
		for _, h := range r.Handlers {
			p.handlers[h] = b
		}
	}
	for _, b := range p.all {
		if err := dial(b, opts.MaxBackoff); err != nil {
			p.Close()
			return nil, err
		}
		b.conn.Connect()
		p.wg.Add(1)
		go p.watch(b)
	}
	return p, nil
}

// Register adds the proxy's services to a gRPC server.
func (p *Proxy) Register(s *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(s, p)
	runtimeapi.RegisterImageServiceServer(s, p)
}

// Close closes the client connections.
func (p *Proxy) Close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	for _, b := range p.all {
		if b.conn != nil {
			b.conn.Close()
		}
	}
	p.wg.Wait()
}

// Routes describes the routing table, for the start-up log.
func (p *Proxy) Routes() string {
	var parts []string
	parts = append(parts, "primary="+p.primary.endpoint)
	for _, b := range p.all[1:] {
		annotation := TargetRuntimeAnnotation + "=" + b.target
		if !p.byAnnotation {
			annotation = "routing by " + TargetRuntimeAnnotation + " off"
		}
		parts = append(parts, fmt.Sprintf("%s=%s (handlers %s; annotation %s; images %s*; IDs %s*)",
			b.name, b.endpoint, strings.Join(p.handlersOf(b), ","), annotation, b.imagePrefix, b.idPrefix))
	}
	return strings.Join(parts, "; ")
}

// forSandbox picks the runtime for a new pod: the runtime_handler when the
// config maps it, else the kubernetes.io/target-runtime annotation (when
// annotation routing is on), else the primary.
func (p *Proxy) forSandbox(cfg *runtimeapi.PodSandboxConfig, handler string) (*backend, error) {
	if b, ok := p.handlers[handler]; ok {
		return b, nil
	}
	v, ok := cfg.GetAnnotations()[TargetRuntimeAnnotation]
	if !ok || v == "" {
		return p.primary, nil
	}
	b, ok := p.targets[v]
	if !ok {
		b, ok = p.byName[v]
	}
	switch {
	case ok && p.byAnnotation:
		return b, nil
	case ok:
		return nil, status.Errorf(codes.InvalidArgument, "annotation %s=%q: routing by this annotation is off on this node (criproxy --annotation-routing=false); set the pod's runtimeClassName to a RuntimeClass whose handler is one of: %s",
			TargetRuntimeAnnotation, v, strings.Join(p.handlersOf(b), ", "))
	case !p.byAnnotation:
		return p.primary, nil // not ours to refuse: the annotation means nothing here
	}
	return nil, status.Errorf(codes.InvalidArgument, "annotation %s=%q names no runtime of this proxy; accepted: %s",
		TargetRuntimeAnnotation, v, strings.Join(p.targetNames(), ", "))
}

// handlersOf lists the RuntimeClass handlers routed to b, sorted.
func (p *Proxy) handlersOf(b *backend) []string {
	var hs []string
	for h, hb := range p.handlers {
		if hb == b {
			hs = append(hs, h)
		}
	}
	sort.Strings(hs)
	return hs
}

func (p *Proxy) targetNames() []string {
	var out []string
	for t, b := range p.targets {
		out = append(out, t)
		if b.name != t {
			out = append(out, b.name)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return []string{"none (no runtime besides the primary is configured)"}
	}
	return out
}

// forID picks the runtime owning a sandbox or container ID by its prefix.
func (p *Proxy) forID(id string) *backend {
	if name, _, ok := strings.Cut(id, IDSeparator); ok {
		if b, ok := p.byName[name]; ok {
			return b
		}
	}
	return p.primary
}

// forImage picks the runtime owning an image: the spec's runtime_handler
// when mapped, else the image domain ("virtlet.cloud/..."), else the
// primary.
func (p *Proxy) forImage(spec *runtimeapi.ImageSpec) *backend {
	if b, ok := p.handlers[spec.GetRuntimeHandler()]; ok {
		return b
	}
	name := spec.GetImage()
	if name == "" {
		name = spec.GetUserSpecifiedImage()
	}
	if domain, _, ok := strings.Cut(name, "/"); ok {
		if b, ok := p.targets[domain]; ok {
			return b
		}
	}
	for _, b := range p.all[1:] {
		for _, pfx := range b.prefixes {
			if strings.HasPrefix(name, pfx) {
				return b
			}
		}
	}
	return p.primary
}

// watch replays the last UpdateRuntimeConfig to a runtime each time its
// connection becomes ready again, and logs its state changes.
func (p *Proxy) watch(b *backend) {
	defer p.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-p.stop
		cancel()
	}()
	state := b.conn.GetState()
	for b.conn.WaitForStateChange(ctx, state) {
		next := b.conn.GetState()
		p.log.Debug("runtime connection state", "runtime", b.name, "from", state.String(), "to", next.String())
		if next == connectivity.Ready {
			p.log.Info("runtime connected", "runtime", b.name, "endpoint", b.endpoint)
			p.replayConfig(ctx, b)
		}
		if next == connectivity.TransientFailure && state != connectivity.TransientFailure {
			p.log.Warn("runtime unreachable; reconnecting with backoff", "runtime", b.name, "endpoint", b.endpoint)
		}
		if next == connectivity.Idle {
			// A lost connection leaves the channel idle until the next
			// call; reconnect now so the runtime's return is noticed.
			b.conn.Connect()
		}
		state = next
	}
}

func (p *Proxy) replayConfig(ctx context.Context, b *backend) {
	p.mu.Lock()
	req := p.lastConfig
	p.mu.Unlock()
	if req == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := b.rt.UpdateRuntimeConfig(ctx, proto.Clone(req).(*runtimeapi.UpdateRuntimeConfigRequest)); err != nil {
		p.log.Warn("replaying UpdateRuntimeConfig", "runtime", b.name, "err", err)
	}
}

// fanOut calls fn for every runtime concurrently and returns the results
// in runtime order. An error of the primary fails the call; an error of
// another runtime is logged and its results are left out, so that a
// runtime that is down does not hide the others' pods from kubelet
// (listAll first serves a briefly down runtime's last answer).
func fanOut[T any](ctx context.Context, p *Proxy, what string, fn func(ctx context.Context, b *backend) (T, error)) ([]T, error) {
	type result struct {
		v   T
		err error
	}
	res := make([]result, len(p.all))
	var wg sync.WaitGroup
	for i, b := range p.all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := fn(ctx, b)
			res[i] = result{v, err}
		}()
	}
	wg.Wait()
	var out []T
	for i, r := range res {
		b := p.all[i]
		if r.err != nil {
			if b.primary {
				return nil, b.wrap(r.err)
			}
			if status.Code(r.err) != codes.Unimplemented {
				p.log.Warn(what+": runtime left out of the result", "runtime", b.name, "err", r.err)
			}
			continue
		}
		out = append(out, r.v)
	}
	return out, nil
}

// clone copies a request so that each runtime of a fan-out gets its own.
func clone[T proto.Message](m T) T {
	return proto.Clone(m).(T)
}
