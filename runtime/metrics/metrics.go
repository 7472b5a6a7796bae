// Package metrics exports podvisor's Prometheus metrics: CRI call latency
// by method and code, sandboxes and containers by state, image pulls, VM
// start latency and the duration of each step of making a VM pod.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Counts reports how many sandboxes and containers are in each state.
type Counts interface {
	SandboxCounts() map[string]int
	ContainerCounts() map[string]int
}

// Metrics holds the registry and the instruments.
type Metrics struct {
	reg        *prometheus.Registry
	criLatency *prometheus.HistogramVec
	pulls      *prometheus.CounterVec
	vmStart    prometheus.Histogram
	steps      *prometheus.HistogramVec
}

// Steps of making a VM pod, as ObserveStep names them.
const (
	StepNetwork   = "network"   // RunPodSandbox's CNI ADD
	StepAssemble  = "assemble"  // CreateContainer's disks, drive and XML
	StepOverlay   = "overlay"   // the root disk (part of assemble)
	StepCloudInit = "cloudinit" // the cloud-init drive (part of assemble)
	StepDefine    = "define"    // the domain's definition
	StepStart     = "start"     // the domain's start
)

// New registers podvisor's metrics; counts is read at every scrape.
func New(counts Counts) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		criLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podvisor_cri_request_duration_seconds",
			Help:    "Latency of CRI calls by method and gRPC code.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"method", "code"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podvisor_image_pulls_total",
			Help: "Image pulls by result (success or failure).",
		}, []string{"result"}),
		vmStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "podvisor_vm_start_duration_seconds",
			Help:    "Time StartContainer took to start a VM on the hypervisor.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podvisor_vm_step_duration_seconds",
			Help:    "Duration of each step of making a VM pod: network, assemble (overlay, cloudinit), define, start.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"step"}),
	}
	m.reg.MustRegister(m.criLatency, m.pulls, m.vmStart, m.steps,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{counts: counts,
			sandboxes:  prometheus.NewDesc("podvisor_sandboxes", "Pod sandboxes by state.", []string{"state"}, nil),
			containers: prometheus.NewDesc("podvisor_containers", "VM containers by state.", []string{"state"}, nil),
		})
	return m
}

type stateCollector struct {
	counts                Counts
	sandboxes, containers *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sandboxes
	ch <- c.containers
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for state, n := range c.counts.SandboxCounts() {
		ch <- prometheus.MustNewConstMetric(c.sandboxes, prometheus.GaugeValue, float64(n), state)
	}
	for state, n := range c.counts.ContainerCounts() {
		ch <- prometheus.MustNewConstMetric(c.containers, prometheus.GaugeValue, float64(n), state)
	}
}

// ObserveStep records that a step of making a VM pod took d.
func (m *Metrics) ObserveStep(step string, d time.Duration) {
	m.steps.WithLabelValues(step).Observe(d.Seconds())
}

// UnaryInterceptor times every CRI call.
func (m *Metrics) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
		m.criLatency.WithLabelValues(method, status.Code(err).String()).Observe(time.Since(start).Seconds())
		if method == "PullImage" {
			result := "success"
			if err != nil {
				result = "failure"
			}
			m.pulls.WithLabelValues(result).Inc()
		}
		if method == "StartContainer" && err == nil {
			m.vmStart.Observe(time.Since(start).Seconds())
		}
		return resp, err
	}
}

// Server serves /metrics.
type Server struct {
	lis net.Listener
	srv *http.Server
}

// Listen starts serving /metrics on addr (host:port): the node's IP for a
// Prometheus outside the node, or loopback.
func (m *Metrics) Listen(addr string) (*Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return listen("metrics", addr, mux)
}

// ListenProfiling starts serving Go's pprof handlers under /debug/pprof/
// (as kubelet's enableProfilingHandler does) on addr, which must be a
// loopback address: profiles show memory contents, cost CPU and have no
// authentication, so they get a listener of their own that stays on the
// node even when /metrics listens on the node's IP.
func ListenProfiling(addr string) (*Server, error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, fmt.Errorf("profiling: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return listen("profiling", addr, mux)
}

// CheckLoopback returns an error unless addr is host:port with host a
// loopback IP (127.0.0.0/8, ::1) or "localhost".
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address: use 127.0.0.1:PORT (or [::1]:PORT)", addr)
	}
	return nil
}

func listen(what, addr string, h http.Handler) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listening on %s: %w", what, addr, err)
	}
	return &Server{lis: lis, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve serves until Close.
func (s *Server) Serve(log *slog.Logger) {
	if err := s.srv.Serve(s.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server stopped", "err", err)
	}
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }
