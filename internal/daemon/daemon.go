// Package daemon wires podvisor's parts into a running CRI server. The
// podvisor command parses flags into a Config and calls Run; tests run the
// same wiring in-process.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/podvisor/podvisor/fakes/fakenet"
	"github.com/podvisor/podvisor/internal/unixsock"
	"github.com/podvisor/podvisor/internal/version"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/hypervisor/libvirt"
	"github.com/podvisor/podvisor/runtime/image"
	"github.com/podvisor/podvisor/runtime/image/crdsource"
	"github.com/podvisor/podvisor/runtime/kube/apiclient"
	"github.com/podvisor/podvisor/runtime/metrics"
	"github.com/podvisor/podvisor/runtime/network"
	"github.com/podvisor/podvisor/runtime/pod"
	"github.com/podvisor/podvisor/runtime/store"
	"github.com/podvisor/podvisor/runtime/streamserver"
	"github.com/podvisor/podvisor/runtime/vmbuild"
)

// ProfilingAddr returns the pprof endpoint's address ("" when disabled).
func (d *Daemon) ProfilingAddr() string {
	if d.profiling == nil {
		return ""
	}
	return d.profiling.Addr()
}

// MetricsAddr returns the metrics endpoint's address ("" when disabled).
func (d *Daemon) MetricsAddr() string {
	if d.metrics == nil {
		return ""
	}
	return d.metrics.Addr()
}

// Version is podvisor's version (internal/version: the VERSION file).
var Version = version.String()

