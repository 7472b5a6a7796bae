package processtests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/internal/daemonproc"
)

// libvirtNode is podvisor on libvirt in a network namespace of its own (the
// "node") with a bridge + host-local CNI network, as a node runs it.
type libvirtNode struct {
	t        *testing.T
	dir, ns  string
	metrics  string
	d        *daemonproc.Daemon
	pods     []string
	imageRef string
	guestDir string
	// guest is what the bench's VM pods boot (zero: the test guest).
	guest benchGuest
}

const benchImage = "virtlet.cloud/podvisor/testvm"

// nodeOpts: name makes the namespace and bridge names, subnet the pod
// network 10.<subnet>.x.0/24; with httpImage the test guest is served over
// http on the node's loopback (the download path), else named as a file.
type nodeOpts struct {
	name      string
	subnet    int
	httpImage bool
	// secondNet adds a second bridge network, "<name>-b" on bridge
	// pv<name>1 and 10.<subnet>.<x+1>.0/24, that pods name by annotation.
	secondNet bool
	// args are more daemon flags.
	args []string
	// image is the translation's name (default podvisor/testvm):
	// virtlet.cloud/<image> is pulled.
	image string
}

func newLibvirtNode(t *testing.T, guest string, o nodeOpts) *libvirtNode {
	t.Helper()
	b := &libvirtNode{t: t, dir: t.TempDir(), ns: fmt.Sprintf("pv%s-%d", o.name, os.Getpid()), metrics: "127.0.0.1:9494", guestDir: filepath.Dir(guest)}
	run(t, "ip", "netns", "add", b.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", b.ns).Run() })
	run(t, "ip", "netns", "exec", b.ns, "ip", "link", "set", "lo", "up")
	cni, tr := filepath.Join(b.dir, "cni"), filepath.Join(b.dir, "translations")
	for _, d := range []string{cni, tr} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "podvisor-%s", "plugins": [
  {"type": "bridge", "bridge": "pv%s0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.%d.%d.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "%s"}}]}`, o.name, o.name, o.subnet, os.Getpid()%200+20, filepath.Join(b.dir, "ipam"))
	writeFile(t, filepath.Join(cni, "10-"+o.name+".conflist"), conf)
	if o.secondNet {
		conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "%s-b", "plugins": [
  {"type": "bridge", "bridge": "pv%s1", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.%d.%d.0/24"}]], "dataDir": "%s"}}]}`,
			o.name, o.name, o.subnet, os.Getpid()%200+21, filepath.Join(b.dir, "ipam"))
		writeFile(t, filepath.Join(cni, "90-"+o.name+"-b.conflist"), conf)
	}
	// The operator's translation file may name a node file (no image
	// server in a measured path), or the guest served on the node.
	url := "file://" + guest
	args := append([]string{"--net=/run/netns/" + b.ns, daemonproc.Bin(t, "podvisor")}, o.args...)
	if o.httpImage {
		b.serveGuest()
		url = "http://127.0.0.1:8099/" + filepath.Base(guest)
		args = append(args, "--image-download-allow-networks", "127.0.0.1/32")
	}
	if o.image == "" {
		o.image = "podvisor/testvm"
	}
	writeFile(t, filepath.Join(tr, "images.yaml"), "translations:\n- name: "+o.image+"\n  url: "+url+"\n")
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatalf("nsenter (util-linux): %v", err)
	}
	sock := filepath.Join(b.dir, "podvisor.sock")
	b.d = daemonproc.Start(t, nsenter, sock, filepath.Join(b.dir, "podvisor.log"), append(args,
		"--hypervisor", "libvirt", "--network", "cni", "--cni-conf-dir", cni,
		"--listen", "unix://"+sock, "--state-dir", filepath.Join(b.dir, "state"),
		"--image-translations-dir", tr, "--metrics-addr", b.metrics)...)
	t.Cleanup(b.removeAll)
	image := "virtlet.cloud/" + o.image
	r, err := b.d.Images.PullImage(daemonproc.Ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	if err != nil {
		t.Fatalf("PullImage %s: %v", image, err)
	}
	b.imageRef = r.ImageRef
	return b
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// serveGuest serves the test guest's directory over http on the node's
// loopback (busybox httpd) until the test ends.
func (b *libvirtNode) serveGuest() {
	t := b.t
	cmd := exec.Command("ip", "netns", "exec", b.ns, "busybox", "httpd", "-f", "-p", "127.0.0.1:8099", "-h", b.guestDir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the image server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}

// inNode runs a command in the node's network namespace.
func (b *libvirtNode) inNode(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", b.ns, name}, args...)...)
}
