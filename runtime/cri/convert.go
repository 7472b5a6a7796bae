package cri

import (
	"encoding/json"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/pod"
)

func nowNano() int64 { return time.Now().UnixNano() }

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func sandboxConfigFromCRI(c *runtimeapi.PodSandboxConfig, handler string) pod.SandboxConfig {
	md := c.GetMetadata()
	out := pod.SandboxConfig{
		Name:           md.GetName(),
		UID:            md.GetUid(),
		Namespace:      md.GetNamespace(),
		Attempt:        md.GetAttempt(),
		Hostname:       c.GetHostname(),
		LogDirectory:   c.GetLogDirectory(),
		Labels:         c.GetLabels(),
		Annotations:    c.GetAnnotations(),
		RuntimeHandler: handler,
		CgroupParent:   c.GetLinux().GetCgroupParent(),
	}
	if sc := c.GetLinux().GetSysctls(); len(sc) > 0 {
		out.Sysctls = make(map[string]string, len(sc))
		for k, v := range sc {
			out.Sysctls[k] = v
		}
	}
	if dns := c.GetDnsConfig(); dns != nil {
		out.DNS = pod.DNSConfig{Servers: dns.GetServers(), Searches: dns.GetSearches(), Options: dns.GetOptions()}
	}
	for _, p := range c.GetPortMappings() {
		out.PortMappings = append(out.PortMappings, pod.PortMapping{
			Protocol:      p.GetProtocol().String(),
			ContainerPort: p.GetContainerPort(),
			HostPort:      p.GetHostPort(),
			HostIP:        p.GetHostIp(),
		})
	}
	return out
}

func containerConfigFromCRI(c *runtimeapi.ContainerConfig) pod.ContainerConfig {
	out := pod.ContainerConfig{
		Name:        c.GetMetadata().GetName(),
		Attempt:     c.GetMetadata().GetAttempt(),
		Image:       c.GetImage().GetImage(),
		Labels:      c.GetLabels(),
		Annotations: c.GetAnnotations(),
		LogPath:     c.GetLogPath(),
		Stdin:       c.GetStdin(),
		StdinOnce:   c.GetStdinOnce(),
		TTY:         c.GetTty(),
	}
	for _, e := range c.GetEnvs() {
		out.Envs = append(out.Envs, pod.KeyValue{Key: e.GetKey(), Value: string(e.GetValue())})
	}
	for _, m := range c.GetMounts() {
		out.Mounts = append(out.Mounts, pod.Mount{ContainerPath: m.GetContainerPath(), HostPath: m.GetHostPath(), Readonly: m.GetReadonly()})
	}
	for _, d := range c.GetDevices() {
		out.Devices = append(out.Devices, pod.Device{ContainerPath: d.GetContainerPath(), HostPath: d.GetHostPath(), Permissions: d.GetPermissions()})
	}
	if r := c.GetLinux().GetResources(); r != nil {
		out.Resources = resourcesFromCRI(r)
	}
	return out
}

func resourcesFromCRI(r *runtimeapi.LinuxContainerResources) pod.Resources {
	return pod.Resources{
		MemoryLimitBytes: r.GetMemoryLimitInBytes(),
		CPUShares:        r.GetCpuShares(),
		CPUPeriod:        r.GetCpuPeriod(),
		CPUQuota:         r.GetCpuQuota(),
	}
}

func sandboxMetadataToCRI(c pod.SandboxConfig) *runtimeapi.PodSandboxMetadata {
	return &runtimeapi.PodSandboxMetadata{Name: c.Name, Uid: c.UID, Namespace: c.Namespace, Attempt: c.Attempt}
}

func sandboxStateToCRI(s pod.SandboxState) runtimeapi.PodSandboxState {
	if s == pod.SandboxReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func sandboxStateFromCRI(s runtimeapi.PodSandboxState) pod.SandboxState {
	if s == runtimeapi.PodSandboxState_SANDBOX_READY {
		return pod.SandboxReady
	}
	return pod.SandboxNotReady
}

func sandboxToCRI(sb *pod.Sandbox) *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{
		Id:             sb.ID,
		Metadata:       sandboxMetadataToCRI(sb.Config),
		State:          sandboxStateToCRI(sb.State),
		CreatedAt:      unixNano(sb.CreatedAt),
		Labels:         sb.Config.Labels,
		Annotations:    sb.Config.Annotations,
		RuntimeHandler: sb.Config.RuntimeHandler,
	}
}

