package proxy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeRuntime is a small in-memory CRI runtime served on a unix socket.
// With tagPrefix set it treats images as podvisor does: names with the
// prefix are Virtlet names (stored without it, reported with it), others
// OCI references reported as given; IDs may carry the prefix.
type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	name      string
	tagPrefix string
	events    bool // serve GetContainerEvents from evc

	mu         sync.Mutex
	seq        int
	sandboxes  map[string]*runtimeapi.PodSandbox
	containers map[string]*runtimeapi.Container
	images     map[string]*runtimeapi.Image
	calls      []string // method and main argument, e.g. "PodSandboxStatus s1"
	runtimeCfg *runtimeapi.RuntimeConfig
	evc        chan *runtimeapi.ContainerEventResponse
	// metrics, when set, are the runtime's CRI metrics (else the verbs
	// are Unimplemented).
	metrics *fakeMetrics

	sock string
	srv  *grpc.Server
}

func newFakeRuntime(t *testing.T, name string) *fakeRuntime {
	t.Helper()
	f := &fakeRuntime{
		name:       name,
		sandboxes:  map[string]*runtimeapi.PodSandbox{},
		containers: map[string]*runtimeapi.Container{},
		images:     map[string]*runtimeapi.Image{},
		evc:        make(chan *runtimeapi.ContainerEventResponse, 16),
		sock:       filepath.Join(shortTempDir(t), name+".sock"),
	}
	f.start(t)
	t.Cleanup(f.stop)
	return f
}

// shortTempDir keeps socket paths under the 108-byte limit.
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "px")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (f *fakeRuntime) endpoint() string { return "unix://" + f.sock }

func (f *fakeRuntime) start(t *testing.T) {
	t.Helper()
	os.Remove(f.sock)
	lis, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatalf("fake %s: %v", f.name, err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, f)
	runtimeapi.RegisterImageServiceServer(srv, f)
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	go srv.Serve(lis)
}

func (f *fakeRuntime) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

func (f *fakeRuntime) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeRuntime) sawCall(call string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c == call {
			return true
		}
	}
	return false
}

func (f *fakeRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: f.name, RuntimeVersion: "1", RuntimeApiVersion: "v1"}, nil
}

func (f *fakeRuntime) Status(context.Context, *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	return &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
		{Type: "RuntimeReady", Status: true, Reason: f.name}}}}, nil
}

