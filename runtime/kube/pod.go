package kube

import (
	"context"
	"fmt"
	"net/url"

	"github.com/podvisor/podvisor/runtime/annotations"
)

// podSpec is the part of a core/v1 Pod read here.
type podSpec struct {
	Spec struct {
		Containers []struct {
			Name      string `json:"name"`
			Resources struct {
				Limits map[string]string `json:"limits"`
			} `json:"resources"`
		} `json:"containers"`
	} `json:"spec"`
}

// EphemeralStorageLimit returns the ephemeral-storage limit of a pod's
// container in bytes, 0 when it has none. CRI does not pass it (kubelet
// enforces it by eviction), so it is read from the pod's spec.
func (d *DataSource) EphemeralStorageLimit(ctx context.Context, namespace, pod, container string) (int64, error) {
	if namespace == "" || pod == "" {
		return 0, fmt.Errorf("reading pod %s/%s: a namespace and a name are needed", namespace, pod)
	}
	var p podSpec
	path := "/api/v1/namespaces/" + url.PathEscape(namespace) + "/pods/" + url.PathEscape(pod)
	if err := d.client.Get(ctx, path, &p); err != nil {
		return 0, fmt.Errorf("reading pod %s/%s from the Kubernetes API: %w", namespace, pod, err)
	}
	for _, c := range p.Spec.Containers {
		if c.Name != container {
			continue
		}
		v, ok := c.Resources.Limits["ephemeral-storage"]
		if !ok {
			return 0, nil
		}
		n, err := annotations.ParseQuantity(v)
		if err != nil {
			return 0, fmt.Errorf("pod %s/%s container %s: ephemeral-storage limit %q: %w", namespace, pod, container, v, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("pod %s/%s has no container %q", namespace, pod, container)
}
