// Package kube reads the ConfigMaps and Secrets that cloud-init data source
// annotations name (VirtletCloudInitUserDataSource, VirtletSSHKeySource,
// VirtletFilesFromDataSource) through the Kubernetes API.
//
// It uses a REST client for the core/v1 group only, not client-go's typed
// clientset: the clientset registers every API group at start-up, which
// cost the daemon about 30 MiB of memory for two GETs.
package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podvisor/podvisor/runtime/cloudinit"
)

// DataSource is a cloudinit.DataSource backed by the Kubernetes API.
type DataSource struct {
	client rest.Interface
}

var _ cloudinit.DataSource = (*DataSource)(nil)

// New returns a DataSource talking to the API server of cfg.
func New(cfg *rest.Config) (*DataSource, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c := rest.CopyConfig(cfg)
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = "podvisor"
	}
	client, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	return &DataSource{client: client}, nil
}

// RESTConfig loads the client configuration of a kubeconfig file; an empty
// path means the in-cluster config (podvisor running in a DaemonSet pod).
// The daemon loads it once and shares it between the DataSource and the
// VirtletImageMapping watch (runtime/image/crdsource).
func RESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: none given and not running in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// NewFromKubeconfig is New with the configuration RESTConfig loads.
func NewFromKubeconfig(path string) (*DataSource, error) {
	cfg, err := RESTConfig(path)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

func (d *DataSource) get(ctx context.Context, resource, namespace, name string, into runtime.Object) error {
	return d.client.Get().Namespace(namespace).Resource(resource).Name(name).Do(ctx).Into(into)
}

// ConfigMap returns the data of a ConfigMap; binaryData keys are included
// as their raw bytes. A missing object wraps cloudinit.ErrNotFound.
func (d *DataSource) ConfigMap(ctx context.Context, namespace, name string) (map[string]string, error) {
	var cm corev1.ConfigMap
	if err := d.get(ctx, "configmaps", namespace, name, &cm); err != nil {
		return nil, wrap("configmap", namespace, name, err)
	}
	out := make(map[string]string, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		out[k] = v
	}
	for k, v := range cm.BinaryData {
		out[k] = string(v)
	}
	return out, nil
}

// Secret returns the data of a Secret. A missing object wraps
// cloudinit.ErrNotFound.
func (d *DataSource) Secret(ctx context.Context, namespace, name string) (map[string][]byte, error) {
	var s corev1.Secret
	if err := d.get(ctx, "secrets", namespace, name, &s); err != nil {
		return nil, wrap("secret", namespace, name, err)
	}
	out := make(map[string][]byte, len(s.Data))
	for k, v := range s.Data {
		out[k] = v
	}
	return out, nil
}

func wrap(kind, namespace, name string, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %s/%s: %w", kind, namespace, name, cloudinit.ErrNotFound)
	}
	return fmt.Errorf("reading %s %s/%s from the Kubernetes API: %w", kind, namespace, name, err)
}
