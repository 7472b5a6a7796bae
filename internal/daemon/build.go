package daemon

import (
	"runtime"

	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/podvisor/podvisor/fakes/fakenet"
	"github.com/podvisor/podvisor/fakes/simhv"
	"github.com/podvisor/podvisor/internal/version"
	"github.com/podvisor/podvisor/runtime/cgroups"
	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/cri"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/failpoint"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/hypervisor/libvirt"
	"github.com/podvisor/podvisor/runtime/image"
	"github.com/podvisor/podvisor/runtime/kube"
	"github.com/podvisor/podvisor/runtime/kube/apiclient"
	"github.com/podvisor/podvisor/runtime/metrics"
	"github.com/podvisor/podvisor/runtime/network"
	"github.com/podvisor/podvisor/runtime/pod"
	"github.com/podvisor/podvisor/runtime/store"
	"github.com/podvisor/podvisor/runtime/streamserver"
	"github.com/podvisor/podvisor/runtime/vmbuild"
)

// New builds the daemon: opens the store, connects the hypervisor, recovers
// state and listens on the socket. Serve starts answering.
func New(ctx context.Context, cfg Config, log *slog.Logger) (d *Daemon, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	d = &Daemon{cfg: cfg, log: log}
	// Every failure below returns a nil daemon: release what was opened
	// through this reference, not the named result.
	built := d
	defer func() {
		if err != nil {
			built.closeParts()
		}
	}()
	if err := privateDir(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	if d.db, err = store.Open(filepath.Join(cfg.StateDir, "meta.db")); err != nil {
		return nil, err
	}
	domainType, info, err := d.openHypervisor(ctx)
	if err != nil {
		return nil, err
	}
	nw, err := d.openNetwork(ctx)
	if err != nil {
		return nil, err
	}
	dataSource, err := d.openKube(ctx, info)
	if err != nil {
		return nil, err
	}
	images, err := d.openImages()
	if err != nil {
		return nil, err
	}
	// The metrics count the manager's sandboxes and containers at each
	// scrape, once it exists; it reports its steps to them.
	mx := metrics.New(managerCounts{&d.manager})
	if err := d.openManager(ctx, mx, images, nw, dataSource, domainType); err != nil {
		return nil, err
	}
	mx.AddVMs(managerVMs{&d.manager}, info)
	if err := d.openServers(mx, images, nw.ready); err != nil {
		return nil, err
	}
	return d, nil
}

// openHypervisor connects the configured hypervisor and returns the domain
// type VMs get and what the hypervisor says it is.
func (d *Daemon) openHypervisor(ctx context.Context) (string, hypervisor.Info, error) {
	cfg, log := d.cfg, d.log
	var domainType string
	switch cfg.Hypervisor {
	case "sim":
		// A small console buffer: the simulated "serial ports" live in this
		// process, where QEMU would hold them on a real node.
		sim, err := simhv.New(simhv.Options{StateDir: filepath.Join(cfg.StateDir, "sim"), BootTime: cfg.SimBootTime, ConsoleBufferSize: 4096})
		if err != nil {
			return "", hypervisor.Info{}, fmt.Errorf("starting the simulated hypervisor: %w", err)
		}
		d.hv = sim
		domainType = domain.TypeQEMU
	case "libvirt":
		lv, err := libvirt.New(ctx, libvirt.Options{URI: cfg.LibvirtURI, KVM: cfg.KVM, ProbeDir: cfg.KVMProbeDir, Logger: log})
		if err != nil {
			return "", hypervisor.Info{}, fmt.Errorf("connecting to libvirt at %s: %w", cfg.LibvirtURI, err)
		}
		d.hv = lv
		domainType = lv.DomainType()
		log.Info("accelerator chosen", "accelerator", lv.Accelerator(), "why", lv.AcceleratorReason())
	}
	info, err := d.hv.Info(ctx)
	if err != nil {
		return "", hypervisor.Info{}, fmt.Errorf("asking the hypervisor what it is: %w", err)
	}
	log.Info("hypervisor connected", "hypervisor", info.Name, "version", info.Version, "accelerator", info.Accelerator, "domainType", domainType)
	return domainType, info, nil
}

// netParts are the pod network's faces: the lifecycle's, the VMs' NICs,
// the readiness RuntimeStatus reports and the emulator that plugs NICs in.
type netParts struct {
	netw     pod.Network
	nics     vmbuild.NICProvider
	ready    func(context.Context) error
	emulator string
}

func (d *Daemon) openNetwork(ctx context.Context) (netParts, error) {
	cfg := d.cfg
	var p netParts
	switch cfg.Network {
	case "fake":
		fn, err := fakenet.New(filepath.Join(cfg.StateDir, "fakenet"), "")
		if err != nil {
			return p, err
		}
		p.netw = fn
	case "cni":
		nw, err := network.New(network.Config{ConfDir: cfg.CNIConfDir, BinDirs: cfg.CNIBinDirs,
			CacheDir: filepath.Join(cfg.StateDir, "network"), Logger: d.log})
		if err != nil {
			return p, fmt.Errorf("setting up the CNI network: %w", err)
		}
		d.closers = append(d.closers, nw.Close)
		p.netw, p.nics, p.ready = nw, nw, nw.Ready
		if p.emulator, err = wrapperPath(cfg.Emulator); err != nil {
			return p, err
		}
		if err := nw.Ready(ctx); err != nil {
			d.log.Warn("the pod network is not ready yet; pods will fail until it is", "err", err)
		}
	}
	return p, nil
}

// openKube connects the API server when a kubeconfig is given: the
// cloud-init data source, the VirtletImageMapping watch, the node label.
// It also sets up the image translations (which the watch feeds).
func (d *Daemon) openKube(ctx context.Context, info hypervisor.Info) (cloudinit.DataSource, error) {
	cfg := d.cfg
	var (
		dataSource cloudinit.DataSource
		mappings   []image.MappingSource
	)
	if cfg.Kubeconfig != "" {
		kc, err := kube.RESTConfig(cfg.Kubeconfig)
		if err != nil {
			return nil, err
		}
		// One client (one connection to the API server) for the
		// ConfigMap and Secret reads and the VirtletImageMapping watch.
		client, err := apiclient.New(kc)
		if err != nil {
			return nil, err
		}
		dataSource = kube.NewForClient(client)
		mappings = append(mappings, d.watchImageMappings(ctx, client))
		if cfg.NodeName != "" {
			d.closers = append(d.closers, d.labelNode(client, cfg.NodeName, info.Accelerator, info.AcceleratorReason, nodeLabelBackoff()))
		}
	}
	d.translations = image.NewTranslations(cfg.ImageTranslationsDir, mappings...)
	// The namespace watched alone is the operator's; watching all, the
	// mappings of kube-system apply to all pods, the others to their own.
	d.translations.OperatorNamespace = cfg.ImageMappingNamespace
	return dataSource, nil
}

func (d *Daemon) openImages() (imageService, error) {
	cfg := d.cfg
	imgOpts := append(cfg.downloadOptions(), image.WithLogger(d.log))
	if cfg.ImagePullGiveUp > 0 {
		imgOpts = append(imgOpts, image.WithGiveUpAfter(cfg.ImagePullGiveUp))
	}
	imgStore, err := image.NewStore(cfg.ImageDir, d.translations, imgOpts...)
	if err != nil {
		return imageService{}, fmt.Errorf("opening the image store: %w", err)
	}
	return imageService{store: imgStore}, nil
}

// openManager builds the VM assembler and the lifecycle manager, which
// recovers the state of the sandboxes and containers.
func (d *Daemon) openManager(ctx context.Context, mx *metrics.Metrics, images imageService, nw netParts, dataSource cloudinit.DataSource, domainType string) error {
	cfg := d.cfg
	uuidKey, err := loadUUIDKey(filepath.Join(cfg.StateDir, uuidKeyFile))
	if err != nil {
		return err
	}
	overlay, writeISO := timedAssembly(mx)
	vcfg := vmbuild.Config{DomainType: domainType, TCGTranslationCacheMiB: d.cfg.TCGTranslationCacheMiB, Emulator: nw.emulator, NICs: nw.nics, DataSource: dataSource, Logger: d.log,
		Overlay: overlay, WriteISO: writeISO, UUIDKey: uuidKey}
	if ks, ok := dataSource.(*kube.DataSource); ok {
		vcfg.PodLimits = ks // the ephemeral-storage limit CRI does not carry
	}
	if cfg.Hypervisor == "libvirt" {
		// Every VM in its pod's cgroup under its container's limits,
		// growing in place up to the node's CPUs (docs/libvirt.md).
		fs, err := cgroups.Detect()
		if err != nil {
			return fmt.Errorf("placing VMs in their pods' cgroups: %w", err)
		}
		vcfg.Cgroups, vcfg.MaxVCPUs = fs, runtime.NumCPU()
	}
	asm, err := vmbuild.New(vcfg)
	if err != nil {
		return err
	}
	d.manager, err = pod.New(ctx, pod.Config{
		Hypervisor: d.hv, Store: d.db, Network: nw.netw, Images: images, Assembler: asm, Resources: asm,
		StateDir: cfg.StateDir, Logger: d.log, ExecStdinLimit: cfg.ExecStdinLimit,
		Failpoints:  failpoint.Parse(os.Getenv(failpoint.EnvVar)),
		ObserveStep: mx.ObserveStep,
		Version:     version.String(),
	})
	if err != nil {
		return fmt.Errorf("recovering state: %w", err)
	}
	images.store.SetInUse(func() map[string]bool {
		inUse := map[string]bool{}
		for _, c := range d.manager.ListContainers(pod.ContainerFilter{}) {
			inUse[c.ImageRef] = true
		}
		return inUse
	})
	return nil
}

// openServers makes the streaming server, the CRI gRPC server (with the
// metrics' and cri's interceptors and health), the metrics listener and
// the CRI socket.
func (d *Daemon) openServers(mx *metrics.Metrics, images imageService, networkReady func(context.Context) error) error {
	cfg := d.cfg
	var err error
	d.stream, err = streamserver.NewServer(cfg.StreamAddr, d.manager, d.manager, d.manager)
	if err != nil {
		return err
	}
	srv, err := cri.NewServer(cri.Config{
		Lifecycle: d.manager, Images: images, Hypervisor: d.hv,
		Version: Version, CgroupDriver: cfg.CgroupDriver, Logger: d.log,
		Streaming: d.stream, Exec: d.manager, NetworkReady: networkReady,
	})
	if err != nil {
		return err
	}
	if err := d.listenMetrics(mx); err != nil {
		return err
	}
	// cri's interceptors map errors to codes and log failures: innermost,
	// so that the metrics count the codes.
	d.grpc = grpc.NewServer(grpc.ChainUnaryInterceptor(mx.UnaryInterceptor(), srv.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(srv.StreamInterceptor()))
	srv.Register(d.grpc)
	d.health = health.NewServer()
	healthpb.RegisterHealthServer(d.grpc, d.health)
	d.lis, err = listenUnix(cfg.Listen, cfg.SocketMode)
	return err
}
