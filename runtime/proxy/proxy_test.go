package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type env struct {
	primary, vm *fakeRuntime
	p           *Proxy
	rt          runtimeapi.RuntimeServiceClient
	img         runtimeapi.ImageServiceClient
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newEnv starts a primary fake ("containerd"), a podvisor fake that
// reports virtlet.cloud/ repo tags like podvisor, and the proxy in front.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{primary: newFakeRuntime(t, "containerd"), vm: newFakeRuntime(t, "podvisor")}
	e.vm.tagPrefix = "virtlet.cloud/"
	cfg := Config{Primary: e.primary.endpoint(), Runtimes: []Runtime{
		{Name: "podvisor", Endpoint: e.vm.endpoint(), Handlers: []string{"podvisor", "kata-vm"}},
	}}
	e.p, e.rt, e.img = serveProxy(t, cfg)
	return e
}

func serveProxy(t *testing.T, cfg Config) (*Proxy, runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	t.Helper()
	p, err := New(cfg, Options{MaxBackoff: 200 * time.Millisecond}, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	sock := filepath.Join(shortTempDir(t), "proxy.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	p.Register(srv)
	go srv.Serve(lis)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		p.Close()
	})
	return p, runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func runPod(t *testing.T, e *env, name, handler string, annotations map[string]string) string {
	t.Helper()
	resp, err := e.rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{RuntimeHandler: handler,
		Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: name}, Annotations: annotations}})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", name, err)
	}
	return resp.PodSandboxId
}

func TestRunPodSandboxRouting(t *testing.T) {
	e := newEnv(t)
	virtlet := map[string]string{TargetRuntimeAnnotation: "virtlet.cloud"}
	for _, tc := range []struct {
		name, handler string
		annotations   map[string]string
		wantVM        bool
		wantHandler   string
	}{
		{name: "plain"},
		{name: "runc-handler", handler: "runc", wantHandler: "runc"},
		{name: "virtlet-annotation", annotations: virtlet, wantVM: true},
		{name: "annotation-by-name", annotations: map[string]string{TargetRuntimeAnnotation: "podvisor"}, wantVM: true},
		{name: "handler", handler: "podvisor", wantVM: true, wantHandler: "podvisor"},
		{name: "extra-handler", handler: "kata-vm", wantVM: true, wantHandler: "kata-vm"},
		{name: "unmapped-handler-then-annotation", handler: "runc", annotations: virtlet, wantVM: true, wantHandler: "runc"},
		{name: "empty-annotation", annotations: map[string]string{TargetRuntimeAnnotation: ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := runPod(t, e, tc.name, tc.handler, tc.annotations)
			want, other := e.primary, e.vm
			if tc.wantVM {
				want, other = e.vm, e.primary
				if !strings.HasPrefix(id, "podvisor__") {
					t.Errorf("VM pod ID %q lacks the podvisor__ prefix", id)
				}
			} else if strings.Contains(id, IDSeparator) {
				t.Errorf("primary pod ID %q was prefixed", id)
			}
			call := "RunPodSandbox " + tc.name + " handler=" + tc.wantHandler
			if !want.sawCall(call) || other.sawCall(call) {
				t.Errorf("%q went to the wrong runtime (want %s)", call, want.name)
			}
		})
	}
}