// Config is the daemon's configuration.
type Config struct {
	// Listen is the CRI endpoint, unix:///path/to.sock.
	Listen string `json:"listen"`
	// StateDir holds the metadata store, VM directories and images.
	StateDir string `json:"stateDir"`
	// Hypervisor is "sim" or "libvirt".
	Hypervisor string `json:"hypervisor"`
	// Network is "fake" (addresses without kernel objects; the default
	// with the sim hypervisor) or "cni".
	Network string `json:"network"`
	// ImageDir is the image store (default <StateDir>/images).
	ImageDir string `json:"imageDir"`
	// ImageTranslationsDir holds image translation configs.
	ImageTranslationsDir string `json:"imageTranslationsDir"`
	// ImagePullGiveUp is how long an image download may go without
	// progress before the pull fails (0: image.DefaultGiveUpAfter).
	ImagePullGiveUp time.Duration `json:"imagePullGiveUp"`
	// ImageAllowUntranslated lets image names no translation matches be
	// downloaded as URLs (Virtlet's behaviour); off, only URLs of the
	// operator's translations and VirtletImageMappings are fetched.
	ImageAllowUntranslated bool `json:"imageAllowUntranslated"`
	// ImageDownloadAllowNetworks are CIDRs (or single addresses) downloads
	// may connect to although loopback, link-local, private or otherwise
	// refused, e.g. a mirror on the node: 127.0.0.1/32.
	ImageDownloadAllowNetworks []string `json:"imageDownloadAllowNetworks"`
	// ImageDownloadAllowPrivate lets downloads reach private addresses
	// (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).
	ImageDownloadAllowPrivate bool `json:"imageDownloadAllowPrivate"`
	// ImageDownloadAllowInsecureRedirects lets downloads follow redirects
	// to plain http on another host or port.
	ImageDownloadAllowInsecureRedirects bool `json:"imageDownloadAllowInsecureRedirects"`
	// ImageInsecureRegistries are OCI registries (host[:port]) reached
	// over plain http or unverified TLS.
	ImageInsecureRegistries []string `json:"imageInsecureRegistries"`
	// ImageRegistryCAFiles are PEM files of CAs trusted for OCI
	// registries besides the system's.
	ImageRegistryCAFiles []string `json:"imageRegistryCAFiles"`
	// ImageRegistryMirrors maps a registry to mirrors tried first
	// (config file only).
	ImageRegistryMirrors map[string][]string `json:"imageRegistryMirrors"`
	// ImageMaxSize is the largest image file a download may bring, a
	// quantity like 64Gi (the default) or 500Mi; "0" removes the limit.
	ImageMaxSize string `json:"imageMaxSize"`
	// SimBootTime is the simulated guests' boot time.
	SimBootTime time.Duration `json:"simBootTime"`
	// CgroupDriver reported to kubelet: cgroupfs or systemd.
	CgroupDriver string `json:"cgroupDriver"`
	// SocketMode is the permission of the CRI socket (default 0660).
	SocketMode os.FileMode `json:"socketMode"`
	// LibvirtURI is the libvirt connection (default qemu:///system).
	LibvirtURI string `json:"libvirtURI"`
	// KVM is auto (try it, fall back to TCG), on or off.
	KVM string `json:"kvm"`
	// KVMProbeDir holds the KVM trial's boot sector and serial log, which
	// libvirtd and QEMU open: a path they see as podvisor does (default
	// <StateDir>/kvm-probe; the DaemonSet mounts the state dir in every
	// container).
	KVMProbeDir string `json:"kvmProbeDir"`
	// CNIConfDir and CNIBinDirs locate the CNI configuration and plugins
	// (defaults /etc/cni/net.d; /opt/cni/bin and /usr/lib/cni).
	CNIConfDir string   `json:"cniConfDir"`
	CNIBinDirs []string `json:"cniBinDirs"`
	// Emulator is the QEMU wrapper that puts the VM's NIC in the pod's
	// network namespace (default: podvisor-vmwrapper next to podvisor).
	Emulator string `json:"emulator"`
	// MetricsAddr is host:port of the Prometheus endpoint (/metrics): the
	// node's IP or loopback (podvisor's flag defaults to 127.0.0.1:9474);
	// empty disables it.
	MetricsAddr string `json:"metricsAddr"`
	// MetricsBestEffort makes a MetricsAddr that cannot be bound (the
	// default port taken by another podvisor) a warning, not a failed
	// start: set for the flag's default, never for an address given.
	MetricsBestEffort bool `json:"-"`
	// Profiling serves Go's pprof handlers under /debug/pprof/ on
	// ProfilingAddr, a listener of its own on loopback.
	Profiling bool `json:"profiling"`
	// ProfilingAddr is the pprof listener's host:port; it must be a
	// loopback address (default 127.0.0.1:9475).
	ProfilingAddr string `json:"profilingAddr"`
	// StreamAddr is the streaming server's host:port for attach, exec and
	// port-forward (default 127.0.0.1:0, a free port on loopback, as
	// containerd does; kubelet proxies to it).
	StreamAddr string `json:"streamAddr"`
	// Kubeconfig, when set, gives podvisor a Kubernetes client to read the
	// ConfigMaps and Secrets named by cloud-init data source annotations
	// and to watch VirtletImageMapping objects (image translations).
	Kubeconfig string `json:"kubeconfig"`
	// ImageMappingNamespace is the namespace whose VirtletImageMappings
	// are watched; "" (the default) watches all namespaces. Used only
	// with Kubeconfig.
	ImageMappingNamespace string `json:"imageMappingNamespace"`
	// ExecStdinLimit is the most stdin, in bytes, `kubectl exec -i` may
	// send a VM's command (0: pod.DefaultExecStdinLimit, 1 MiB; at most
	// pod.MaxExecStdinLimit); more fails the exec with an error.
	ExecStdinLimit int64 `json:"execStdinLimit"`
	// TCGTranslationCacheMiB bounds the translation cache of each VM
	// that runs on TCG (no KVM), in MiB: QEMU's tb-size (0: QEMU's
	// default, 1 GiB). docs/bench/overhead.md measures what it costs.
	TCGTranslationCacheMiB uint `json:"tcgTranslationCacheMiB"`
	// NodeName is this node's Node object, which podvisor labels with its
	// accelerator (LabelAccelerator, AnnotationAcceleratorReason); ""
	// labels nothing. Needs Kubeconfig and RBAC to patch nodes.
	NodeName string `json:"nodeName"`

	// imageMappingSyncWait bounds how long New waits for the first list of
	// VirtletImageMappings (default 10 s); tests shorten it.
	imageMappingSyncWait time.Duration
	// Parsed by Validate from ImageDownloadAllowNetworks and ImageMaxSize.
	imageAllowNets []netip.Prefix
	imageMaxBytes  int64
}

