package proxy

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Images belong to a runtime by the spec's runtime_handler or by their
// domain ("virtlet.cloud/cirros" is podvisor's "cirros"); the rest are the
// primary's. Image IDs and tags of a non-primary runtime come back with
// the domain, so kubelet's later calls by ID (status, removal, GC) are
// routed back to it.

func (p *Proxy) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	if spec := req.GetFilter().GetImage(); spec.GetImage() != "" {
		b := p.forImage(spec)
		return forward(ctx, b, req, b.img.ListImages)
	}
	items, err := listAll(ctx, p, "ListImages", req,
		func(b *backend) unary[*runtimeapi.ListImagesRequest, *runtimeapi.ListImagesResponse] {
			return b.img.ListImages
		},
		(*runtimeapi.ListImagesResponse).GetImages)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: items}, nil
}

func (p *Proxy) StreamImages(req *runtimeapi.StreamImagesRequest, s grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	bs := p.all
	if spec := req.GetFilter().GetImage(); spec.GetImage() != "" {
		bs = []*backend{p.forImage(spec)}
	}
	return relay(s.Context(), p, "StreamImages", bs, req,
		func(b *backend) opener[*runtimeapi.StreamImagesRequest, runtimeapi.StreamImagesResponse] {
			return b.img.StreamImages
		}, s.Send)
}

func (p *Proxy) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	b := p.forImage(req.GetImage())
	return forward(ctx, b, req, b.img.ImageStatus)
}

func (p *Proxy) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	b := p.forImage(req.GetImage())
	return forward(ctx, b, req, b.img.PullImage)
}

func (p *Proxy) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	b := p.forImage(req.GetImage())
	return forward(ctx, b, req, b.img.RemoveImage)
}

// ImageFsInfo merges the filesystems of every runtime.
func (p *Proxy) ImageFsInfo(ctx context.Context, req *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	resps, err := fanOut(ctx, p, "ImageFsInfo", func(ctx context.Context, b *backend) (*runtimeapi.ImageFsInfoResponse, error) {
		return b.img.ImageFsInfo(ctx, clone(req))
	})
	if err != nil {
		return nil, err
	}
	out := &runtimeapi.ImageFsInfoResponse{}
	for _, r := range resps {
		out.ImageFilesystems = append(out.ImageFilesystems, r.GetImageFilesystems()...)
		out.ContainerFilesystems = append(out.ContainerFilesystems, r.GetContainerFilesystems()...)
	}
	return out, nil
}