func TestRunPodSandboxUnknownTargetRuntime(t *testing.T) {
	e := newEnv(t)
	_, err := e.rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Annotations: map[string]string{TargetRuntimeAnnotation: "kata.cloud"}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
	for _, want := range []string{TargetRuntimeAnnotation, `"kata.cloud"`, "virtlet.cloud", "podvisor"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestCallsByIDGoToTheOwner(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	pod := runPod(t, e, "web", "", nil)
	vm := runPod(t, e, "vm", "podvisor", nil)
	native := strings.TrimPrefix(vm, "podvisor__")

	st, err := e.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: vm})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Id != vm {
		t.Errorf("status ID %q, want %q", st.Status.Id, vm)
	}
	if !e.vm.sawCall("PodSandboxStatus " + native) {
		t.Errorf("podvisor did not get PodSandboxStatus with its own ID %q", native)
	}
	if _, err := e.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if !e.primary.sawCall("PodSandboxStatus " + pod) {
		t.Errorf("containerd did not get PodSandboxStatus %s", pod)
	}

	ctr, err := e.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: vm,
		Config: &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ctr.ContainerId, "podvisor__") {
		t.Errorf("container ID %q lacks the prefix", ctr.ContainerId)
	}
	if !e.vm.sawCall("CreateContainer " + native + " virtlet.cloud/cirros") {
		t.Errorf("podvisor did not get CreateContainer with its sandbox ID and the image as named; calls %v", e.vm.calls)
	}
	if _, err := e.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	cs, err := e.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.ContainerId})
	if err != nil {
		t.Fatal(err)
	}
	if cs.Status.Id != ctr.ContainerId || cs.Status.Image.GetImage() != "virtlet.cloud/cirros" || !strings.HasPrefix(cs.Status.ImageRef, "virtlet.cloud/sha256:") {
		t.Errorf("container status id=%q image=%q ref=%q: want prefixed ID and image, virtlet.cloud/sha256: ref", cs.Status.Id, cs.Status.Image.GetImage(), cs.Status.ImageRef)
	}
	ex, err := e.rt.Exec(c, &runtimeapi.ExecRequest{ContainerId: ctr.ContainerId, Cmd: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://127.0.0.1:1/exec/podvisor/" + strings.TrimPrefix(ctr.ContainerId, "podvisor__"); ex.Url != want {
		t.Errorf("exec URL %q, want the runtime's URL %q unchanged", ex.Url, want)
	}

	// Events in a sandbox status carry prefixed container IDs too.
	st, err = e.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: vm})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.ContainersStatuses) != 1 || st.ContainersStatuses[0].Id != ctr.ContainerId {
		t.Errorf("containers_statuses %v, want the one container %s", st.ContainersStatuses, ctr.ContainerId)
	}

	if _, err := e.rt.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: vm}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: vm}); err != nil {
		t.Fatal(err)
	}
	if !e.vm.sawCall("StopPodSandbox "+native) || !e.vm.sawCall("RemovePodSandbox "+native) || e.primary.sawCall("RemovePodSandbox "+native) {
		t.Error("stop/remove of the VM pod did not reach podvisor alone")
	}
}

func TestCreateContainerRefusesImageOfAnotherRuntime(t *testing.T) {
	e := newEnv(t)
	pod := runPod(t, e, "web", "", nil)
	vm := runPod(t, e, "vm", "", map[string]string{TargetRuntimeAnnotation: "virtlet.cloud"})
	for _, tc := range []struct {
		sandbox, image string
		want           []string
	}{
		{vm, "busybox", []string{`"busybox"`, `runtime "primary"`, `runtime "podvisor"`, "virtlet.cloud/<name>"}},
		{pod, "virtlet.cloud/cirros", []string{`"virtlet.cloud/cirros"`, `runtime "podvisor"`, `runtime "primary"`}},
	} {
		_, err := e.rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: tc.sandbox,
			Config: &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: tc.image}}})
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("image %s in sandbox %s: got %v, want FailedPrecondition", tc.image, tc.sandbox, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %s", err, w)
			}
		}
	}
	// The image's runtime_handler (KEP-4216) also selects the runtime.
	if _, err := e.rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: vm,
		Config: &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: "cirros", RuntimeHandler: "podvisor"}}}); err != nil {
		t.Errorf("image with runtime_handler podvisor in a VM pod: %v", err)
	}
}