// DefaultMetricsAddr and DefaultProfilingAddr are the flags' defaults.
const (
	DefaultMetricsAddr   = "127.0.0.1:9474"
	DefaultProfilingAddr = "127.0.0.1:9475"
)

// nodeNameRE is a DNS subdomain (RFC 1123), what a Node's name must be.
var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// defaultImageMappingSyncWait is how long start-up waits for the first list
// of VirtletImageMappings before going on without them.
const defaultImageMappingSyncWait = 10 * time.Second

// Validate checks c and fills defaults.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return errors.New("listen: an endpoint like unix:///run/podvisor/podvisor.sock is required")
	}
	if _, err := SocketPath(c.Listen); err != nil {
		return err
	}
	if c.StateDir == "" {
		return errors.New("state-dir: a directory is required")
	}
	switch c.Hypervisor {
	case "sim", "libvirt":
	case "":
		c.Hypervisor = "libvirt"
	default:
		return fmt.Errorf("hypervisor: %q is not accepted: use sim or libvirt", c.Hypervisor)
	}
	switch c.Network {
	case "fake", "cni":
	case "":
		c.Network = "cni"
		if c.Hypervisor == "sim" {
			c.Network = "fake"
		}
	default:
		return fmt.Errorf("network: %q is not accepted: use fake or cni", c.Network)
	}
	switch c.CgroupDriver {
	case "cgroupfs", "systemd":
	case "":
		c.CgroupDriver = "cgroupfs"
	default:
		return fmt.Errorf("cgroup-driver: %q is not accepted: use cgroupfs or systemd", c.CgroupDriver)
	}
	if c.ImageDir == "" {
		c.ImageDir = filepath.Join(c.StateDir, "images")
	}
	if c.ImagePullGiveUp < 0 {
		return fmt.Errorf("image-pull-give-up: %v is negative, accepted: a positive duration, or 0 for the default %v", c.ImagePullGiveUp, image.DefaultGiveUpAfter)
	}
	if err := c.validateDownloads(); err != nil {
		return err
	}
	if err := c.validateNodeFacing(); err != nil {
		return err
	}
	if c.ImageMappingNamespace != "" && c.Kubeconfig == "" {
		return errors.New("image-mapping-namespace: needs kubeconfig, the Kubernetes client that watches VirtletImageMappings")
	}
	if c.SocketMode == 0 {
		c.SocketMode = 0o660
	}
	if c.imageMappingSyncWait == 0 {
		c.imageMappingSyncWait = defaultImageMappingSyncWait
	}
	if c.StreamAddr == "" {
		c.StreamAddr = "127.0.0.1:0"
	}
	if c.LibvirtURI == "" {
		c.LibvirtURI = "qemu:///system"
	}
	switch c.KVM {
	case libvirt.KVMAuto, libvirt.KVMOn, libvirt.KVMOff:
	case "":
		c.KVM = libvirt.KVMAuto
	default:
		return fmt.Errorf("kvm: %q is not accepted: use auto, on or off", c.KVM)
	}
	if c.KVMProbeDir == "" {
		c.KVMProbeDir = filepath.Join(c.StateDir, "kvm-probe")
	} else if !filepath.IsAbs(c.KVMProbeDir) {
		return fmt.Errorf("kvm-probe-dir: %q is not accepted: use an absolute path that libvirtd sees too", c.KVMProbeDir)
	}
	return nil
}

