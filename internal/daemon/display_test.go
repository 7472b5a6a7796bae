package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/fakes/simhv"
	"github.com/podvisor/podvisor/internal/rfb"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// TestPortForwardToTheDisplay drives CRI PortForward the way kubectl
// port-forward does (SPDY to the streaming URL): port 5900 of a VM pod is
// the VM's display, and an RFB client reads its framebuffer size through
// the tunnel; before the VM runs, the forward says why it cannot.
func TestPortForwardToTheDisplay(t *testing.T) {
	h := newHarness(t)
	c := ctx(t)
	if _, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}); err != nil {
		t.Fatal(err)
	}
	run, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig("vnc")})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}})
	if err != nil {
		t.Fatal(err)
	}

	// Created, not running: no display (the streaming server's error,
	// "sandbox ... has no running VM, so no display", goes to client-go's
	// log, which ends the forward).
	if _, err := displayHandshake(c, forward(t, c, h, run.PodSandboxId)); err == nil {
		t.Error("an RFB handshake with a VM that is not running succeeded")
	}

	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	domainName := h.d.manager.ListContainers(podFilterAll())[0].DomainName
	port := forward(t, c, h, run.PodSandboxId)
	for i := range 2 { // a viewer reconnects
		si, err := displayHandshake(c, port)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if want := (rfb.ServerInit{Version: "RFB 003.008", Width: simhv.DisplayWidth, Height: simhv.DisplayHeight, BitsPerPixel: 32, Depth: 24, Name: "QEMU (" + domainName + ")"}); si != want {
			t.Errorf("ServerInit %+v, want %+v", si, want)
		}
	}
}

// forward runs client-go's port-forwarder from a free local port to the
// sandbox's display port until the test ends.
func forward(t *testing.T, c context.Context, h *harness, sandboxID string) uint16 {
	t.Helper()
	resp, err := h.rt.PortForward(c, &runtimeapi.PortForwardRequest{PodSandboxId: sandboxID, Port: []int32{hypervisor.DisplayPort}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	rt, upgrader, err := spdy.RoundTripperFor(&rest.Config{Host: u.Host})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, "POST", u)
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf(":%d", hypervisor.DisplayPort)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port-forward: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("port-forward not ready")
	}
	ports, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	return ports[0].Local
}

func displayHandshake(c context.Context, port uint16) (rfb.ServerInit, error) {
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return rfb.ServerInit{}, err
	}
	defer conn.Close()
	hc, cancel := context.WithTimeout(c, 10*time.Second)
	defer cancel()
	return rfb.Handshake(hc, conn)
}
