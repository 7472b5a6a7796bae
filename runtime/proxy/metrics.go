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

// runtimeDescriptors is one runtime's answer: its descriptors' keys by name.
type runtimeDescriptors struct {
	b    *backend
	keys map[string][]string
}

// ListMetricDescriptors is the union of the runtimes' descriptors.
func (p *Proxy) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	merged, _, err := p.metricDescriptors(ctx, req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: merged}, nil
}

// metricDescriptors asks every runtime for its descriptors and merges them.
func (p *Proxy) metricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) ([]*runtimeapi.MetricDescriptor, []runtimeDescriptors, error) {
	type answer struct {
		b    *backend
		resp *runtimeapi.ListMetricDescriptorsResponse
	}
	answers, err := fanOut(ctx, p, "ListMetricDescriptors", func(ctx context.Context, b *backend) (answer, error) {
		resp, err := b.rt.ListMetricDescriptors(ctx, clone(req))
		if status.Code(err) == codes.Unimplemented {
			return answer{b: b}, nil
		}
		if err == nil {
			b.answered()
		}
		return answer{b, resp}, err
	})
	if err != nil {
		return nil, nil, err
	}
	var merged []*runtimeapi.MetricDescriptor
	byName := map[string]*runtimeapi.MetricDescriptor{}
	var per []runtimeDescriptors
	for _, a := range answers {
		if a.resp == nil {
			continue
		}
		rd := runtimeDescriptors{b: a.b, keys: map[string][]string{}}
		for _, d := range a.resp.GetDescriptors() {
			rd.keys[d.GetName()] = d.GetLabelKeys()
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
		per = append(per, rd)
	}
	if per == nil {
		return nil, nil, status.Error(codes.Unimplemented, "ListMetricDescriptors: no runtime behind the proxy reports CRI metrics")
	}
	return merged, per, nil
}

// ListPodSandboxMetrics is the union of the runtimes' pod metrics, each
// metric's label values in the order of the merged descriptor's keys.
func (p *Proxy) ListPodSandboxMetrics(ctx context.Context, req *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	merged, per, err := p.metricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		return nil, err
	}
	keys := map[string][]string{}
	for _, d := range merged {
		keys[d.Name] = d.LabelKeys
	}
	out := &runtimeapi.ListPodSandboxMetricsResponse{}
	seen := map[string]bool{}
	for _, rd := range per {
		r := clone(req)
		rd.b.inbound(r)
		resp, err := rd.b.rt.ListPodSandboxMetrics(ctx, r)
		if err != nil {
			if rd.b.primary {
				return nil, rd.b.wrap(err)
			}
			p.log.Warn("ListPodSandboxMetrics: runtime left out of the result", "runtime", rd.b.name, "err", err)
			continue
		}
		rd.b.outbound(resp)
		for _, pm := range resp.GetPodMetrics() {
			if seen[pm.GetPodSandboxId()] {
				continue
			}
			seen[pm.GetPodSandboxId()] = true
			relabel(pm.GetMetrics(), rd.keys, keys)
			for _, cm := range pm.GetContainerMetrics() {
				relabel(cm.GetMetrics(), rd.keys, keys)
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
