// Command podvisor is the CRI runtime daemon whose containers are VMs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/podvisor/podvisor/internal/daemon"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/pod"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "podvisor:", err)
		os.Exit(1)
	}
}

// cliFlags are the flags that are not fields of daemon.Config.
type cliFlags struct {
	configFile, logLevel, logFormat, allowNets, cniBin, virtletConfig, insecureRegs, regCAs *string
	version                                                                                 *bool
}

// defineFlags registers podvisor's flags on fs, into cfg and the result.
func defineFlags(fs *flag.FlagSet, cfg *daemon.Config) cliFlags {
	f := cliFlags{
		configFile:    fs.String("config", "", "YAML or JSON config file; flags given on the command line win"),
		logLevel:      fs.String("log-level", "info", "debug, info, warn or error"),
		logFormat:     fs.String("log-format", "text", "text or json"),
		version:       fs.Bool("version", false, "print the version and exit"),
		virtletConfig: fs.String("virtlet-config-dir", "", "directory of Virtlet's virtlet-config ConfigMap (one file per key): the keys with a podvisor equivalent (disable_kvm, loglevel, ...) apply unless a flag or the config file says otherwise, the others are logged as warnings (empty: none)"),
	}
	fs.StringVar(&cfg.Listen, "listen", "unix:///run/podvisor/podvisor.sock", "CRI endpoint (unix:///path)")
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/podvisor", "directory for metadata, VM disks and images")
	fs.StringVar(&cfg.Hypervisor, "hypervisor", "libvirt", "sim (simulated, for tests) or libvirt")
	fs.StringVar(&cfg.Network, "network", "", "fake or cni (default: fake with --hypervisor sim, else cni)")
	fs.StringVar(&cfg.ImageDir, "image-dir", "", "image store directory (default <state-dir>/images)")
	fs.StringVar(&cfg.ImageTranslationsDir, "image-translations-dir", "", "directory of image translation configs (the virtlet-image-translations ConfigMap)")
	fs.DurationVar(&cfg.ImagePullGiveUp, "image-pull-give-up", 0, "an image download that gets no new byte for this long fails (default 5m)")
	fs.BoolVar(&cfg.ImageAllowUntranslated, "image-allow-untranslated", false, "download image names no translation matches as URLs, as Virtlet did (off: such names are refused)")
	f.allowNets = fs.String("image-download-allow-networks", "", "CIDRs, comma-separated, that image downloads may reach although loopback, link-local, private or otherwise refused (e.g. 127.0.0.1/32 for a server on the node)")
	f.insecureRegs = fs.String("image-insecure-registries", "", "OCI registries (host[:port], comma-separated) reached over plain http or unverified TLS (off: https only, verified)")
	f.regCAs = fs.String("image-registry-ca-files", "", "PEM files, comma-separated, of CAs trusted for OCI registries besides the system's")
	fs.BoolVar(&cfg.ImageDownloadAllowPrivate, "image-download-allow-private", false, "let image downloads reach private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7)")
	fs.BoolVar(&cfg.ImageDownloadAllowInsecureRedirects, "image-download-allow-insecure-redirects", false, "follow redirects to plain http on another host or port (off: redirects go to https or stay on the host and port)")
	fs.StringVar(&cfg.ImageMaxSize, "image-max-size", daemon.DefaultImageMaxSize, "largest image file a download may bring, e.g. 64Gi or 500Mi; 0: no limit")
	fs.DurationVar(&cfg.SimBootTime, "sim-boot-time", 0, "boot time of simulated guests (default 200ms)")
	fs.StringVar(&cfg.LibvirtURI, "libvirt-uri", "qemu:///system", "libvirt connection URI")
	fs.StringVar(&cfg.KVM, "kvm", "auto", "auto (use KVM when it really works, else TCG), on or off")
	fs.StringVar(&cfg.KVMProbeDir, "kvm-probe-dir", "", "directory for the KVM trial's files; libvirtd must see it at the same path (default <state-dir>/kvm-probe)")
	fs.StringVar(&cfg.CNIConfDir, "cni-conf-dir", "/etc/cni/net.d", "CNI configuration directory")
	f.cniBin = fs.String("cni-bin-dir", "/opt/cni/bin,/usr/lib/cni", "CNI plugin directories, comma-separated")
	fs.StringVar(&cfg.Emulator, "emulator", "", "QEMU wrapper (default: podvisor-vmwrapper next to podvisor)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", daemon.DefaultMetricsAddr, "host:port for the Prometheus /metrics endpoint: loopback, or the node's IP for a Prometheus elsewhere (empty: off)")
	fs.BoolVar(&cfg.Profiling, "profiling", false, "serve Go's pprof handlers under /debug/pprof/ on --profiling-addr")
	fs.StringVar(&cfg.ProfilingAddr, "profiling-addr", daemon.DefaultProfilingAddr, "loopback host:port for pprof (--profiling); never the node's IP")
	fs.StringVar(&cfg.StreamAddr, "stream-addr", "127.0.0.1:0", "host:port of the streaming server (attach, exec, port-forward)")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig of a Kubernetes client for ConfigMap/Secret cloud-init data sources and VirtletImageMapping image translations (empty: none)")
	fs.StringVar(&cfg.ImageMappingNamespace, "image-mapping-namespace", "", "namespace whose VirtletImageMappings are watched (empty: all namespaces; needs --kubeconfig)")
	fs.StringVar(&cfg.NodeName, "node-name", "", "this node's name: podvisor labels it "+daemon.LabelAccelerator+"=kvm|tcg (needs --kubeconfig and RBAC to patch nodes; empty: no label)")
	fs.UintVar(&cfg.TCGTranslationCacheMiB, "tcg-translation-cache-mib", domain.DefaultTCGTranslationCacheMiB, "bound of the TCG translation cache of each VM on a node without KVM, in MiB (QEMU's tb-size; 0: QEMU's default, 1 GiB); KVM VMs have none; the VM's cgroup allows it beyond the guest's RAM")
	fs.Int64Var(&cfg.ExecStdinLimit, "exec-stdin-limit", pod.DefaultExecStdinLimit, fmt.Sprintf("most bytes of stdin kubectl exec -i may send a VM's command; more fails the exec (at most %d, what one guest agent command carries)", pod.MaxExecStdinLimit))
	fs.StringVar(&cfg.CgroupDriver, "cgroup-driver", "cgroupfs", "cgroup driver reported to kubelet: cgroupfs or systemd")
	return f
}

