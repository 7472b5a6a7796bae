package proxy

import (
	"context"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The CRI metrics verbs. kubelet reads ListMetricDescriptors once and
// keeps one description per metric name; a metric whose label values do
// not match its description's keys is dropped. Two runtimes may describe
// the same cAdvisor name with different keys (containerd's and podvisor's
// container_cpu_usage_seconds_total), so the proxy describes each name
// once, with the first runtime's keys followed by the keys only a later
// one has, and ListPodSandboxMetrics puts every runtime's label values in
// that order ("" for a key a runtime does not have). A runtime without
// the verbs (Unimplemented), the primary included, adds nothing; when no
// runtime has them the answer is Unimplemented.

// runtimeMetrics is one runtime's answer: its descriptors (nil when it
// has no metrics verbs) and, for ListPodSandboxMetrics, its pods' metrics.
type runtimeMetrics struct {
	b     *backend
	descs []*runtimeapi.MetricDescriptor
	pods  []*runtimeapi.PodSandboxMetrics
}

// ListMetricDescriptors is the union of the runtimes' descriptors.
func (p *Proxy) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	answers, err := fanOut(ctx, p, "ListMetricDescriptors", func(ctx context.Context, b *backend) (runtimeMetrics, error) {
		return descriptorsOf(ctx, b, req)
	})
	if err != nil {
		return nil, err
	}
	merged, ok := mergeDescriptors(answers)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "ListMetricDescriptors: no runtime behind the proxy reports CRI metrics")
	}
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: merged}, nil
}

// descriptorsOf asks one runtime for its descriptors and keeps them;
// Unimplemented is no descriptors (not kept: the runtime may gain them).
func descriptorsOf(ctx context.Context, b *backend, req *runtimeapi.ListMetricDescriptorsRequest) (runtimeMetrics, error) {
	resp, err := b.rt.ListMetricDescriptors(ctx, clone(req))
	if status.Code(err) == codes.Unimplemented {
		return runtimeMetrics{b: b}, nil
	}
	if err != nil {
		return runtimeMetrics{}, err
	}
	b.answered()
	descs := resp.GetDescriptors()
	b.descs.Store(&descs)
	return runtimeMetrics{b: b, descs: descs}, nil
}

// keptDescriptorsOf is a runtime's kept descriptors, asked for once.
func keptDescriptorsOf(ctx context.Context, b *backend) (runtimeMetrics, error) {
	if d := b.descs.Load(); d != nil {
		return runtimeMetrics{b: b, descs: *d}, nil
	}
	return descriptorsOf(ctx, b, &runtimeapi.ListMetricDescriptorsRequest{})
}

// mergeDescriptors describes each name once: the first runtime's keys,
// then keys only later ones have. False when no runtime has metrics.
func mergeDescriptors(answers []runtimeMetrics) ([]*runtimeapi.MetricDescriptor, bool) {
	var merged []*runtimeapi.MetricDescriptor
	byName := map[string]*runtimeapi.MetricDescriptor{}
	some := false
	for _, a := range answers {
		some = some || a.descs != nil
		for _, d := range a.descs {
			m, ok := byName[d.GetName()]
			if !ok {
				m = &runtimeapi.MetricDescriptor{Name: d.GetName(), Help: d.GetHelp(), LabelKeys: slices.Clone(d.GetLabelKeys())}
				byName[d.GetName()] = m
				merged = append(merged, m)
				continue
			}
			for _, k := range d.GetLabelKeys() {
				if !slices.Contains(m.LabelKeys, k) {
					m.LabelKeys = append(m.LabelKeys, k)
				}
			}
		}
	}
	return merged, some
}

// ListPodSandboxMetrics is the union of the runtimes' pod metrics, each
// metric's label values in the order of the merged descriptor's keys.
func (p *Proxy) ListPodSandboxMetrics(ctx context.Context, req *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	answers, err := fanOut(ctx, p, "ListPodSandboxMetrics", func(ctx context.Context, b *backend) (runtimeMetrics, error) {
		r := clone(req)
		b.inbound(r)
		resp, err := b.rt.ListPodSandboxMetrics(ctx, r)
		if status.Code(err) == codes.Unimplemented {
			return runtimeMetrics{b: b}, nil
		}
		if err != nil {
			return runtimeMetrics{}, err
		}
		b.outbound(resp)
		rm, err := keptDescriptorsOf(ctx, b)
		rm.pods = resp.GetPodMetrics()
		return rm, err
	})
	if err != nil {
		return nil, err
	}
	merged, ok := mergeDescriptors(answers)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "ListPodSandboxMetrics: no runtime behind the proxy reports CRI metrics")
	}
	keys := map[string][]string{}
	for _, d := range merged {
		keys[d.Name] = d.LabelKeys
	}
	out := &runtimeapi.ListPodSandboxMetricsResponse{}
	seen := map[string]bool{}
	for _, a := range answers {
		own := map[string][]string{}
		for _, d := range a.descs {
			own[d.GetName()] = d.GetLabelKeys()
		}
		for _, pm := range a.pods {
			if seen[pm.GetPodSandboxId()] {
				continue
			}
			seen[pm.GetPodSandboxId()] = true
			relabel(pm.GetMetrics(), own, keys)
			for _, cm := range pm.GetContainerMetrics() {
				relabel(cm.GetMetrics(), own, keys)
			}
			out.PodMetrics = append(out.PodMetrics, pm)
		}
	}
	return out, nil
}

// relabel puts each metric's label values, in the order of its runtime's
// keys (own), in the order of the merged keys.
func relabel(ms []*runtimeapi.Metric, own, merged map[string][]string) {
	for _, m := range ms {
		from, to := own[m.GetName()], merged[m.GetName()]
		if slices.Equal(from, to) || len(from) != len(m.LabelValues) {
			continue // already in order, or not as described: kubelet decides
		}
		vals := make([]string, len(to))
		for i, k := range to {
			if j := slices.Index(from, k); j >= 0 {
				vals[i] = m.LabelValues[j]
			}
		}
		m.LabelValues = vals
	}
}
