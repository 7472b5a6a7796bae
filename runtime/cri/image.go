package cri

import (
	"context"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/errdefs"
)

// ListImages lists pulled images; a filter by name or ref keeps one.
func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	out, err := s.listImages(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

// StreamImages sends the image list in one message.
func (s *Server) StreamImages(req *runtimeapi.StreamImagesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	out, err := s.listImages(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return stream.Send(&runtimeapi.StreamImagesResponse{Images: out})
}

func (s *Server) listImages(ctx context.Context, f *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	if name := f.GetImage().GetImage(); name != "" {
		img, err := s.cfg.Images.Status(ctx, name)
		if err != nil {
			return nil, err
		}
		if img == nil {
			return nil, nil
		}
		return []*runtimeapi.Image{imageToCRI(*img)}, nil
	}
	imgs, err := s.cfg.Images.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, imageToCRI(img))
	}
	return out, nil
}

// ImageStatus reports an image, or no image (and no error) when it is not
// present, as kubelet expects.
func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	name := req.GetImage().GetImage()
	if name == "" {
		return nil, errdefs.InvalidArgumentf("ImageStatus: image.image is required")
	}
	if ci, err := checkpointImage(name); ci != nil || err != nil {
		return &runtimeapi.ImageStatusResponse{Image: ci}, err
	}
	img, err := s.cfg.Images.Status(ctx, name)
	if err != nil {
		return nil, err
	}
	if img == nil {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	return &runtimeapi.ImageStatusResponse{Image: imageToCRI(*img)}, nil
}

// PullImage downloads a VM image and returns its ref.
func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	name := req.GetImage().GetImage()
	if name == "" {
		return nil, errdefs.InvalidArgumentf("PullImage: image.image is required")
	}
	if ci, err := checkpointImage(name); ci != nil || err != nil {
		if err != nil {
			return nil, err
		}
		return &runtimeapi.PullImageResponse{ImageRef: ci.Id}, nil
	}
	ns := req.GetSandboxConfig().GetMetadata().GetNamespace()
	ref, err := s.cfg.Images.Pull(ctx, ns, name, req.GetAuth())
	if err != nil {
		return nil, err
	}
	s.log.Info("image pulled", "image", name, "namespace", ns, "ref", ref)
	return &runtimeapi.PullImageResponse{ImageRef: ref}, nil
}

// RemoveImage removes an image as the image service defines it (the
// store: every name of the image, by name or ID; missing is no error).
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	name := req.GetImage().GetImage()
	if name == "" {
		return nil, errdefs.InvalidArgumentf("RemoveImage: image.image is required")
	}
	if err := s.cfg.Images.Remove(ctx, name); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the image store's filesystem usage.
func (s *Server) ImageFsInfo(ctx context.Context, _ *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	u, err := s.cfg.Images.FsInfo(ctx)
	if err != nil {
		return nil, err
	}
	fs := &runtimeapi.FilesystemUsage{
		Timestamp:  nowNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: u.UsedBytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: u.InodesUsed},
	}
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{fs}}, nil
}

func imageToCRI(img Image) *runtimeapi.Image {
	uid, username := imageUser(img.User)
	return &runtimeapi.Image{
		Id:          img.Ref,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Spec:        &runtimeapi.ImageSpec{Image: img.Ref},
		Uid:         uid,
		Username:    username,
	}
}

// imageUser splits an image config's User as containerd's CRI does: the
// part before any ':' (the group, which the CRI has no field for) is a
// Uid when it is a decimal integer, a Username otherwise; no user sets
// neither.
func imageUser(user string) (*runtimeapi.Int64Value, string) {
	name, _, _ := strings.Cut(user, ":")
	if name == "" {
		return nil, ""
	}
	if uid, err := strconv.ParseInt(name, 10, 64); err == nil {
		return &runtimeapi.Int64Value{Value: uid}, ""
	}
	return nil, name
}