func run(args []string) error {
	fs := flag.NewFlagSet("podvisor", flag.ContinueOnError)
	var cfg daemon.Config
	f := defineFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: podvisor takes only flags", fs.Args())
	}
	cfg.CNIBinDirs = strings.Split(*f.cniBin, ",")
	if *f.allowNets != "" {
		cfg.ImageDownloadAllowNetworks = strings.Split(*f.allowNets, ",")
	}
	if *f.insecureRegs != "" {
		cfg.ImageInsecureRegistries = strings.Split(*f.insecureRegs, ",")
	}
	if *f.regCAs != "" {
		cfg.ImageRegistryCAFiles = strings.Split(*f.regCAs, ",")
	}
	if *f.version {
		fmt.Println("podvisor", daemon.Version)
		return nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fileMetrics := ""
	var fileCfg daemon.Config
	if *f.configFile != "" {
		var err error
		if fileCfg, err = loadConfig(*f.configFile); err != nil {
			return err
		}
		fileMetrics = fileCfg.MetricsAddr
		cfg = merge(fileCfg, cfg, set)
	}
	notes, err := applyVirtletConfig(*f.virtletConfig, &cfg, fileCfg, set, f.logLevel)
	if err != nil {
		return err
	}
	// The default metrics port may be another podvisor's (tests, two
	// daemons on one machine): only an address asked for must bind.
	cfg.MetricsBestEffort = !set["metrics-addr"] && fileMetrics == ""
	log, err := newLogger(*f.logLevel, *f.logFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	for _, m := range notes.Info {
		log.Info(m)
	}
	for _, m := range notes.Warn {
		log.Warn(m)
	}
	// The streaming libraries (attach, exec, port-forward) log through
	// klog: into the same log, in the same format.
	klog.SetSlogLogger(log)

	return serve(cfg, log)
}

// serve runs the daemon until it fails or a signal asks it to stop; VMs
// keep running either way.
func serve(cfg daemon.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- d.Serve() }()
	select {
	case err := <-errc:
		d.Stop(time.Second)
		return err
	case <-ctx.Done():
		log.Info("signal received; stopping gracefully (VMs keep running)")
		d.Stop(30 * time.Second)
		return <-errc
	}
}

