package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func qemuLogsTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "qemu/", Typeflag: tar.TypeDir, Mode: 0o755})
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[n]))})
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	return b.Bytes()
}

// diagFake answers a dump of node-1 (all well) and node-2 (podvisor
// restarted; libvirt's logs fail; no domains).
func diagFake(t *testing.T) *fake {
	f := newFake(t)
	f.on("get pods -n kube-system -l "+podSel+" -o json", list(podvisor2, podvisor1))
	for _, n := range []struct{ pod, node string }{{"podvisor-abcde", "node-1"}, {"podvisor-fghij", "node-2"}} {
		f.on("get pod -n kube-system "+n.pod+" -o yaml", "kind: Pod\nmetadata:\n  name: "+n.pod+"\n")
		for _, c := range []string{"podvisor", "vms", "prepare-node"} {
			f.on("logs -n kube-system "+n.pod+" -c "+c, c+" log of "+n.node+"\n")
		}
		virsh := "exec -n kube-system " + n.pod + " -c libvirt -- virsh -c qemu:///system "
		tarCmd := "exec -n kube-system " + n.pod + " -c libvirt -- tar -C /var/log/libvirt -cf - qemu"
		if n.node == "node-1" {
			f.on("logs -n kube-system "+n.pod+" -c libvirt", "libvirt log of node-1\n")
			f.on(virsh+"list --all", " Id   Name                  State\n 1    "+vmDomain+"   running\n")
			f.on(virsh+"list --all --name", vmDomain+"\n\n")
			f.on(virsh+"dumpxml "+vmDomain, "<domain type='kvm'><name>"+vmDomain+"</name></domain>\n")
			f.add(fakeResponse{Args: tarCmd, Stdout: qemuLogsTar(t, map[string]string{"qemu/" + vmDomain + ".log": "qemu started\n", "qemu/../../etc/evil": "x"})})
			f.on("get pods -A --field-selector spec.nodeName=node-1 -o json", list(cirrosVM, nginx, pendingVM))
		} else {
			f.fail("logs -n kube-system "+n.pod+" -c libvirt", "Error from server (BadRequest): container \"libvirt\" in pod \""+n.pod+"\" is waiting to start: PodInitializing\n", 1)
			f.on("logs -n kube-system "+n.pod+" -c podvisor --previous", "podvisor's previous run\n")
			f.on(virsh+"list --all", " Id   Name   State\n")
			f.on(virsh+"list --all --name", "\n")
			f.add(fakeResponse{Args: tarCmd, Stdout: qemuLogsTar(t, nil)})
			f.on("get pods -A --field-selector spec.nodeName=node-2 -o json", list())
		}
	}
	return f
}

var diagCalls = func() []string {
	var calls []string
	calls = append(calls, "kubectl get pods -n kube-system -l "+podSel+" -o json")
	for _, n := range []struct{ pod, node string }{{"podvisor-abcde", "node-1"}, {"podvisor-fghij", "node-2"}} {
		calls = append(calls, "kubectl get pod -n kube-system "+n.pod+" -o yaml")
		for _, c := range []string{"podvisor", "libvirt", "vms", "prepare-node"} {
			calls = append(calls, "kubectl logs -n kube-system "+n.pod+" -c "+c)
			if c == "podvisor" && n.node == "node-2" {
				calls = append(calls, "kubectl logs -n kube-system "+n.pod+" -c podvisor --previous")
			}
		}
		virsh := "kubectl exec -n kube-system " + n.pod + " -c libvirt -- virsh -c qemu:///system "
		calls = append(calls, virsh+"list --all", virsh+"list --all --name")
		if n.node == "node-1" {
			calls = append(calls, virsh+"dumpxml "+vmDomain)
		}
		calls = append(calls, "kubectl exec -n kube-system "+n.pod+" -c libvirt -- tar -C /var/log/libvirt -cf - qemu",
			"kubectl get pods -A --field-selector spec.nodeName="+n.node+" -o json")
	}
	return calls
}()