func TestListsMergeAndKeepFilters(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	pod := runPod(t, e, "web", "", nil)
	vm := runPod(t, e, "vm", "podvisor", nil)
	ctrPod, err := e.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: pod,
		Config: &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: "busybox"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctrVM, err := e.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: vm,
		Config: &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}})
	if err != nil {
		t.Fatal(err)
	}

	sbs, err := e.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sorted(pod, vm), sandboxIDs(sbs.Items)); diff != "" {
		t.Errorf("ListPodSandbox (-want +got):\n%s", diff)
	}
	sbs, err = e.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: vm}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{vm}, sandboxIDs(sbs.Items)); diff != "" {
		t.Errorf("ListPodSandbox filter id (-want +got):\n%s", diff)
	}
	if e.primary.sawCall("ListPodSandbox "+vm) || e.primary.sawCall("ListPodSandbox "+strings.TrimPrefix(vm, "podvisor__")) {
		t.Error("a filter on a podvisor ID reached containerd")
	}

	cs, err := e.rt.ListContainers(c, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ct := range cs.Containers {
		got = append(got, ct.Id+" in "+ct.PodSandboxId)
	}
	sort.Strings(got)
	want := []string{ctrPod.ContainerId + " in " + pod, ctrVM.ContainerId + " in " + vm}
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListContainers (-want +got):\n%s", diff)
	}
	cs, err = e.rt.ListContainers(c, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: vm}})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Containers) != 1 || cs.Containers[0].Id != ctrVM.ContainerId {
		t.Errorf("ListContainers filtered by the VM sandbox: %v", cs.Containers)
	}

	// Streamed lists merge the same way.
	stream, err := e.rt.StreamPodSandboxes(c, &runtimeapi.StreamPodSandboxesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var streamed []*runtimeapi.PodSandbox
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		streamed = append(streamed, m.PodSandboxes...)
	}
	if diff := cmp.Diff(sorted(pod, vm), sandboxIDs(streamed)); diff != "" {
		t.Errorf("StreamPodSandboxes (-want +got):\n%s", diff)
	}
}

func sorted(s ...string) []string {
	sort.Strings(s)
	return s
}

func sandboxIDs(items []*runtimeapi.PodSandbox) []string {
	var out []string
	for _, sb := range items {
		out = append(out, sb.Id)
	}
	sort.Strings(out)
	return out
}

func TestImages(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	pulled, err := e.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}})
	if err != nil {
		t.Fatal(err)
	}
	if !e.vm.sawCall("PullImage virtlet.cloud/cirros") {
		t.Errorf("podvisor did not get the pull with its prefix, which tells it from an OCI reference; calls %v", e.vm.calls)
	}
	if want := "virtlet.cloud/" + imageID("cirros"); pulled.ImageRef != want {
		t.Errorf("image ref %q, want %q", pulled.ImageRef, want)
	}
	if _, err := e.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatal(err)
	}
	if !e.primary.sawCall("PullImage busybox") {
		t.Error("containerd did not get the busybox pull")
	}

	list, err := e.img.ListImages(c, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, img := range list.Images {
		tags = append(tags, img.Id+" "+strings.Join(img.RepoTags, ","))
	}
	sort.Strings(tags)
	want := []string{imageID("busybox") + " busybox:latest", "virtlet.cloud/" + imageID("cirros") + " virtlet.cloud/cirros:latest"}
	sort.Strings(want)
	if diff := cmp.Diff(want, tags); diff != "" {
		t.Errorf("ListImages (-want +got):\n%s", diff)
	}

	// By ID: the prefixed ID leads back to podvisor.
	st, err := e.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: pulled.ImageRef}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Image.GetId() != pulled.ImageRef {
		t.Errorf("ImageStatus by ref gave %v, want image %s", st.Image, pulled.ImageRef)
	}
	filtered, err := e.img.ListImages(c, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(filtered.Images) != 1 || filtered.Images[0].Id != pulled.ImageRef || e.primary.sawCall("ListImages virtlet.cloud/cirros") {
		t.Errorf("filtered ListImages: %v", filtered.Images)
	}
	if _, err := e.img.RemoveImage(c, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: pulled.ImageRef}}); err != nil {
		t.Fatal(err)
	}
	if !e.vm.sawCall("RemoveImage " + pulled.ImageRef) {
		t.Errorf("podvisor did not get RemoveImage by its own ID; calls %v", e.vm.calls)
	}

	fs, err := e.img.ImageFsInfo(c, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var mounts []string
	for _, f := range fs.ImageFilesystems {
		mounts = append(mounts, f.FsId.Mountpoint)
	}
	if diff := cmp.Diff([]string{"/var/lib/containerd", "/var/lib/podvisor"}, mounts); diff != "" {
		t.Errorf("ImageFsInfo (-want +got):\n%s", diff)
	}
}