func (f *fakeRuntime) UpdateRuntimeConfig(_ context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	f.record("UpdateRuntimeConfig " + req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr())
	f.mu.Lock()
	f.runtimeCfg = req.GetRuntimeConfig()
	f.mu.Unlock()
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

func (f *fakeRuntime) RunPodSandbox(_ context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	id := fmt.Sprintf("s%d", f.seq)
	f.sandboxes[id] = &runtimeapi.PodSandbox{Id: id, Metadata: req.GetConfig().GetMetadata(), State: runtimeapi.PodSandboxState_SANDBOX_READY,
		RuntimeHandler: req.GetRuntimeHandler(), Annotations: req.GetConfig().GetAnnotations()}
	f.calls = append(f.calls, "RunPodSandbox "+req.GetConfig().GetMetadata().GetName()+" handler="+req.GetRuntimeHandler())
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (f *fakeRuntime) sandbox(id string) (*runtimeapi.PodSandbox, error) {
	sb, ok := f.sandboxes[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s: sandbox %q not found", f.name, id)
	}
	return sb, nil
}

func (f *fakeRuntime) StopPodSandbox(_ context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	f.record("StopPodSandbox " + req.GetPodSandboxId())
	f.mu.Lock()
	defer f.mu.Unlock()
	if sb, ok := f.sandboxes[req.GetPodSandboxId()]; ok {
		sb.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (f *fakeRuntime) RemovePodSandbox(_ context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	f.record("RemovePodSandbox " + req.GetPodSandboxId())
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sandboxes, req.GetPodSandboxId())
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (f *fakeRuntime) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	f.record("PodSandboxStatus " + req.GetPodSandboxId())
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{Id: sb.Id, Metadata: sb.Metadata, State: sb.State,
		Network: &runtimeapi.PodSandboxNetworkStatus{Ip: "10.0.0.1"}}}
	for _, c := range f.containers {
		if c.PodSandboxId == sb.Id {
			resp.ContainersStatuses = append(resp.ContainersStatuses, &runtimeapi.ContainerStatus{Id: c.Id, Image: c.Image, ImageRef: c.ImageRef})
		}
	}
	return resp, nil
}

func (f *fakeRuntime) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f.record("ListPodSandbox " + req.GetFilter().GetId())
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.PodSandbox
	for id, sb := range f.sandboxes {
		if fid := req.GetFilter().GetId(); fid != "" && fid != id {
			continue
		}
		out = append(out, sb)
	}
	return &runtimeapi.ListPodSandboxResponse{Items: out}, nil
}

func (f *fakeRuntime) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, s grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	resp, _ := f.ListPodSandbox(s.Context(), &runtimeapi.ListPodSandboxRequest{Filter: req.GetFilter()})
	for _, sb := range resp.Items { // one sandbox per message, as a chunked stream would
		if err := s.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: []*runtimeapi.PodSandbox{sb}}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeRuntime) CreateContainer(_ context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "CreateContainer "+req.GetPodSandboxId()+" "+req.GetConfig().GetImage().GetImage())
	if _, err := f.sandbox(req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	f.seq++
	id := fmt.Sprintf("c%d", f.seq)
	img := req.GetConfig().GetImage().GetImage()
	f.containers[id] = &runtimeapi.Container{Id: id, PodSandboxId: req.GetPodSandboxId(), Metadata: req.GetConfig().GetMetadata(),
		Image: &runtimeapi.ImageSpec{Image: img}, ImageRef: imageID(img), State: runtimeapi.ContainerState_CONTAINER_CREATED}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

func (f *fakeRuntime) container(id string) (*runtimeapi.Container, error) {
	c, ok := f.containers[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s: container %q not found", f.name, id)
	}
	return c, nil
}

func (f *fakeRuntime) StartContainer(_ context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	f.record("StartContainer " + req.GetContainerId())
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	c.State = runtimeapi.ContainerState_CONTAINER_RUNNING
	return &runtimeapi.StartContainerResponse{}, nil
}

func (f *fakeRuntime) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	f.record("ContainerStatus " + req.GetContainerId())
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{Id: c.Id, State: c.State, Image: c.Image, ImageRef: c.ImageRef}}, nil
}

func (f *fakeRuntime) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f.record("ListContainers " + req.GetFilter().GetId() + "/" + req.GetFilter().GetPodSandboxId())
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.Container
	for id, c := range f.containers {
		fl := req.GetFilter()
		if (fl.GetId() != "" && fl.GetId() != id) || (fl.GetPodSandboxId() != "" && fl.GetPodSandboxId() != c.PodSandboxId) {
			continue
		}
		out = append(out, c)
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

func (f *fakeRuntime) Exec(_ context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	f.record("Exec " + req.GetContainerId())
	return &runtimeapi.ExecResponse{Url: "http://127.0.0.1:1/exec/" + f.name + "/" + req.GetContainerId()}, nil
}

func (f *fakeRuntime) GetContainerEvents(_ *runtimeapi.GetEventsRequest, s grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	if !f.events {
		return status.Error(codes.Unimplemented, "no events")
	}
	for {
		select {
		case ev := <-f.evc:
			if err := s.Send(ev); err != nil {
				return err
			}
		case <-s.Context().Done():
			return nil
		}
	}
}

func imageID(name string) string {
	if strings.HasPrefix(name, "sha256:") {
		return name
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(name)))
}