// loadConfig reads a config file.
func loadConfig(path string) (daemon.Config, error) {
	var c daemon.Config
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("reading config file: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return c, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// merge takes the file's values and overrides those given as flags; a
// field neither in the file nor on the command line keeps its flag default.
func merge(file, flags daemon.Config, set map[string]bool) daemon.Config {
	pick := func(name string, fileV, flagV string) string {
		if set[name] || fileV == "" {
			return flagV
		}
		return fileV
	}
	out := daemon.Config{
		Listen:                pick("listen", file.Listen, flags.Listen),
		StateDir:              pick("state-dir", file.StateDir, flags.StateDir),
		Hypervisor:            pick("hypervisor", file.Hypervisor, flags.Hypervisor),
		Network:               pick("network", file.Network, flags.Network),
		ImageDir:              pick("image-dir", file.ImageDir, flags.ImageDir),
		ImageTranslationsDir:  pick("image-translations-dir", file.ImageTranslationsDir, flags.ImageTranslationsDir),
		ImageMaxSize:          pick("image-max-size", file.ImageMaxSize, flags.ImageMaxSize),
		CgroupDriver:          pick("cgroup-driver", file.CgroupDriver, flags.CgroupDriver),
		LibvirtURI:            pick("libvirt-uri", file.LibvirtURI, flags.LibvirtURI),
		KVM:                   pick("kvm", file.KVM, flags.KVM),
		KVMProbeDir:           pick("kvm-probe-dir", file.KVMProbeDir, flags.KVMProbeDir),
		StreamAddr:            pick("stream-addr", file.StreamAddr, flags.StreamAddr),
		MetricsAddr:           pick("metrics-addr", file.MetricsAddr, flags.MetricsAddr),
		ProfilingAddr:         pick("profiling-addr", file.ProfilingAddr, flags.ProfilingAddr),
		CNIConfDir:            pick("cni-conf-dir", file.CNIConfDir, flags.CNIConfDir),
		Emulator:              pick("emulator", file.Emulator, flags.Emulator),
		Kubeconfig:            pick("kubeconfig", file.Kubeconfig, flags.Kubeconfig),
		ImageMappingNamespace: pick("image-mapping-namespace", file.ImageMappingNamespace, flags.ImageMappingNamespace),
		NodeName:              pick("node-name", file.NodeName, flags.NodeName),
		CNIBinDirs:            flags.CNIBinDirs,
		SimBootTime:           flags.SimBootTime,
		ImagePullGiveUp:       flags.ImagePullGiveUp,
		ExecStdinLimit:        flags.ExecStdinLimit,
		SocketMode:            file.SocketMode,
		Profiling:             file.Profiling,
		MetricsBestEffort:     file.MetricsBestEffort || flags.MetricsBestEffort,
	}
	if set["profiling"] {
		out.Profiling = flags.Profiling
	}
	out.ImageAllowUntranslated = pickBool(set["image-allow-untranslated"], file.ImageAllowUntranslated, flags.ImageAllowUntranslated)
	out.ImageDownloadAllowPrivate = pickBool(set["image-download-allow-private"], file.ImageDownloadAllowPrivate, flags.ImageDownloadAllowPrivate)
	out.ImageDownloadAllowInsecureRedirects = pickBool(set["image-download-allow-insecure-redirects"], file.ImageDownloadAllowInsecureRedirects, flags.ImageDownloadAllowInsecureRedirects)
	out.ImageDownloadAllowNetworks = file.ImageDownloadAllowNetworks
	if set["image-download-allow-networks"] {
		out.ImageDownloadAllowNetworks = flags.ImageDownloadAllowNetworks
	}
	out.ImageInsecureRegistries = file.ImageInsecureRegistries
	if set["image-insecure-registries"] {
		out.ImageInsecureRegistries = flags.ImageInsecureRegistries
	}
	out.ImageRegistryCAFiles = file.ImageRegistryCAFiles
	if set["image-registry-ca-files"] {
		out.ImageRegistryCAFiles = flags.ImageRegistryCAFiles
	}
	out.ImageRegistryMirrors = file.ImageRegistryMirrors
	if !set["cni-bin-dir"] && len(file.CNIBinDirs) > 0 {
		out.CNIBinDirs = file.CNIBinDirs
	}
	if !set["sim-boot-time"] && file.SimBootTime != 0 {
		out.SimBootTime = file.SimBootTime
	}
	out.TCGTranslationCacheMiB = flags.TCGTranslationCacheMiB
	if !set["tcg-translation-cache-mib"] && file.TCGTranslationCacheMiB != 0 {
		out.TCGTranslationCacheMiB = file.TCGTranslationCacheMiB
	}
	if !set["exec-stdin-limit"] && file.ExecStdinLimit != 0 {
		out.ExecStdinLimit = file.ExecStdinLimit
	}
	if !set["image-pull-give-up"] && file.ImagePullGiveUp != 0 {
		out.ImagePullGiveUp = file.ImagePullGiveUp
	}
	return out
}

// pickBool is the flag's value when given on the command line, else the
// file's.
func pickBool(flagSet, fileV, flagV bool) bool {
	if flagSet {
		return flagV
	}
	return fileV
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level: %q is not accepted: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, errors.New("log-format: use text or json")
}
