// Package crdsource reads VirtletImageMapping objects (group virtlet.k8s,
// version v1) with client-go's dynamic client and keeps them current with a
// watch, as an image.MappingSource. It lives apart from package image so
// that only the daemon pays for client-go.
package crdsource

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podvisor/podvisor/runtime/image"
)

// GVR is the VirtletImageMapping resource.
var GVR = schema.GroupVersionResource{Group: "virtlet.k8s", Version: "v1", Resource: "virtletimagemappings"}

// Kind and ListKind of the resource, for fake clients.
const (
	Kind     = "VirtletImageMapping"
	ListKind = "VirtletImageMappingList"
)

// Source is an image.MappingSource backed by an informer.
type Source struct {
	informer cache.SharedIndexInformer

	mu     sync.Mutex
	parsed map[types.UID]parsedMapping
}

type parsedMapping struct {
	resourceVersion string
	nc              image.NamedConfig
}

// New watches VirtletImageMappings in namespace ("" for all namespaces)
// and returns once the first list is in the cache or ctx ends. The watch
// stops when ctx is cancelled.
func New(ctx context.Context, client dynamic.Interface, namespace string) (*Source, error) {
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(client, 10*time.Minute, namespace, nil)
	s := &Source{informer: f.ForResource(GVR).Informer(), parsed: map[types.UID]parsedMapping{}}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return nil, fmt.Errorf("listing %s in namespace %q: %w", GVR.Resource, namespace, context.Cause(ctx))
	}
	return s, nil
}

// NewFromKubeconfig builds the client from a kubeconfig file, or from the
// in-cluster service account when kubeconfig is "".
func NewFromKubeconfig(ctx context.Context, kubeconfig, namespace string) (*Source, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config for VirtletImageMappings: %w", err)
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for VirtletImageMappings: %w", err)
	}
	return New(ctx, client, namespace)
}

// Mappings implements image.MappingSource from the informer's cache; an
// object is parsed again only when its resourceVersion changed.
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