func TestVersionAndStatusComeFromThePrimary(t *testing.T) {
	e := newEnv(t)
	v, err := e.rt.Version(ctx(t), &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "containerd" {
		t.Errorf("Version from %q, want containerd", v.RuntimeName)
	}
	st, err := e.rt.Status(ctx(t), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Conditions[0].Reason != "containerd" {
		t.Errorf("Status from %q, want containerd", st.Status.Conditions[0].Reason)
	}
}

func TestUpdateRuntimeConfigGoesToAllAndIsReplayed(t *testing.T) {
	e := newEnv(t)
	req := &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.1.0.0/16"}}}
	if _, err := e.rt.UpdateRuntimeConfig(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*fakeRuntime{e.primary, e.vm} {
		if !f.sawCall("UpdateRuntimeConfig 10.1.0.0/16") {
			t.Errorf("%s did not get UpdateRuntimeConfig", f.name)
		}
	}
	// A restarted runtime gets the config again once it is reachable.
	e.vm.stop()
	e.vm.mu.Lock()
	e.vm.calls = nil
	e.vm.mu.Unlock()
	e.vm.start(t)
	waitFor(t, "the config replayed to the restarted podvisor", func() bool { return e.vm.sawCall("UpdateRuntimeConfig 10.1.0.0/16") })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRuntimeDown(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	pod := runPod(t, e, "web", "", nil)
	vm := runPod(t, e, "vm", "", map[string]string{TargetRuntimeAnnotation: "virtlet.cloud"})
	if _, err := e.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: vm, Verbose: true}); err != nil {
		t.Fatal(err)
	}
	e.vm.stop()

	// The caller's deadline is 30 s: an Unavailable answer (not
	// DeadlineExceeded) shows the call failed without waiting for podvisor.
	// A status asked before: its last answer stands in while podvisor was
	// just up; one never asked fails.
	if _, err := e.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: vm, Verbose: true}); err != nil {
		t.Errorf("status of a VM pod asked before podvisor went down: %v", err)
	}
	_, err := e.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: vm})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `runtime "podvisor"`) || !strings.Contains(err.Error(), e.vm.endpoint()) {
		t.Errorf("status of a pod on the stopped runtime: got %v, want Unavailable naming podvisor and its endpoint", err)
	}
	_, err = e.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{RuntimeHandler: "podvisor", Config: &runtimeapi.PodSandboxConfig{}})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `runtime "podvisor"`) {
		t.Errorf("new VM pod with podvisor down: got %v, want Unavailable naming podvisor", err)
	}
	_, err = e.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("pull of a podvisor image with podvisor down: got %v, want Unavailable", err)
	}

	// The primary's pods stay fully usable.
	if _, err := e.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod}); err != nil {
		t.Errorf("status of a containerd pod: %v", err)
	}
	// Just down (a restart): its last answer stands in, so that kubelet
	// does not take the VM pods for gone and recreate them.
	list, err := e.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("ListPodSandbox with podvisor just down: %v", err)
	}
	if diff := cmp.Diff([]string{vm, pod}, sandboxIDs(list.Items)); diff != "" {
		t.Errorf("ListPodSandbox with podvisor just down: its last answer should stand in (-want +got):\n%s", diff)
	}
	// Down for longer than the grace: left out, the primary's pods listed.
	e.p.downGrace = 50 * time.Millisecond
	time.Sleep(100 * time.Millisecond)
	list, err = e.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("ListPodSandbox with podvisor down past the grace: %v", err)
	}
	if diff := cmp.Diff([]string{pod}, sandboxIDs(list.Items)); diff != "" {
		t.Errorf("ListPodSandbox with podvisor down (-want +got):\n%s", diff)
	}
	if _, err := e.img.ImageFsInfo(c, &runtimeapi.ImageFsInfoRequest{}); err != nil {
		t.Errorf("ImageFsInfo with podvisor down: %v", err)
	}
	if _, err := e.rt.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Errorf("stop of a containerd pod: %v", err)
	}

	// podvisor comes back: its pods are listed again.
	e.vm.start(t)
	waitFor(t, "the VM pod listed again", func() bool {
		list, err := e.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{})
		return err == nil && len(list.Items) == 2
	})
	if _, err := e.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: vm}); err != nil {
		t.Errorf("status of the VM pod after podvisor came back: %v", err)
	}
}

