package daemon

import (
	"context"
	"errors"
	"strings"

	"github.com/podvisor/podvisor/runtime/cri"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/image"
)

// imageService adapts the image store to the CRI layer and the lifecycle,
// translating its error sentinels into error kinds.
type imageService struct {
	store *image.Store
}

func mapImageErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, image.ErrNotFound):
		return errdefs.NotFoundf("%w", err)
	case errors.Is(err, image.ErrInUse):
		return errdefs.FailedPreconditionf("%w", err)
	}
	return err
}

// criName is how kubelet names a stored image: with the virtlet.cloud/
// prefix and a tag, so that its name matching works as with containerd.
func criName(name string) string {
	if !strings.HasPrefix(name, image.CRIPrefix) {
		name = image.CRIPrefix + name
	}
	return name
}

func (s imageService) Pull(ctx context.Context, namespace, name string) (string, error) {
	ref, err := s.store.PullIn(ctx, namespace, name)
	return ref, mapImageErr(err)
}

func (s imageService) List(ctx context.Context) ([]cri.Image, error) {
	imgs, err := s.store.List(ctx)
	if err != nil {
		return nil, mapImageErr(err)
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
		return nil, mapImageErr(err)
	}
	out := criImage(*img)
	return &out, nil
}

func (s imageService) Remove(ctx context.Context, nameOrRef string) error {
	return mapImageErr(s.store.Remove(ctx, nameOrRef))
}

func (s imageService) FsInfo(ctx context.Context) (cri.FsUsage, error) {
	u, err := s.store.FsInfo(ctx)
	if err != nil {
		return cri.FsUsage{}, mapImageErr(err)
	}
	return cri.FsUsage{Mountpoint: u.Mountpoint, UsedBytes: u.UsedBytes, InodesUsed: u.InodesUsed}, nil
}

func (s imageService) Resolve(ctx context.Context, nameOrRef string) (string, string, error) {
	p, ref, err := s.store.Resolve(ctx, nameOrRef)
	return p, ref, mapImageErr(err)
}

func criImage(img image.Image) cri.Image {
	out := cri.Image{Ref: img.Ref, Size: uint64(img.Size)}
	for _, t := range img.RepoTags {
		out.RepoTags = append(out.RepoTags, criName(t)+":latest")
	}
	for _, d := range img.RepoDigests {
		out.RepoDigests = append(out.RepoDigests, criName(d))
	}
	return out
}
