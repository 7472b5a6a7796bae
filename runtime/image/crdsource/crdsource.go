// Package crdsource reads VirtletImageMapping objects (group virtlet.k8s,
// version v1) and keeps them current with a list+watch (an
// apiclient.Watcher, podvisor's own small API client), as an
// image.MappingSource. It lives apart from package image so that only the
// daemon links the API client.
package crdsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/podvisor/podvisor/runtime/image"
	"github.com/podvisor/podvisor/runtime/kube/apiclient"
)

// GroupVersionResource names an API resource.
type GroupVersionResource struct {
	Group, Version, Resource string
}

// GVR is the VirtletImageMapping resource.
var GVR = GroupVersionResource{Group: "virtlet.k8s", Version: "v1", Resource: "virtletimagemappings"}

// Kind and ListKind of the resource, for fake API servers.
const (
	Kind     = "VirtletImageMapping"
	ListKind = "VirtletImageMappingList"
)

// DefaultNotInstalledMaxBackOff caps the wait between lists while the
// VirtletImageMapping CRD is not installed.
const DefaultNotInstalledMaxBackOff = 5 * time.Minute

// Options configure a Source.
type Options struct {
	// Namespace is the namespace watched; "" watches all namespaces.
	Namespace string
	// Logger receives list and watch failures, which are retried with
	// back-off (0.5 s growing to 30 s, each wait randomized by ±50 %);
	// nil means slog.Default(). A missing CRD is logged once at info
	// level, then its retries at debug level only.
	Logger *slog.Logger
	// NotInstalledMaxBackOff caps the back-off between lists while the
	// CRD is not installed (the list answers 404); it grows from 0.5 s.
	// 0 means DefaultNotInstalledMaxBackOff.
	NotInstalledMaxBackOff time.Duration
}

// Source is an image.MappingSource backed by a list+watch.
type Source struct {
	w         *apiclient.Watcher
	namespace string
	log       *slog.Logger
	stop      context.CancelFunc
	stopped   context.Context // done once Close is called
	done      chan struct{}   // closed when the Watcher has returned

	// notInstalled is set while lists answer 404. Only the Watcher's
	// goroutine uses it (in onError and Replace).
	notInstalled bool

	mu     sync.Mutex
	objs   map[string]*entry   // by namespace/name
	sorted []image.NamedConfig // nil when objs changed since it was made
}

// entry is one object, parsed when it arrived (again only when its
// resourceVersion changed).
type entry struct {
	uid, resourceVersion string
	nc                   image.NamedConfig
}

// New starts watching VirtletImageMappings through client and returns at
// once. The cache fills in the background: until the first list arrives
// (WaitForSync), Mappings returns what is cached, possibly nothing. An
// unreachable API server, a missing CRD or a refusal by RBAC is logged and
// retried until Close.
func New(client *apiclient.Client, opts Options) *Source {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Source{
		namespace: opts.Namespace,
		log:       log,
		stop:      cancel,
		stopped:   ctx,
		done:      make(chan struct{}),
		objs:      map[string]*entry{},
	}
	path := "/apis/" + GVR.Group + "/" + GVR.Version + "/" + GVR.Resource
	if opts.Namespace != "" {
		path = "/apis/" + GVR.Group + "/" + GVR.Version + "/namespaces/" + url.PathEscape(opts.Namespace) + "/" + GVR.Resource
	}
	s.w = client.NewWatcher(path, (*handler)(s))
	s.w.Logger = log
	s.w.OnError = s.onError
	s.w.NotFoundMaxBackOff = opts.NotInstalledMaxBackOff
	if s.w.NotFoundMaxBackOff <= 0 {
		s.w.NotFoundMaxBackOff = DefaultNotInstalledMaxBackOff
	}
	go func() {
		defer close(s.done)
		_ = s.w.Run(ctx) // returns when ctx ends
	}()
	return s
}

// NewForConfig is New with a client for cfg.
func NewForConfig(cfg *apiclient.Config, opts Options) (*Source, error) {
	client, err := apiclient.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for VirtletImageMappings: %w", err)
	}
	return New(client, opts), nil
}

// onError logs a failed list or watch. A 404 means the CRD is not
// installed (yet): said once at info level, as a cluster without
// VirtletImageMappings is a normal set-up, and the slower retries at debug
// level.
func (s *Source) onError(err error, wait time.Duration) {
	if errors.Is(err, apiclient.ErrNotFound) {
		if !s.notInstalled {
			s.notInstalled = true
			s.log.Info("VirtletImageMapping CRD not installed; watching for it", "namespace", s.namespace, "err", err)
			return
		}
		s.log.Debug("VirtletImageMapping CRD still not installed; retrying", "namespace", s.namespace, "wait", wait)
		return
	}
	s.log.Warn("VirtletImageMappings: list/watch failed; retrying with back-off", "namespace", s.namespace, "wait", wait, "err", err)
}

