// Command criproxy is a CRI endpoint in front of a primary runtime
// (containerd) and named runtimes (podvisor): kubelet talks to it, and it
// routes each pod to one runtime. See docs/criproxy.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/podvisor/podvisor/internal/unixsock"
	pvversion "github.com/podvisor/podvisor/internal/version"
	"github.com/podvisor/podvisor/runtime/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "criproxy:", err)
		os.Exit(1)
	}
}

// runtimeFlags collects repeated --runtime NAME=ENDPOINT flags.
type runtimeFlags []proxy.Runtime

func (r *runtimeFlags) String() string { return "" }
func (r *runtimeFlags) Set(v string) error {
	rt, err := proxy.ParseRuntimeFlag(v)
	if err != nil {
		return err
	}
	*r = append(*r, rt)
	return nil
}

// handlerFlags collects repeated --handler HANDLER=NAME flags.
type handlerFlags [][2]string

func (h *handlerFlags) String() string { return "" }
func (h *handlerFlags) Set(v string) error {
	handler, name, ok := strings.Cut(v, "=")
	if !ok || handler == "" || name == "" {
		return fmt.Errorf("handler %q: want HANDLER=RUNTIME, e.g. kata-vm=podvisor", v)
	}
	*h = append(*h, [2]string{handler, name})
	return nil
}

// run serves until ctx ends (a signal) and returns nil then.
func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("criproxy", flag.ContinueOnError)
	var (
		runtimes   runtimeFlags
		handlers   handlerFlags
		configFile = fs.String("config", "", "YAML or JSON config file (listen, primary, runtimes); flags given on the command line win, --runtime adds runtimes")
		listen     = fs.String("listen", "unix:///run/criproxy/criproxy.sock", "the proxy's CRI endpoint (unix:///path): point kubelet's --container-runtime-endpoint here")
		primary    = fs.String("primary", "unix:///run/containerd/containerd.sock", "the primary runtime's CRI endpoint: every pod not routed elsewhere goes there")
		maxBackoff = fs.Duration("max-backoff", 5*time.Second, "longest wait between reconnection attempts to a runtime that is down")
		downGrace  = fs.Duration("down-grace", 2*time.Minute, "how long after its last answer a down runtime is represented in lists by that answer before it is left out (kubelet must not take a restarting podvisor's pods for gone)")
		byAnnot    = fs.Bool("annotation-routing", true, "route a pod whose RuntimeClass handler names no runtime by its "+proxy.TargetRuntimeAnnotation+" annotation, as Virtlet did; false: RuntimeClass only (the annotation escapes RuntimeClass admission rules), and a pod asking by the annotation is refused")
		logLevel   = fs.String("log-level", "info", "debug, info, warn or error")
		version    = fs.Bool("version", false, "print the version (podvisor's) and exit")
	)
	fs.Var(&runtimes, "runtime", "a named runtime NAME=ENDPOINT, repeatable, e.g. podvisor=unix:///run/podvisor/podvisor.sock; its IDs are prefixed NAME__")
	fs.Var(&handlers, "handler", "route RuntimeClass handler HANDLER=RUNTIME besides the runtime's own name, repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: criproxy takes only flags", fs.Args())
	}
	if *version {
		fmt.Println("criproxy", pvversion.String())
		return nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var cfg proxy.Config
	if *configFile != "" {
		c, err := proxy.LoadConfig(*configFile)
		if err != nil {
			return err
		}
		cfg = c
	}
	if set["listen"] || cfg.Listen == "" {
		cfg.Listen = *listen
	}
	if set["primary"] || cfg.Primary == "" {
		cfg.Primary = *primary
	}
	if set["annotation-routing"] || cfg.AnnotationRouting == nil {
		cfg.AnnotationRouting = byAnnot
	}
	cfg.Runtimes = append(cfg.Runtimes, runtimes...)
	if err := addHandlers(&cfg, handlers); err != nil {
		return err
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("log-level: %q is not accepted: use debug, info, warn or error", *logLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(log)

	path, ok := strings.CutPrefix(cfg.Listen, "unix://")
	if !ok || !filepath.IsAbs(path) {
		return fmt.Errorf("listen: %q is not accepted: want unix:///path", cfg.Listen)
	}
	p, err := proxy.New(cfg, proxy.Options{MaxBackoff: *maxBackoff, DownGrace: *downGrace}, log)
	if err != nil {
		return err
	}
	defer p.Close()

	lis, err := listenSocket(path)
	if err != nil {
		return err
	}
	log.Info("criproxy serving", "listen", cfg.Listen, "routes", p.Routes())
	return serve(ctx, p, lis, log)
}

// addHandlers routes each --handler HANDLER=NAME to runtime NAME too.
func addHandlers(cfg *proxy.Config, handlers handlerFlags) error {
	for _, h := range handlers {
		found := false
		for i := range cfg.Runtimes {
			if cfg.Runtimes[i].Name == h[1] {
				if len(cfg.Runtimes[i].Handlers) == 0 {
					cfg.Runtimes[i].Handlers = []string{cfg.Runtimes[i].Name}
				}
				cfg.Runtimes[i].Handlers = append(cfg.Runtimes[i].Handlers, h[0])
				found = true
			}
		}
		if !found {
			return fmt.Errorf("handler %s=%s: no runtime named %q (give it with --runtime or in the config file)", h[0], h[1], h[1])
		}
	}
	return nil
}

// serve answers on lis until ctx ends, then stops gracefully (at most 10 s).
func serve(ctx context.Context, p *proxy.Proxy, lis net.Listener, log *slog.Logger) error {
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20))
	p.Register(srv)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		log.Info("stopping")
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Stop()
		}
		return nil
	}
}

// socketMode is the proxy socket's mode, podvisor's: kubelet runs as root,
// and a group may be given access; others get none whatever the umask.
const socketMode = 0o660

// listenSocket listens on path with socketMode, replacing a stale socket
// (its criproxy was killed) but never a live one: a second criproxy fails.
func listenSocket(path string) (net.Listener, error) {
	return unixsock.Listen(path, socketMode)
}
