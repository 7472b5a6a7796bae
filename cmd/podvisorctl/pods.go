package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/podvisor/podvisor/deploy"
)

// The parts of a Pod (as `kubectl get -o json` prints it) podvisorctl reads.
// Own types rather than k8s.io/api's keep the binary small.
type podJSON struct {
	Metadata struct {
		Name              string            `json:"name"`
		Namespace         string            `json:"namespace"`
		Annotations       map[string]string `json:"annotations"`
		DeletionTimestamp string            `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		NodeName         string `json:"nodeName"`
		RuntimeClassName string `json:"runtimeClassName"`
		Containers       []struct {
			Name      string `json:"name"`
			Image     string `json:"image"`
			Stdin     bool   `json:"stdin"`
			TTY       bool   `json:"tty"`
			Resources struct {
				Limits map[string]string `json:"limits"`
			} `json:"resources"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase             string            `json:"phase"`
		PodIP             string            `json:"podIP"`
		ContainerStatuses []containerStatus `json:"containerStatuses"`
		InitStatuses      []containerStatus `json:"initContainerStatuses"`
	} `json:"status"`
}

type containerStatus struct {
	Name         string `json:"name"`
	ContainerID  string `json:"containerID"`
	Ready        bool   `json:"ready"`
	RestartCount int    `json:"restartCount"`
}

type podListJSON struct {
	Items []podJSON `json:"items"`
}

func (p *podJSON) ref() string { return p.Metadata.Namespace + "/" + p.Metadata.Name }

const (
	// vmIDPrefix starts the IDs criproxy gives podvisor's sandboxes and
	// containers (runtime/proxy: runtime name "podvisor" + "__"); kubelet
	// shows them as "<runtime>://podvisor__<id>".
	vmIDPrefix = "podvisor__"
	// virtletImagePrefix, the target-runtime annotation and a RuntimeClass
	// are what send a pod to podvisor (docs/criproxy.md).
	virtletImagePrefix      = "virtlet.cloud/"
	targetRuntimeAnnotation = "kubernetes.io/target-runtime"
)

// vmPod is a pod podvisor runs as a VM.
type vmPod struct {
	Namespace, Name string
	Node            string
	Container       string // the pod's one container, the VM
	ContainerID     string // podvisor's own ID (without the proxy's prefix)
	Domain          string // the libvirt domain
	Stdin, TTY      bool
	Phase           string
}

func (v *vmPod) ref() string { return v.Namespace + "/" + v.Name }

// domainName is runtime/domain.NameFor (TestDomainNameMatchesPodvisor): "pv-"
// and the first 16 hex digits of a hex container ID, else of its sha256.
func domainName(containerID string) string {
	h := strings.ToLower(strings.ReplaceAll(containerID, "-", ""))
	if len(h) >= 16 && strings.Trim(h, "0123456789abcdef") == "" {
		return "pv-" + h[:16]
	}
	sum := sha256.Sum256([]byte(containerID))
	return "pv-" + hex.EncodeToString(sum[:8])
}

// namespaceArgs are kubectl's -n for the VM pod's namespace, if given.
func (a *app) namespaceArgs() []string {
	if a.namespace == "" {
		return nil
	}
	return []string{"-n", a.namespace}
}

func (a *app) namespaceDesc() string {
	if a.namespace == "" {
		return "the context's namespace (-n NAMESPACE for another)"
	}
	return "namespace " + a.namespace
}

// vmPod reads the pod name and checks podvisor runs it.
func (a *app) vmPod(ctx context.Context, k *kubectl, name string) (*vmPod, error) {
	if name == "" || strings.ContainsAny(name, "/ ") {
		return nil, fmt.Errorf("%q is not a pod name (give the namespace with -n, not NAMESPACE/POD)", name)
	}
	out, err := k.output(ctx, append(append([]string{"get", "pod", name}, a.namespaceArgs()...), "-o", "json")...)
	if err != nil {
		var ke *kubectlError
		if errors.As(err, &ke) && ke.notFound() {
			return nil, fmt.Errorf("pod %q not found in %s", name, a.namespaceDesc())
		}
		return nil, err
	}
	var p podJSON
	if err := json.Unmarshal(out, &p); err != nil {
		return nil, fmt.Errorf("reading pod %s from kubectl: %w", name, err)
	}
	return checkVMPod(&p)
}