func sandboxStatusToCRI(sb pod.Sandbox) *runtimeapi.PodSandboxStatus {
	st := &runtimeapi.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       sandboxMetadataToCRI(sb.Config),
		State:          sandboxStateToCRI(sb.State),
		CreatedAt:      unixNano(sb.CreatedAt),
		Labels:         sb.Config.Labels,
		Annotations:    sb.Config.Annotations,
		RuntimeHandler: sb.Config.RuntimeHandler,
		Network:        &runtimeapi.PodSandboxNetworkStatus{},
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
			Network: runtimeapi.NamespaceMode_POD,
			Pid:     runtimeapi.NamespaceMode_POD,
			Ipc:     runtimeapi.NamespaceMode_POD,
		}}},
	}
	if ips := sb.Network.IPs(); len(ips) > 0 {
		st.Network.Ip = ips[0]
		for _, ip := range ips[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}

func containerStateToCRI(s pod.ContainerState) runtimeapi.ContainerState {
	switch s {
	case pod.ContainerCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case pod.ContainerRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case pod.ContainerExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	default:
		return runtimeapi.ContainerState_CONTAINER_UNKNOWN
	}
}

func containerStateFromCRI(s runtimeapi.ContainerState) pod.ContainerState {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return pod.ContainerCreated
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return pod.ContainerRunning
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return pod.ContainerExited
	default:
		return pod.ContainerUnknown
	}
}

func containerToCRI(c *pod.Container) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id:           c.ID,
		PodSandboxId: c.SandboxID,
		Metadata:     &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
		Image:        &runtimeapi.ImageSpec{Image: c.Config.Image},
		ImageRef:     c.ImageRef,
		ImageId:      c.ImageRef,
		State:        containerStateToCRI(c.State),
		CreatedAt:    unixNano(c.CreatedAt),
		Labels:       c.Config.Labels,
		Annotations:  c.Config.Annotations,
	}
}

func containerStatusToCRI(c pod.Container) *runtimeapi.ContainerStatus {
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
		State:       containerStateToCRI(c.State),
		CreatedAt:   unixNano(c.CreatedAt),
		StartedAt:   unixNano(c.StartedAt),
		FinishedAt:  unixNano(c.FinishedAt),
		ExitCode:    c.ExitCode,
		Image:       &runtimeapi.ImageSpec{Image: c.Config.Image},
		ImageRef:    c.ImageRef,
		ImageId:     c.ImageRef,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      c.Config.Labels,
		Annotations: c.Config.Annotations,
		LogPath:     c.LogPath,
	}
	for _, m := range c.Config.Mounts {
		st.Mounts = append(st.Mounts, &runtimeapi.Mount{ContainerPath: m.ContainerPath, HostPath: m.HostPath, Readonly: m.Readonly})
	}
	if c.Config.Resources != (pod.Resources{}) {
		st.Resources = &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{
			MemoryLimitInBytes: c.Config.Resources.MemoryLimitBytes,
			CpuShares:          c.Config.Resources.CPUShares,
			CpuPeriod:          c.Config.Resources.CPUPeriod,
			CpuQuota:           c.Config.Resources.CPUQuota,
		}}
	}
	return st
}

func sandboxInfoJSON(sb pod.Sandbox) string {
	data, _ := json.Marshal(struct {
		ID      string             `json:"id"`
		Network *pod.NetworkStatus `json:"network,omitempty"`
		Config  pod.SandboxConfig  `json:"config"`
	}{sb.ID, sb.Network, sb.Config})
	return string(data)
}

func containerInfoJSON(c pod.Container) string {
	data, _ := json.Marshal(struct {
		ID     string `json:"id"`
		Domain string `json:"domain"`
		Dir    string `json:"dir"`
	}{c.ID, c.DomainName, c.Dir})
	return string(data)
}