func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkDump(t *testing.T, files map[string]string) {
	t.Helper()
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{
		"node-1/domains/" + vmDomain + ".xml",
		"node-1/errors.txt",
		"node-1/libvirt-qemu-logs/qemu/" + vmDomain + ".log",
		"node-1/logs/libvirt.log", "node-1/logs/podvisor.log", "node-1/logs/prepare-node.log", "node-1/logs/vms.log",
		"node-1/pod.yaml", "node-1/virsh-list.txt", "node-1/vm-pods.txt",
		"node-2/errors.txt",
		"node-2/logs/podvisor.log", "node-2/logs/podvisor.previous.log", "node-2/logs/prepare-node.log", "node-2/logs/vms.log",
		"node-2/pod.yaml", "node-2/virsh-list.txt", "node-2/vm-pods.txt",
		"summary.txt",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	for name, substr := range map[string]string{
		"node-1/domains/" + vmDomain + ".xml":                "<name>" + vmDomain + "</name>",
		"node-1/libvirt-qemu-logs/qemu/" + vmDomain + ".log": "qemu started",
		"node-1/logs/podvisor.log":                           "podvisor log of node-1",
		"node-2/logs/podvisor.previous.log":                  "podvisor's previous run",
		"node-1/virsh-list.txt":                              vmDomain + "   running",
		"node-1/vm-pods.txt":                                 "default/cirros-vm  Running  " + vmID + "  " + vmDomain,
		"node-2/errors.txt":                                  "logs/libvirt.log: kubectl logs -n kube-system podvisor-fghij -c libvirt: Error from server (BadRequest)",
		"summary.txt":                                        "crictl --runtime-endpoint unix:///run/podvisor/podvisor.sock pods -o json",
	} {
		if !strings.Contains(files[name], substr) {
			t.Errorf("%s does not contain %q:\n%s", name, substr, files[name])
		}
	}
	if vm := files["node-1/vm-pods.txt"]; strings.Contains(vm, "nginx") || !strings.Contains(vm, "default/new-vm") {
		t.Errorf("vm-pods.txt lists nginx or misses the pending VM:\n%s", vm)
	}
	if e := files["node-1/libvirt-qemu-logs/qemu/../../etc/evil"]; e != "" {
		t.Errorf("a tar entry escaped")
	}
	for _, s := range []string{"node node-1: pod kube-system/podvisor-abcde (Running), 10 files, 1 items failed", `libvirt-qemu-logs/: skipped tar entries that leave the directory: "qemu/../../etc/evil"`, "node node-2: pod kube-system/podvisor-fghij (Running), 8 files, 1 items failed"} {
		if !strings.Contains(files["summary.txt"], s) {
			t.Errorf("summary.txt lacks %q:\n%s", s, files["summary.txt"])
		}
	}
}

func TestDiagDumpDir(t *testing.T) {
	now = func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }
	defer func() { now = time.Now }()
	f := diagFake(t)
	out := filepath.Join(t.TempDir(), "dump")
	r := f.run("diag", "dump", "-o", out)
	if r.code != 0 || !strings.Contains(r.stderr, "wrote "+out+": 2 nodes, 19 files; 2 items could not be collected") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if diff := cmp.Diff(diagCalls, f.calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	checkDump(t, readTree(t, out))

	// Never over an existing output.
	r = f.run("diag", "dump", "-o", out)
	if r.code != 1 || !strings.Contains(r.stderr, "-o "+out+" exists: name a new directory or file") {
		t.Errorf("dump over an existing dir: exit %d\n%s", r.code, r.stderr)
	}

	// The default name, in the working directory.
	wd := t.TempDir()
	t.Chdir(wd)
	if r := f.run("diag", "dump"); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(wd, "podvisor-diag-20260304-050607", "summary.txt")); err != nil {
		t.Error(err)
	}
}

func TestDiagDumpTarGz(t *testing.T) {
	for _, out := range []string{"dump.tar.gz", "dump.tgz", "-"} {
		f := diagFake(t)
		dir := t.TempDir()
		path := filepath.Join(dir, out)
		if out == "-" {
			path = "-"
		}
		r := f.run("diag", "dump", "-o", path)
		if r.code != 0 {
			t.Fatalf("-o %s: exit %d\n%s", out, r.code, r.stderr)
		}
		var data []byte
		if out == "-" {
			data = []byte(r.stdout)
		} else {
			var err error
			if data, err = os.ReadFile(path); err != nil {
				t.Fatal(err)
			}
		}
		gz, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("-o %s: %v", out, err)
		}
		tr := tar.NewReader(gz)
		files := map[string]string{}
		top := ""
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			first, rest, _ := strings.Cut(h.Name, "/")
			if top == "" {
				top = first
			} else if first != top {
				t.Errorf("entry %s outside %s/", h.Name, top)
			}
			b, _ := io.ReadAll(tr)
			files[rest] = string(b)
		}
		if want := strings.TrimSuffix(strings.TrimSuffix(out, ".tar.gz"), ".tgz"); out != "-" && top != want {
			t.Errorf("-o %s: top directory %q, want %q", out, top, want)
		}
		checkDump(t, files)
	}
}

func TestDiagDumpNode(t *testing.T) {
	f := newFake(t)
	f.on("get pods -n kube-system -l "+podSel+" --field-selector spec.nodeName=node-9 -o json", list())
	out := filepath.Join(t.TempDir(), "d")
	r := f.run("diag", "dump", "--node", "node-9", "-o", out)
	if r.code != 1 || !strings.Contains(r.stderr, "no podvisor pod on node node-9") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s created for nothing (%v)", out, err)
	}

	// A podvisor pod that is not running: logs are tried, exec is not.
	f = newFake(t)
	f.on("get pods -n kube-system -l "+podSel+" --field-selector spec.nodeName=node-3 -o json", list(podvisorPn))
	f.on("get pod -n kube-system podvisor-zzzzz -o yaml", "kind: Pod\n")
	for _, c := range []string{"podvisor", "libvirt", "vms", "prepare-node"} {
		f.fail("logs -n kube-system podvisor-zzzzz -c "+c, "waiting to start\n", 1)
	}
	f.on("get pods -A --field-selector spec.nodeName=node-3 -o json", list())
	r = f.run("diag", "dump", "--node", "node-3", "-o", out)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	tree := readTree(t, out)
	if !strings.Contains(tree["node-3/errors.txt"], "virsh, domains, libvirt-qemu-logs: pod kube-system/podvisor-zzzzz is Pending: nothing to exec in") {
		t.Errorf("errors.txt:\n%s", tree["node-3/errors.txt"])
	}
	for _, c := range f.calls() {
		if strings.Contains(c, " exec ") {
			t.Errorf("exec into a pending pod: %s", c)
		}
	}
}

func TestDiagNeedsAVerb(t *testing.T) {
	f := newFake(t)
	r := f.run("diag")
	if r.code != 2 || !strings.Contains(r.stderr, "dump") {
		t.Errorf("diag alone: exit %d\n%s", r.code, r.stderr)
	}
}