func (f *fakeRuntime) PullImage(_ context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	name := req.GetImage().GetImage()
	f.record("PullImage " + name)
	f.mu.Lock()
	defer f.mu.Unlock()
	id := imageID(f.stored(name))
	tag := f.tagPrefix + name + ":latest"
	if f.tagPrefix != "" {
		tag = name + ":latest"
	}
	f.images[id] = &runtimeapi.Image{Id: id, RepoTags: []string{tag}, Size: 42}
	return &runtimeapi.PullImageResponse{ImageRef: id}, nil
}

// stored is how the runtime keys a name: podvisor strips its prefix.
func (f *fakeRuntime) stored(name string) string {
	if f.tagPrefix == "" {
		return name
	}
	return strings.TrimPrefix(name, f.tagPrefix)
}

func (f *fakeRuntime) findImage(ref string) *runtimeapi.Image {
	if img, ok := f.images[imageID(f.stored(ref))]; ok {
		return img
	}
	for _, img := range f.images {
		for _, tag := range img.RepoTags {
			if tag == f.tagPrefix+ref+":latest" || tag == ref+":latest" || tag == ref {
				return img
			}
		}
	}
	return nil
}

func (f *fakeRuntime) ImageStatus(_ context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	f.record("ImageStatus " + req.GetImage().GetImage())
	f.mu.Lock()
	defer f.mu.Unlock()
	return &runtimeapi.ImageStatusResponse{Image: f.findImage(req.GetImage().GetImage())}, nil
}

func (f *fakeRuntime) ListImages(_ context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	f.record("ListImages " + req.GetFilter().GetImage().GetImage())
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.Image
	if ref := req.GetFilter().GetImage().GetImage(); ref != "" {
		if img := f.findImage(ref); img != nil {
			out = append(out, img)
		}
		return &runtimeapi.ListImagesResponse{Images: out}, nil
	}
	for _, img := range f.images {
		out = append(out, img)
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

func (f *fakeRuntime) RemoveImage(_ context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	f.record("RemoveImage " + req.GetImage().GetImage())
	f.mu.Lock()
	defer f.mu.Unlock()
	if img := f.findImage(req.GetImage().GetImage()); img != nil {
		delete(f.images, img.Id)
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

func (f *fakeRuntime) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{
		{FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: "/var/lib/" + f.name}, UsedBytes: &runtimeapi.UInt64Value{Value: 7}}}}, nil
}

type fakeMetrics struct {
	descs []*runtimeapi.MetricDescriptor
	pods  []*runtimeapi.PodSandboxMetrics
}

func (f *fakeRuntime) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.metrics == nil {
		return nil, status.Error(codes.Unimplemented, "no metrics")
	}
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: f.metrics.descs}, nil
}

func (f *fakeRuntime) ListPodSandboxMetrics(context.Context, *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.metrics == nil {
		return nil, status.Error(codes.Unimplemented, "no metrics")
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: f.metrics.pods}, nil
}

// ListContainerStats reports each container with its creation sequence
// as CPU time.
func (f *fakeRuntime) ListContainerStats(_ context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	f.record("ListContainerStats " + req.GetFilter().GetId() + "/" + req.GetFilter().GetPodSandboxId())
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.ContainerStats
	for id, c := range f.containers {
		fl := req.GetFilter()
		if (fl.GetId() != "" && fl.GetId() != id) || (fl.GetPodSandboxId() != "" && fl.GetPodSandboxId() != c.PodSandboxId) {
			continue
		}
		out = append(out, &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{Id: id},
			Cpu: &runtimeapi.CpuUsage{UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: 1}}})
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: out}, nil
}

func (f *fakeRuntime) ListPodSandboxStats(_ context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	f.record("ListPodSandboxStats " + req.GetFilter().GetId())
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.PodSandboxStats
	for id := range f.sandboxes {
		if fid := req.GetFilter().GetId(); fid != "" && fid != id {
			continue
		}
		out = append(out, &runtimeapi.PodSandboxStats{Attributes: &runtimeapi.PodSandboxAttributes{Id: id}})
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: out}, nil
}
