// Package crdsource reads VirtletImageMapping objects (group virtlet.k8s,
// version v1) with client-go's dynamic client and keeps them current with a
// watch, as an image.MappingSource. It lives apart from package image so
// that only the daemon pays for client-go.
package crdsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/podvisor/podvisor/runtime/image"
)

// GVR is the VirtletImageMapping resource.
var GVR = schema.GroupVersionResource{Group: "virtlet.k8s", Version: "v1", Resource: "virtletimagemappings"}

// Kind and ListKind of the resource, for fake clients.
const (
	Kind     = "VirtletImageMapping"
	ListKind = "VirtletImageMappingList"
)

// Options configure a Source.
type Options struct {
	// Namespace is the namespace watched; "" watches all namespaces.
	Namespace string
	// Logger receives list and watch failures, which the informer retries
	// with back-off (0.8 s doubling up to 30 s); nil means slog.Default().
	Logger *slog.Logger
}

// Source is an image.MappingSource backed by an informer.
type Source struct {
	informer  cache.SharedIndexInformer
	namespace string
	stop      context.CancelFunc
	stopped   context.Context // done once Close is called
	done      chan struct{}   // closed when the informer has returned

	mu      sync.Mutex
	parsed  map[types.UID]parsedMapping
	lastErr error // the last list/watch failure
}

type parsedMapping struct {
	resourceVersion string
	nc              image.NamedConfig
}

// New starts watching VirtletImageMappings and returns at once. The cache
// fills in the background: until the first list arrives (WaitForSync),
// Mappings returns what is cached, possibly nothing. An unreachable API
// server, a missing CRD or a refusal by RBAC is logged and retried until
// Close.
func New(client dynamic.Interface, opts Options) *Source {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Source{
		informer:  dynamicinformer.NewFilteredDynamicInformer(listThenWatch{client}, GVR, opts.Namespace, 10*time.Minute, cache.Indexers{}, nil).Informer(),
		namespace: opts.Namespace,
		stop:      cancel,
		stopped:   ctx,
		done:      make(chan struct{}),
		parsed:    map[types.UID]parsedMapping{},
	}
	// Replaces client-go's handler, which logs through klog.
	_ = s.informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		switch {
		case ctx.Err() != nil, errors.Is(err, io.EOF):
			// Stopping, or a watch that ended normally.
		case apierrors.IsResourceExpired(err), apierrors.IsGone(err), errors.Is(err, io.ErrUnexpectedEOF):
			log.Debug("VirtletImageMappings: watch closed; listing again", "namespace", opts.Namespace, "err", err)
		default:
			s.mu.Lock()
			s.lastErr = err
			s.mu.Unlock()
			log.Warn("VirtletImageMappings: list/watch failed; retrying with back-off", "namespace", opts.Namespace, "err", err)
		}
	})
	go func() {
		defer close(s.done)
		s.informer.RunWithContext(ctx)
	}()
	return s
}

// listThenWatch makes the informer LIST then WATCH instead of streaming the
// list (client-go's watch-list): the watch-list path retries connection
// failures in an inner loop that neither reports them to the watch error
// handler nor notices a stop during its back-off (up to 30 s), so an
// unreachable API server would go unlogged and Close would hang. The
// objects are few; a LIST costs the API server nothing here.
type listThenWatch struct{ dynamic.Interface }

// IsWatchListSemanticsUnSupported is what client-go asks.
func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }

// NewForConfig is New with a dynamic client for cfg.
func NewForConfig(cfg *rest.Config, opts Options) (*Source, error) {
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for VirtletImageMappings: %w", err)
	}
	return New(client, opts), nil
}

// WaitForSync waits until the first list is in the cache. When ctx ends or
// the Source is closed first it returns an error that includes the last
// list failure, if any; the Source keeps trying until Close.
func (s *Source) WaitForSync(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.stopped, cancel)()
	if cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return nil
	}
	where := "in all namespaces"
	if s.namespace != "" {
		where = "in namespace " + s.namespace
	}
	why := context.Cause(ctx)
	if s.stopped.Err() != nil {
		why = errors.New("the source is closed")
	}
	s.mu.Lock()
	last := s.lastErr
	s.mu.Unlock()
	if last != nil {
		return fmt.Errorf("%s %s not listed (%w); last failure: %w", GVR.Resource, where, why, last)
	}
	return fmt.Errorf("%s %s not listed: %w", GVR.Resource, where, why)
}

// Close stops the watch and waits until the informer has stopped.
func (s *Source) Close() error {
	s.stop()
	<-s.done
	return nil
}

// Mappings implements image.MappingSource from the informer's cache; an
// object is parsed again only when its resourceVersion changed. It never
// calls the API server and never fails: before the first list, or while the
// API server is away, it returns what is cached.
func (s *Source) Mappings(ctx context.Context) ([]image.NamedConfig, error) {
	objs := s.informer.GetStore().List()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[types.UID]bool, len(objs))
	out := make([]image.NamedConfig, 0, len(objs))
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		seen[u.GetUID()] = true
		p, ok := s.parsed[u.GetUID()]
		if !ok || p.resourceVersion != u.GetResourceVersion() || p.resourceVersion == "" {
			p = parsedMapping{resourceVersion: u.GetResourceVersion(), nc: toConfig(u)}
			s.parsed[u.GetUID()] = p
		}
		out = append(out, p.nc)
	}
	for uid := range s.parsed {
		if !seen[uid] {
			delete(s.parsed, uid)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func toConfig(u *unstructured.Unstructured) image.NamedConfig {
	name := "mapping:" + u.GetNamespace() + "/" + u.GetName()
	nc := image.NamedConfig{Name: name}
	spec, ok := u.Object["spec"]
	if !ok {
		nc.Err = fmt.Errorf("VirtletImageMapping %s/%s: no spec", u.GetNamespace(), u.GetName())
		return nc
	}
	data, err := json.Marshal(spec)
	if err != nil {
		nc.Err = fmt.Errorf("VirtletImageMapping %s/%s: spec: %w", u.GetNamespace(), u.GetName(), err)
		return nc
	}
	nc.Config, nc.Err = image.ParseConfig(fmt.Sprintf("VirtletImageMapping %s/%s spec", u.GetNamespace(), u.GetName()), data)
	return nc
}
