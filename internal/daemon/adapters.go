package daemon

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/cri"
	"github.com/podvisor/podvisor/runtime/image"
)

// imageService adapts the image store to the CRI layer and the lifecycle
// (the store's sentinels carry their error kinds: errdefs.Sentinel).
type imageService struct {
	store *image.Store
}

func (s imageService) Pull(ctx context.Context, namespace, name string, auth *runtimeapi.AuthConfig) (string, error) {
	var a *image.Auth
	if auth != nil {
		a = &image.Auth{
			Username: auth.GetUsername(), Password: auth.GetPassword(), Auth: auth.GetAuth(),
			IdentityToken: auth.GetIdentityToken(), RegistryToken: auth.GetRegistryToken(),
		}
	}
	return s.store.PullImage(ctx, namespace, name, a)
}

func (s imageService) List(ctx context.Context) ([]cri.Image, error) {
	imgs, err := s.store.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]cri.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, criImage(img))
	}
	return out, nil
}

func (s imageService) Status(ctx context.Context, nameOrRef string) (*cri.Image, error) {
	img, err := s.store.Status(ctx, nameOrRef)
	if err != nil || img == nil {
		return nil, err
	}
	out := criImage(*img)
	return &out, nil
}

func (s imageService) Remove(ctx context.Context, nameOrRef string) error {
	return s.store.RemoveImage(ctx, nameOrRef)
}

func (s imageService) FsInfo(ctx context.Context) (cri.FsUsage, error) {
	u, err := s.store.FsInfo(ctx)
	if err != nil {
		return cri.FsUsage{}, err
	}
	return cri.FsUsage{Mountpoint: u.Mountpoint, UsedBytes: u.UsedBytes, InodesUsed: u.InodesUsed}, nil
}

func (s imageService) Resolve(ctx context.Context, nameOrRef string) (string, string, error) {
	p, ref, err := s.store.Resolve(ctx, nameOrRef)
	return p, ref, err
}

func criImage(img image.Image) cri.Image {
	tags, digests := image.CRITags(img)
	return cri.Image{Ref: img.Ref, Size: uint64(img.Size), RepoTags: tags, RepoDigests: digests, User: img.User}
}