// WaitForSync waits until the first list is in the cache. When ctx ends or
// the Source is closed first it returns an error that includes the last
// list failure, if any; the Source keeps trying until Close.
func (s *Source) WaitForSync(ctx context.Context) error {
	var why error
	select {
	case <-s.w.Synced():
		return nil
	default:
	}
	select {
	case <-s.w.Synced():
		return nil
	case <-ctx.Done():
		why = context.Cause(ctx)
	case <-s.stopped.Done():
		why = errors.New("the source is closed")
	}
	where := "in all namespaces"
	if s.namespace != "" {
		where = "in namespace " + s.namespace
	}
	if last := s.w.LastError(); last != nil {
		return fmt.Errorf("%s %s not listed (%w); last failure: %w", GVR.Resource, where, why, last)
	}
	return fmt.Errorf("%s %s not listed: %w", GVR.Resource, where, why)
}

// Close stops the watch and waits until it has stopped.
func (s *Source) Close() error {
	s.stop()
	<-s.done
	return nil
}

// Mappings implements image.MappingSource from the cache, sorted by name
// (mapping:NAMESPACE/NAME). It never calls the API server and never fails:
// before the first list, or while the API server is away, it returns what
// is cached.
func (s *Source) Mappings(ctx context.Context) ([]image.NamedConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sorted == nil {
		s.sorted = make([]image.NamedConfig, 0, len(s.objs))
		for _, m := range s.objs {
			s.sorted = append(s.sorted, m.nc)
		}
		sort.Slice(s.sorted, func(i, j int) bool { return s.sorted[i].Name < s.sorted[j].Name })
	}
	return slices.Clone(s.sorted), nil
}

// handler is the Source as the Watcher's apiclient.Handler; its methods
// run on the Watcher's goroutine while Mappings runs on pulls'.
type handler Source

func key(o apiclient.Object) string { return o.Namespace + "/" + o.Name }

// parse returns the mapping of o, reusing old's parse if o is the same
// object at the same resourceVersion.
func parse(old *entry, o apiclient.Object) *entry {
	if old != nil && old.uid == o.UID && old.resourceVersion == o.ResourceVersion && o.ResourceVersion != "" {
		return old
	}
	return &entry{uid: o.UID, resourceVersion: o.ResourceVersion, nc: toConfig(o)}
}

// Replace implements apiclient.Handler.
func (h *handler) Replace(objs []apiclient.Object) {
	s := (*Source)(h)
	if s.notInstalled {
		s.notInstalled = false
		s.log.Info("VirtletImageMapping CRD installed; watching VirtletImageMappings", "namespace", s.namespace)
	}
	s.mu.Lock()
	old := s.objs
	s.mu.Unlock()
	next := make(map[string]*entry, len(objs))
	for _, o := range objs { // parsed outside the lock: old is only changed here
		next[key(o)] = parse(old[key(o)], o)
	}
	s.mu.Lock()
	s.objs, s.sorted = next, nil
	s.mu.Unlock()
}

// Upsert implements apiclient.Handler.
func (h *handler) Upsert(o apiclient.Object) {
	s := (*Source)(h)
	s.mu.Lock()
	old := s.objs[key(o)]
	s.mu.Unlock()
	m := parse(old, o)
	s.mu.Lock()
	s.objs[key(o)], s.sorted = m, nil
	s.mu.Unlock()
}

// Delete implements apiclient.Handler.
func (h *handler) Delete(o apiclient.Object) {
	s := (*Source)(h)
	s.mu.Lock()
	delete(s.objs, key(o))
	s.sorted = nil
	s.mu.Unlock()
}

func toConfig(o apiclient.Object) image.NamedConfig {
	name := "mapping:" + o.Namespace + "/" + o.Name
	nc := image.NamedConfig{Name: name, Origin: image.OriginObject}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(o.Raw, &top); err != nil {
		nc.Err = fmt.Errorf("VirtletImageMapping %s/%s: %w", o.Namespace, o.Name, err)
		return nc
	}
	spec, ok := top["spec"]
	if !ok {
		nc.Err = fmt.Errorf("VirtletImageMapping %s/%s: no spec", o.Namespace, o.Name)
		return nc
	}
	nc.Config, nc.Err = image.ParseConfig(fmt.Sprintf("VirtletImageMapping %s/%s spec", o.Namespace, o.Name), spec)
	return nc
}
