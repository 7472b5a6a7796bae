package proxy

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxMsgSize matches kubelet's CRI client limit.
const maxMsgSize = 16 << 20

// backend is one runtime behind the proxy.
type backend struct {
	name        string // "primary" for the primary runtime
	endpoint    string
	primary     bool
	idPrefix    string   // "<name>__"; empty for the primary
	imagePrefix string   // "<targetRuntime>/"; empty for the primary
	target      string   // value of kubernetes.io/target-runtime
	keepDomain  bool     // image names reach it with imagePrefix
	prefixes    []string // image name prefixes routed to it
	conn        *grpc.ClientConn
	rt          runtimeapi.RuntimeServiceClient
	img         runtimeapi.ImageServiceClient

	lastAnswer atomic.Int64 // UnixNano of its last successful answer; 0: never
	// descs are its metric descriptors once it answered
	// ListMetricDescriptors: fixed per runtime, kubelet reads them once,
	// and ListPodSandboxMetrics (each scrape) relabels by them.
	descs atomic.Pointer[[]*runtimeapi.MetricDescriptor]

	mu    sync.Mutex
	lists map[string]any // last answer to each list and status request
}

// keepList records the answer to a list request.
func (b *backend) keepList(key string, items any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lists == nil {
		b.lists = map[string]any{}
	}
	if len(b.lists) > 4096 { // ever-new filters and IDs: keep it bounded
		clear(b.lists)
	}
	b.lists[key] = items
}

// lastList is the last answer to a list request, when err says the
// runtime is unavailable and it answered less than grace ago.
func (b *backend) lastList(key string, grace time.Duration, err error) (any, bool) {
	if b.primary || status.Code(err) != codes.Unavailable {
		return nil, false
	}
	if since, ok := b.sinceAnswer(); !ok || since >= grace {
		return nil, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.lists[key]
	return v, ok
}

// answered records a successful answer of the runtime.
func (b *backend) answered() { b.lastAnswer.Store(time.Now().UnixNano()) }

// sinceAnswer is the time since the runtime's last successful answer;
// false when it never answered.
func (b *backend) sinceAnswer() (time.Duration, bool) {
	t := b.lastAnswer.Load()
	if t == 0 {
		return 0, false
	}
	return time.Since(time.Unix(0, t)), true
}

// dial creates the client connection. It does not wait for the runtime:
// gRPC connects in the background and reconnects with backoff, and calls
// made while the runtime is down fail at once (no WaitForReady).
func dial(b *backend, maxBackoff time.Duration) error {
	bc := backoff.DefaultConfig
	bc.BaseDelay = 100 * time.Millisecond
	bc.MaxDelay = maxBackoff
	conn, err := grpc.NewClient(b.endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 5 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
	)
	if err != nil {
		return fmt.Errorf("runtime %q: connecting to %s: %w", b.name, b.endpoint, err)
	}
	b.conn = conn
	b.rt = runtimeapi.NewRuntimeServiceClient(conn)
	b.img = runtimeapi.NewImageServiceClient(conn)
	return nil
}

// wrap names the runtime in an error it returned, keeping the gRPC code
// kubelet acts on. Errors of the primary pass unchanged, except when it is
// unreachable, so that the proxy is transparent for containerd.
func (b *backend) wrap(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return status.Errorf(codes.Unknown, "runtime %q: %v", b.name, err)
	}
	if st.Code() == codes.Unavailable {
		return status.Errorf(codes.Unavailable, "runtime %q (%s) is unavailable: %s", b.name, b.endpoint, st.Message())
	}
	if b.primary || strings.HasPrefix(st.Message(), b.tag()) {
		return err
	}
	return status.Error(st.Code(), b.tag()+st.Message())
}

func (b *backend) tag() string { return fmt.Sprintf("runtime %q: ", b.name) }