// checkVMPod says whether podvisor runs p, and where.
func checkVMPod(p *podJSON) (*vmPod, error) {
	if len(p.Spec.Containers) == 0 {
		return nil, fmt.Errorf("pod %s has no containers", p.ref())
	}
	c := p.Spec.Containers[0]
	v := &vmPod{Namespace: p.Metadata.Namespace, Name: p.Metadata.Name, Node: p.Spec.NodeName,
		Container: c.Name, Stdin: c.Stdin, TTY: c.TTY, Phase: p.Status.Phase}
	var id string
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == c.Name {
			id = s.ContainerID
		}
	}
	if id == "" {
		if looksLikeVM(p) {
			where := "is not scheduled yet"
			if p.Spec.NodeName != "" {
				where = "has no VM yet on node " + p.Spec.NodeName
			}
			return nil, fmt.Errorf("pod %s (phase %s) %s: wait until it is Running (kubectl get pod -n %s %s)", p.ref(), p.Status.Phase, where, p.Metadata.Namespace, p.Metadata.Name)
		}
		return nil, fmt.Errorf("pod %s is not a VM pod: it has no container yet and nothing routes it to podvisor (an image %s..., the annotation %s: virtlet.cloud or a RuntimeClass whose handler is podvisor)", p.ref(), virtletImagePrefix, targetRuntimeAnnotation)
	}
	_, native, ok := strings.Cut(id, "://")
	if !ok {
		native = id
	}
	if !strings.HasPrefix(native, vmIDPrefix) {
		return nil, fmt.Errorf("pod %s is not a VM pod: its container %s has ID %q; containers podvisor runs have IDs %s<id> (the pod needs an image %s..., the annotation %s: virtlet.cloud or a RuntimeClass whose handler is podvisor)", p.ref(), c.Name, id, vmIDPrefix, virtletImagePrefix, targetRuntimeAnnotation)
	}
	if len(p.Spec.Containers) > 1 {
		return nil, fmt.Errorf("pod %s has %d containers: podvisor runs one VM container per pod", p.ref(), len(p.Spec.Containers))
	}
	v.ContainerID = strings.TrimPrefix(native, vmIDPrefix)
	v.Domain = domainName(v.ContainerID)
	if v.Node == "" {
		return nil, fmt.Errorf("pod %s has a container but no node", p.ref())
	}
	return v, nil
}

// looksLikeVM: the pod would be routed to podvisor (when the RuntimeClass's
// handler is podvisor, which is not visible in the pod).
func looksLikeVM(p *podJSON) bool {
	if p.Metadata.Annotations[targetRuntimeAnnotation] == "virtlet.cloud" || p.Spec.RuntimeClassName != "" {
		return true
	}
	for _, c := range p.Spec.Containers {
		if strings.HasPrefix(c.Image, virtletImagePrefix) {
			return true
		}
	}
	return false
}

// podvisorPods lists the podvisor DaemonSet's pods, on one node or all.
func (a *app) podvisorPods(ctx context.Context, k *kubectl, node string) ([]podJSON, error) {
	args := []string{"get", "pods", "-n", a.podvisorNamespace, "-l", deploy.RuntimeSelector}
	if node != "" {
		args = append(args, "--field-selector", "spec.nodeName="+node)
	}
	out, err := k.output(ctx, append(args, "-o", "json")...)
	if err != nil {
		return nil, err
	}
	var l podListJSON
	if err := json.Unmarshal(out, &l); err != nil {
		return nil, fmt.Errorf("reading podvisor pods from kubectl: %w", err)
	}
	return l.Items, nil
}

// noPodvisorPod explains an empty list.
func (a *app) noPodvisorPod(node string) error {
	where := "on node " + node
	if node == "" {
		where = "on any node"
	}
	return fmt.Errorf("no podvisor pod %s (namespace %s, label %s): is the DaemonSet installed there (kubectl -n %s get ds %s; --podvisor-namespace if it is elsewhere) and the node labelled extraRuntime=virtlet podvisor.io/enabled=true?",
		where, a.podvisorNamespace, deploy.RuntimeSelector, a.podvisorNamespace, deploy.DaemonSetName)
}

// podvisorPod returns the name of the running podvisor pod on node.
func (a *app) podvisorPod(ctx context.Context, k *kubectl, node string) (string, error) {
	pods, err := a.podvisorPods(ctx, k, node)
	if err != nil {
		return "", err
	}
	if len(pods) == 0 {
		return "", a.noPodvisorPod(node)
	}
	var states []string
	for _, p := range pods {
		if p.Status.Phase == "Running" && p.Metadata.DeletionTimestamp == "" {
			return p.Metadata.Name, nil
		}
		state := p.Status.Phase
		if p.Metadata.DeletionTimestamp != "" {
			state = "terminating"
		}
		states = append(states, p.Metadata.Name+" is "+state)
	}
	return "", fmt.Errorf("the podvisor pod on node %s is not running (%s): kubectl -n %s describe pod %s", node, strings.Join(states, ", "), a.podvisorNamespace, pods[0].Metadata.Name)
}