// validateNodeFacing checks what other hosts see of the daemon: the
// metrics and pprof listeners and the Node it labels.
func (c *Config) validateNodeFacing() error {
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("metrics-addr: %q is not accepted: use HOST:PORT, the node's IP (e.g. $(NODE_IP):9474) or 127.0.0.1:9474", c.MetricsAddr)
		}
	}
	if c.ProfilingAddr == "" {
		c.ProfilingAddr = DefaultProfilingAddr
	}
	if err := metrics.CheckLoopback(c.ProfilingAddr); err != nil {
		return fmt.Errorf("profiling-addr: %w; pprof is served on loopback only", err)
	}
	if c.NodeName != "" && c.Kubeconfig == "" {
		return errors.New("node-name: needs kubeconfig, the Kubernetes client that labels the node")
	}
	if c.NodeName != "" && !nodeNameRE.MatchString(c.NodeName) {
		return fmt.Errorf("node-name: %q is not accepted: use the node's name as Kubernetes has it (a DNS subdomain: lower case letters, digits, '-' and '.')", c.NodeName)
	}
	return nil
}

// SocketPath returns the file path of a unix:// endpoint.
func SocketPath(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "unix" || u.Path == "" {
		return "", fmt.Errorf("listen: %q is not accepted: use unix:///absolute/path.sock", endpoint)
	}
	return u.Path, nil
}

// Daemon is a wired podvisor.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	hv      hypervisor.Hypervisor
	db      *store.DB
	manager *pod.Manager
	grpc    *grpc.Server
	stream  *streamserver.Server
	metrics *metrics.Server
	// profiling serves pprof on loopback (--profiling); nil when off.
	profiling *metrics.Server
	health    *health.Server
	lis       net.Listener
	closers   []func() error
	// translations turn image names into URLs (tests ask it directly).
	translations *image.Translations
}

// watchImageMappings starts the VirtletImageMapping watch, which Stop ends.
// It waits for the first list at most cfg.imageMappingSyncWait: an API
// server that is down or lacks the CRD must not keep the node's VMs from
// being managed. The watch then keeps retrying in the background and pulls
// translate with what it has (the directory's configs, at least).
func (d *Daemon) watchImageMappings(ctx context.Context, client *apiclient.Client) *crdsource.Source {
	ns := d.cfg.ImageMappingNamespace
	src := crdsource.New(client, crdsource.Options{Namespace: ns, Logger: d.log})
	d.closers = append(d.closers, src.Close)
	where := ns
	if where == "" {
		where = "(all)"
	}
	wait, cancel := context.WithTimeout(ctx, d.cfg.imageMappingSyncWait)
	defer cancel()
	if err := src.WaitForSync(wait); err != nil {
		// A cluster without the CRD is a normal set-up, not a fault: the
		// watch said so at info level and looks for it now and then.
		level := slog.LevelWarn
		if errors.Is(err, apiclient.ErrNotFound) {
			level = slog.LevelInfo
		}
		d.log.Log(ctx, level, "VirtletImageMappings not listed yet; going on without them and retrying in the background",
			"namespace", where, "waited", d.cfg.imageMappingSyncWait, "err", err)
	} else {
		d.log.Info("watching VirtletImageMappings", "namespace", where)
	}
	return src
}

// listenUnix listens on a unix socket with the given mode (whatever the
// umask), replacing a stale socket file (left by a killed daemon) but
// nothing else: a live socket or another file is an error.
func listenUnix(endpoint string, mode os.FileMode) (net.Listener, error) {
	path, err := SocketPath(endpoint)
	if err != nil {
		return nil, err
	}
	return unixsock.Listen(path, mode)
}

// Serve answers CRI calls until Stop. It returns nil after a graceful stop.
func (d *Daemon) Serve() error {
	d.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	d.health.SetServingStatus("runtime.v1.RuntimeService", healthpb.HealthCheckResponse_SERVING)
	d.health.SetServingStatus("runtime.v1.ImageService", healthpb.HealthCheckResponse_SERVING)
	if d.metrics != nil {
		go d.metrics.Serve(d.log)
		d.log.Info("serving metrics", "addr", "http://"+d.metrics.Addr()+"/metrics")
	}
	if d.profiling != nil {
		go d.profiling.Serve(d.log)
		d.log.Info("serving pprof", "addr", "http://"+d.profiling.Addr()+"/debug/pprof/")
	}
	go func() {
		if err := d.stream.Serve(); err != nil {
			d.log.Error("streaming server stopped", "err", err)
		}
	}()
	d.log.Info("serving CRI", "listen", d.cfg.Listen, "stateDir", d.cfg.StateDir, "streaming", d.stream.Addr(), "version", Version)
	if err := d.grpc.Serve(d.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving CRI: %w", err)
	}
	return nil
}

