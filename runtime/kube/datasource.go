// Package kube reads the ConfigMaps and Secrets that cloud-init data source
// annotations name (VirtletCloudInitUserDataSource, VirtletSSHKeySource,
// VirtletFilesFromDataSource) through the Kubernetes API.
//
// It uses podvisor's own small API client (runtime/kube/apiclient), not
// client-go: two GETs decoded into the few fields read here do not need
// client-go's, k8s.io/api's and k8s.io/apimachinery's share of the
// daemon's binary and memory (see docs/design.md).
package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/kube/apiclient"
)

// DataSource is a cloudinit.DataSource backed by the Kubernetes API.
type DataSource struct {
	client *apiclient.Client
}

var _ cloudinit.DataSource = (*DataSource)(nil)

// New returns a DataSource talking to the API server of cfg.
func New(cfg *apiclient.Config) (*DataSource, error) {
	client, err := apiclient.New(cfg)
	if err != nil {
		return nil, err
	}
	return NewForClient(client), nil
}

// NewForClient returns a DataSource using client, which it may share with
// other users (the daemon's VirtletImageMapping watch).
func NewForClient(client *apiclient.Client) *DataSource {
	return &DataSource{client: client}
}

// RESTConfig loads the client configuration of a kubeconfig file; an empty
// path means the in-cluster config (podvisor running in a DaemonSet pod,
// with its service account's token). The daemon loads it once and shares
// it between the DataSource and the VirtletImageMapping watch
// (runtime/image/crdsource).
func RESTConfig(path string) (*apiclient.Config, error) {
	if path == "" {
		cfg, err := apiclient.InCluster()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: none given and not running in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := apiclient.LoadKubeconfig(path)
	if err != nil {
		return nil, fmt.Errorf("loading %w", err) // "loading kubeconfig PATH: ..."
	}
	return cfg, nil
}

// configMap and secret are the parts of core/v1 ConfigMap and Secret read
// here. encoding/json decodes the base64 of []byte values.
type configMap struct {
	Data       map[string]string `json:"data"`
	BinaryData map[string][]byte `json:"binaryData"`
}

type secret struct {
	Data map[string][]byte `json:"data"`
}

func (d *DataSource) get(ctx context.Context, resource, namespace, name string, into any) error {
	if namespace == "" || name == "" {
		// Else the path would name the collection, or all namespaces.
		return errors.New("a namespace and a name are needed")
	}
	path := "/api/v1/namespaces/" + url.PathEscape(namespace) + "/" + resource + "/" + url.PathEscape(name)
	return d.client.Get(ctx, path, into)
}

// ConfigMap returns the data of a ConfigMap; binaryData keys are included
// as their raw bytes. A missing object wraps cloudinit.ErrNotFound.
func (d *DataSource) ConfigMap(ctx context.Context, namespace, name string) (map[string]string, error) {
	var cm configMap
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
	var s secret
	if err := d.get(ctx, "secrets", namespace, name, &s); err != nil {
		var se *apiclient.StatusError
		if errors.As(err, &se) && se.Code == http.StatusForbidden {
			// deploy/ grants Secrets per namespace only: say how.
			err = fmt.Errorf("%w; podvisor reads Secrets only in the namespaces that bind the ClusterRole podvisor-secrets to it: kubectl -n %s create rolebinding podvisor-secrets --clusterrole=podvisor-secrets --serviceaccount=kube-system:podvisor (docs/deploy.md, RBAC)", err, namespace)
		}
		return nil, wrap("secret", namespace, name, err)
	}
	out := make(map[string][]byte, len(s.Data))
	for k, v := range s.Data {
		out[k] = v
	}
	return out, nil
}

func wrap(kind, namespace, name string, err error) error {
	if errors.Is(err, apiclient.ErrNotFound) {
		return fmt.Errorf("%s %s/%s: %w", kind, namespace, name, cloudinit.ErrNotFound)
	}
	return fmt.Errorf("reading %s %s/%s from the Kubernetes API: %w", kind, namespace, name, err)
}
