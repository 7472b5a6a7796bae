package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	runtimeName = "podvisor"
	apiVersion  = "v1"
)

// Version reports podvisor's version and the CRI API version.
func (s *Server) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	rv := s.cfg.Version
	if info, err := s.cfg.Hypervisor.Info(ctx); err == nil {
		rv = fmt.Sprintf("%s (hypervisor %s %s, accelerator %s)", s.cfg.Version, info.Name, info.Version, info.Accelerator)
	}
	return &runtimeapi.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       runtimeName,
		RuntimeVersion:    rv,
		RuntimeApiVersion: apiVersion,
	}, nil
}

// Status reports whether the runtime (the hypervisor) and the pod network
// are ready.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	rt := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	info, herr := s.cfg.Hypervisor.Info(ctx)
	if herr != nil {
		rt.Status = false
		rt.Reason = "HypervisorUnavailable"
		rt.Message = herr.Error()
	}
	nw := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if s.cfg.NetworkReady != nil {
		if err := s.cfg.NetworkReady(ctx); err != nil {
			nw.Status = false
			nw.Reason = "NetworkPluginNotReady"
			nw.Message = err.Error()
		}
	}
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{rt, nw}},
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{
			{Name: "", Features: &runtimeapi.RuntimeHandlerFeatures{}},
			{Name: runtimeName, Features: &runtimeapi.RuntimeHandlerFeatures{}},
		},
		Features: &runtimeapi.RuntimeFeatures{},
	}
	if req.GetVerbose() {
		resp.Info = map[string]string{
			"version":     s.cfg.Version,
			"hypervisor":  info.Name,
			"accelerator": info.Accelerator,
			// Why KVM is used or not: `crictl info` shows it on the node.
			"acceleratorReason": info.AcceleratorReason,
		}
	}
	return resp, nil
}

// UpdateRuntimeConfig accepts kubelet's pod CIDR. podvisor's pod network is
// configured by CNI, so there is nothing to change; the value is logged.
func (s *Server) UpdateRuntimeConfig(_ context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		s.log.Info("UpdateRuntimeConfig: pod CIDR noted; the CNI configuration decides pod addresses", "podCIDR", cidr)
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// RuntimeConfig tells kubelet the cgroup driver.
func (s *Server) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.cfg.CgroupDriver == "systemd" {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}