// Stop finishes calls in flight (up to timeout), then releases everything.
// VMs keep running.
func (d *Daemon) Stop(timeout time.Duration) {
	d.health.Shutdown()
	done := make(chan struct{})
	go func() { d.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		d.log.Warn("calls still running at shutdown; stopping them")
		d.grpc.Stop()
	}
	d.closeParts()
	d.log.Info("stopped")
}

func (d *Daemon) closeParts() {
	if d.manager != nil {
		d.manager.Close()
	}
	for _, c := range d.closers {
		if err := c(); err != nil {
			d.log.Warn("closing", "err", err)
		}
	}
	if d.hv != nil {
		d.hv.Close()
	}
	if d.db != nil {
		d.db.Close()
	}
	if d.lis != nil {
		d.lis.Close()
	}
	if d.stream != nil {
		d.stream.Close()
	}
	if d.metrics != nil {
		d.metrics.Close()
	}
	if d.profiling != nil {
		d.profiling.Close()
	}
}

// The lifecycle finds the optional network interfaces by type assertion; a
// signature that drifts must fail the build, not switch the feature off.
// (The networks import only runtime/podtypes, not runtime/pod, so the
// assertions live here, where both meet.)
var (
	_ pod.Network          = (*network.Network)(nil)
	_ pod.NetworkCollector = (*network.Network)(nil)
	_ pod.NetworkResumer   = (*network.Network)(nil)
	_ pod.Network          = (*fakenet.Network)(nil)
	_ pod.NetworkCollector = (*fakenet.Network)(nil)
	_ pod.VMAssembler      = (*vmbuild.Assembler)(nil)
	_ pod.VMResources      = (*vmbuild.Assembler)(nil)
)

// wrapperPath finds the emulator wrapper: the configured path, else
// podvisor-vmwrapper next to the running binary, else on PATH.
func wrapperPath(configured string) (string, error) {
	if configured != "" {
		if _, err := os.Stat(configured); err != nil {
			return "", fmt.Errorf("emulator: %w", err)
		}
		return configured, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "podvisor-vmwrapper")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("podvisor-vmwrapper")
	if err != nil {
		return "", errors.New("emulator: podvisor-vmwrapper is neither next to podvisor nor on PATH; give --emulator")
	}
	return filepath.Abs(p)
}

// listenMetrics opens the /metrics listener (warning about one open on
// every address of a host-network pod) and the loopback pprof listener.
func (d *Daemon) listenMetrics(mx *metrics.Metrics) error {
	if addr := d.cfg.MetricsAddr; addr != "" {
		if host, _, _ := net.SplitHostPort(addr); host == "" || net.ParseIP(host).IsUnspecified() {
			d.log.Warn("metrics listen on every address of the node, unauthenticated: give the node's IP (--metrics-addr=$(NODE_IP):9474) or loopback", "metricsAddr", addr)
		}
		srv, err := mx.Listen(addr)
		switch {
		case err == nil:
			d.metrics = srv
		case d.cfg.MetricsBestEffort:
			d.log.Warn("metrics not served (the default address is taken; --metrics-addr picks another)", "err", err)
		default:
			return err
		}
	}
	if d.cfg.Profiling {
		srv, err := metrics.ListenProfiling(d.cfg.ProfilingAddr)
		if err != nil {
			return err
		}
		d.profiling = srv
	}
	return nil
}

// privateDir creates dir, or tightens an existing one (kubelet's
// DirectoryOrCreate and older versions made it 0755), to 0700: VM disks,
// cloud-init drives and images are for podvisor and QEMU (root) only.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}
