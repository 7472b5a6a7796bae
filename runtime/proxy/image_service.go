package proxy

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
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

// PullImage goes where forImage says or, when that is the primary only by
// default (no runtime handler, domain or prefix names another runtime),
// where the pod the pull is for runs: kubelet 1.37 sends the pod's
// sandbox config with every pull but the runtime handler only with the
// alpha RuntimeClassInImageCriApi gate (docs/criproxy.md).
func (p *Proxy) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	b := p.forImage(req.GetImage())
	if b == p.primary && req.GetImage().GetRuntimeHandler() == "" {
		if owner := p.sandboxOwner(ctx, req.GetSandboxConfig()); owner != nil {
			b = owner
		}
	}
	return forward(ctx, b, req, b.img.PullImage)
}

// podUIDLabel is the label kubelet puts on every sandbox.
const podUIDLabel = "io.kubernetes.pod.uid"

// sandboxOwnerTimeout bounds how long a pull waits for a non-primary
// runtime to say whether it runs the pod.
const sandboxOwnerTimeout = 2 * time.Second

// sandboxOwner returns the non-primary runtime that runs the pod of cfg:
// the one its annotation names (as RunPodSandbox routes), else the one
// that lists a sandbox of its UID. nil: the primary's, or unknown.
func (p *Proxy) sandboxOwner(ctx context.Context, cfg *runtimeapi.PodSandboxConfig) *backend {
	if cfg == nil {
		return nil
	}
	if b, err := p.forSandbox(cfg, ""); err == nil && b != p.primary {
		return b
	}
	uid := cfg.GetMetadata().GetUid()
	if uid == "" {
		return nil
	}
	for _, b := range p.all[1:] {
		if b.conn.GetState() != connectivity.Ready && b.conn.GetState() != connectivity.Idle {
			continue // a runtime that is down does not hold up containerd's pulls
		}
		lctx, cancel := context.WithTimeout(ctx, sandboxOwnerTimeout)
		resp, err := b.rt.ListPodSandbox(lctx, &runtimeapi.ListPodSandboxRequest{
			Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{podUIDLabel: uid}},
		})
		cancel()
		if err != nil {
			p.log.Debug("asking a runtime whether it runs the pod of a pull", "runtime", b.name, "uid", uid, "err", err)
			continue
		}
		for _, sb := range resp.GetItems() {
			if sb.GetMetadata().GetUid() == uid {
				return b
			}
		}
	}
	return nil
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
