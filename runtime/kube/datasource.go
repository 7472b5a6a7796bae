// Package kube reads the ConfigMaps and Secrets that cloud-init data source
// annotations name (VirtletCloudInitUserDataSource, VirtletSSHKeySource,
// VirtletFilesFromDataSource) through the Kubernetes API.
package kube

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podvisor/podvisor/runtime/cloudinit"
)

// DataSource is a cloudinit.DataSource backed by a Kubernetes clientset.
type DataSource struct {
	client kubernetes.Interface
}

var _ cloudinit.DataSource = (*DataSource)(nil)

// New returns a DataSource that reads through client.
func New(client kubernetes.Interface) *DataSource {
	return &DataSource{client: client}
}

// NewFromKubeconfig builds the client from a kubeconfig file; an empty path
// means the in-cluster config (podvisor running in a DaemonSet pod).
func NewFromKubeconfig(path string) (*DataSource, error) {
	var (
		cfg *rest.Config
		err error
	)
	if path == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: none given and not running in a cluster: %w", err)
		}
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
		}
	}
	cfg.UserAgent = "podvisor"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client from %s: %w", path, err)
	}
	return New(client), nil
}

// ConfigMap returns the data of a ConfigMap; binaryData keys are included
// as their raw bytes. A missing object wraps cloudinit.ErrNotFound.
func (d *DataSource) ConfigMap(ctx context.Context, namespace, name string) (map[string]string, error) {
	cm, err := d.client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
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
	s, err := d.client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, wrap("secret", namespace, name, err)
	}
	out := make(map[string][]byte, len(s.Data)+len(s.StringData))
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