func TestPrimaryDownFailsLists(t *testing.T) {
	e := newEnv(t)
	e.primary.stop()
	_, err := e.rt.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `runtime "primary"`) {
		t.Errorf("ListPodSandbox with the primary down: got %v, want Unavailable naming the primary", err)
	}
}

func TestContainerEventsMerge(t *testing.T) {
	e := newEnv(t)
	e.primary.events, e.vm.events = true, true
	c := ctx(t)
	s, err := e.rt.GetContainerEvents(c, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e.primary.evc <- &runtimeapi.ContainerEventResponse{ContainerId: "c1", PodSandboxStatus: &runtimeapi.PodSandboxStatus{Id: "s1"}}
	e.vm.evc <- &runtimeapi.ContainerEventResponse{ContainerId: "c2", PodSandboxStatus: &runtimeapi.PodSandboxStatus{Id: "s2"},
		ContainersStatuses: []*runtimeapi.ContainerStatus{{Id: "c2"}}}
	var got []string
	for len(got) < 2 {
		ev, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.ContainerId+"/"+ev.PodSandboxStatus.GetId()+"/"+strings.Join(statusIDs(ev.ContainersStatuses), ","))
	}
	sort.Strings(got)
	if diff := cmp.Diff([]string{"c1/s1/", "podvisor__c2/podvisor__s2/podvisor__c2"}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestContainerEventsUnimplementedPrimary(t *testing.T) {
	e := newEnv(t)
	e.vm.events = true
	s, err := e.rt.GetContainerEvents(ctx(t), &runtimeapi.GetEventsRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("got %v, want the primary's Unimplemented (kubelet then polls)", err)
	}
}

func statusIDs(sts []*runtimeapi.ContainerStatus) []string {
	var out []string
	for _, s := range sts {
		out = append(out, s.Id)
	}
	return out
}

// TestAnnotationRoutingOff (issue 18, finding 6): with annotation routing
// off only the RuntimeClass handler routes a pod to podvisor, so
// RuntimeClass admission rules cannot be bypassed; a pod asking by the
// annotation is refused with the way to ask instead, other values of the
// annotation mean nothing.
func TestAnnotationRoutingOff(t *testing.T) {
	primary, vm := newFakeRuntime(t, "containerd"), newFakeRuntime(t, "podvisor")
	off := false
	_, rt, _ := serveProxy(t, Config{Primary: primary.endpoint(), AnnotationRouting: &off, Runtimes: []Runtime{
		{Name: "podvisor", Endpoint: vm.endpoint(), Handlers: []string{"podvisor", "kata-vm"}},
	}})
	run := func(name, handler, target string) (string, error) {
		resp, err := rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{RuntimeHandler: handler, Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: name}, Annotations: map[string]string{TargetRuntimeAnnotation: target}}})
		return resp.GetPodSandboxId(), err
	}
	for _, target := range []string{"virtlet.cloud", "podvisor"} {
		_, err := run("by-annotation-"+target, "", target)
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("annotation %s with routing off: %v, want InvalidArgument", target, err)
		}
		for _, want := range []string{TargetRuntimeAnnotation, "--annotation-routing", "runtimeClassName", "kata-vm, podvisor"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %s", err, want)
			}
		}
		if vm.sawCall("RunPodSandbox by-annotation-"+target+" handler=") || primary.sawCall("RunPodSandbox by-annotation-"+target+" handler=") {
			t.Errorf("the refused pod reached a runtime")
		}
	}
	if id, err := run("by-class", "podvisor", "virtlet.cloud"); err != nil || !strings.HasPrefix(id, "podvisor__") {
		t.Errorf("runtimeClassName podvisor with routing off: %q, %v; want a podvisor pod", id, err)
	}
	if id, err := run("other", "", "kata.cloud"); err != nil || strings.Contains(id, IDSeparator) || !primary.sawCall("RunPodSandbox other handler=") {
		t.Errorf("another target runtime with routing off: %q, %v; want the primary", id, err)
	}
}

