package cri

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/pod"
	"github.com/podvisor/podvisor/runtime/snapshot"
)

// Checkpointer is what the checkpoint verbs need of runtime/pod; a
// Lifecycle without it answers them Unimplemented.
type Checkpointer interface {
	CheckpointContainer(ctx context.Context, id, target string, opts pod.CheckpointOptions) error
	CheckpointPod(ctx context.Context, sandboxID, dir string, containerIDs []string, opts pod.CheckpointOptions) error
	CheckpointOptionsOf(containerID string) (pod.CheckpointOptions, error)
	RestorePod(ctx context.Context, req pod.RestoreRequest) (string, []pod.RestoredContainer, error)
}

func (s *Server) checkpointer(verb string) (Checkpointer, error) {
	cp, ok := s.cfg.Lifecycle.(Checkpointer)
	if !ok {
		return nil, unimplemented(verb + ": this podvisor's lifecycle has no checkpoints")
	}
	return cp, nil
}

// CheckpointContainer writes a checkpoint archive of the container's VM to
// the location kubelet gives (a file). The request carries no options: the
// pod's annotations podvisor.io/checkpoint-mode and -after give them.
func (s *Server) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	cp, err := s.checkpointer("CheckpointContainer")
	if err != nil {
		return nil, err
	}
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgumentf("CheckpointContainer: container_id is required")
	}
	if req.GetLocation() == "" {
		return nil, errdefs.InvalidArgumentf("CheckpointContainer: location is required (the archive's file path)")
	}
	if t := req.GetTimeout(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	opts, err := cp.CheckpointOptionsOf(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := cp.CheckpointContainer(ctx, req.GetContainerId(), req.GetLocation(), opts); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointContainerResponse{}, nil
}

// CheckpointPod writes the checkpoint of the pod's VM into output_path as
// checkpoint.tar. Options: podvisor.io/checkpoint-mode (memory, disk-only)
// and podvisor.io/checkpoint-after (run, stop); any other key is refused.
func (s *Server) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	cp, err := s.checkpointer("CheckpointPod")
	if err != nil {
		return nil, err
	}
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgumentf("CheckpointPod: pod_sandbox_id is required")
	}
	if req.GetOutputPath() == "" {
		return nil, errdefs.InvalidArgumentf("CheckpointPod: output_path is required (an existing, empty directory)")
	}
	opts, err := pod.ParseCheckpointOptions(req.GetOptions(), false)
	if err != nil {
		return nil, err
	}
	if err := cp.CheckpointPod(ctx, req.GetPodSandboxId(), req.GetOutputPath(), req.GetContainerIds(), opts); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointPodResponse{}, nil
}

// RestorePod makes a new pod sandbox and its container, CREATED, from the
// checkpoint in checkpoint_path (a directory CheckpointPod wrote, or a
// checkpoint archive file).
func (s *Server) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	cp, err := s.checkpointer("RestorePod")
	if err != nil {
		return nil, err
	}
	cfg := req.GetConfig()
	if cfg == nil || cfg.GetMetadata() == nil {
		return nil, errdefs.InvalidArgumentf("RestorePod: config.metadata is required")
	}
	if req.GetCheckpointPath() == "" || !filepath.IsAbs(req.GetCheckpointPath()) {
		return nil, errdefs.InvalidArgumentf("RestorePod: checkpoint_path %q: want the absolute path of a checkpoint directory", req.GetCheckpointPath())
	}
	for k := range req.GetOptions() {
		return nil, errdefs.InvalidArgumentf("RestorePod: option %q is not known: podvisor's restore takes no options", k)
	}
	archive := req.GetCheckpointPath()
	if fi, err := os.Stat(archive); err == nil && fi.IsDir() {
		archive = filepath.Join(archive, pod.ArchiveName)
	}
	rr := pod.RestoreRequest{Archive: archive, Sandbox: sandboxConfigFromCRI(cfg, req.GetRuntimeHandler())}
	for _, c := range req.GetContainerConfigs() {
		rr.Containers = append(rr.Containers, containerConfigFromCRI(c))
	}
	if len(rr.Containers) == 0 {
		return nil, errdefs.InvalidArgumentf("RestorePod: container_configs is empty: give the checkpoint's container's configuration")
	}
	sbID, restored, err := cp.RestorePod(ctx, rr)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.RestorePodResponse{PodSandboxId: sbID}
	for _, r := range restored {
		resp.RestoredContainers = append(resp.RestoredContainers, &runtimeapi.RestoredContainer{Name: r.Name, ContainerId: r.ID})
	}
	return resp, nil
}

// checkpointImage is the image a checkpoint archive named as a container
// image stands for (CRI-O's convention), or nil when name is no archive:
// kubelet checks the image is present before it creates the container.
func checkpointImage(name string) (*runtimeapi.Image, error) {
	if !pod.IsCheckpointArchive(name) {
		return nil, nil
	}
	m, err := snapshot.ReadManifest(name)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(m)
	sum := sha256.Sum256(b)
	id := "sha256:" + hex.EncodeToString(sum[:])
	return &runtimeapi.Image{Id: id, RepoTags: []string{name}, Size: uint64(fi.Size()), Spec: &runtimeapi.ImageSpec{Image: name}}, nil
}

// The manager is found by type assertion: a drifting signature must fail
// the build, not switch checkpoints off.
var _ Checkpointer = (*pod.Manager)(nil)