// OCI images of VM pods have no domain: a pull goes where its pod runs
// (kubelet sends the sandbox config, not the handler, by default), or by
// a configured prefix; podvisor's names come back as it reports them,
// its IDs with the domain.
func TestOCIImageRouting(t *testing.T) {
	primary, vm := newFakeRuntime(t, "containerd"), newFakeRuntime(t, "podvisor")
	vm.tagPrefix = "virtlet.cloud/"
	cfg := Config{Primary: primary.endpoint(), Runtimes: []Runtime{
		{Name: "podvisor", Endpoint: vm.endpoint(), ImagePrefixes: []string{"registry.example/vm/"}},
	}}
	_, rt, img := serveProxy(t, cfg)
	c := ctx(t)
	vmPod := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "vm", Uid: "u-vm", Namespace: "default"}}
	if _, err := rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: vmPod, RuntimeHandler: "podvisor"}); err != nil {
		t.Fatal(err)
	}
	disk := "registry.example/disks/cirros:v1"
	pulled, err := img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: disk}, SandboxConfig: vmPod})
	if err != nil {
		t.Fatal(err)
	}
	if !vm.sawCall("PullImage " + disk) {
		t.Errorf("the VM pod's pull did not reach podvisor; podvisor's calls %v", vm.calls)
	}
	if want := "virtlet.cloud/" + imageID(disk); pulled.ImageRef != want {
		t.Errorf("image ref %q, want %q", pulled.ImageRef, want)
	}
	ctrPod := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "ctr", Uid: "u-ctr"}}
	if _, err := img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}, SandboxConfig: ctrPod}); err != nil {
		t.Fatal(err)
	}
	if !primary.sawCall("PullImage busybox") || vm.sawCall("PullImage busybox") {
		t.Errorf("a container pod's pull went astray: containerd %v, podvisor %v", primary.calls, vm.calls)
	}
	// By prefix, with no pod: crictl, or kubelet's ImageStatus.
	byPrefix := "registry.example/vm/fedora:41"
	if _, err := img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: byPrefix}}); err != nil {
		t.Fatal(err)
	}
	st, err := img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: byPrefix}})
	if err != nil {
		t.Fatal(err)
	}
	if !vm.sawCall("ImageStatus "+byPrefix) || st.GetImage() == nil {
		t.Errorf("ImageStatus by a configured prefix: %v; podvisor's calls %v", st.GetImage(), vm.calls)
	}
	if diff := cmp.Diff([]string{byPrefix + ":latest"}, st.GetImage().GetRepoTags()); diff != "" {
		t.Errorf("podvisor's OCI tags are reported as it gives them (-want +got):\n%s", diff)
	}
	if want := "virtlet.cloud/" + imageID(byPrefix); st.GetImage().GetId() != want {
		t.Errorf("image ID %q, want %q (the domain routes calls by ID back)", st.GetImage().GetId(), want)
	}
}
