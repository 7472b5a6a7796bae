package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/podvisor/podvisor/runtime/annotations"
	"github.com/podvisor/podvisor/runtime/image"
	"github.com/podvisor/podvisor/runtime/kube"
	"github.com/podvisor/podvisor/runtime/proxy"
)

// objects decodes every built-in document of the given files.
func objects(t *testing.T, docs []doc) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, d := range docs {
		if _, ok := scheme.Scheme.AllKnownTypes()[gvk(d)]; !ok {
			continue
		}
		obj, err := decodeBuiltin(d)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		out[d.file+"/"+d.Kind+"/"+d.Name] = obj
	}
	return out
}

func one[T any](t *testing.T, objs map[string]any, key string) T {
	t.Helper()
	o, ok := objs[key]
	if !ok {
		t.Fatalf("%s not found in the manifests", key)
	}
	v, ok := o.(T)
	if !ok {
		t.Fatalf("%s is a %T", key, o)
	}
	return v
}

var (
	buildMu   sync.Mutex
	buildDir  string
	buildDone = map[string]string{}
)

// binary builds ./cmd/<name> once per test run and returns its path.
func binary(t *testing.T, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildDone[name]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "podvisor-deploy-test-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, name)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, b)
	}
	buildDone[name] = out
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

var helpFlagRE = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// flagsOf runs the binary with --help and returns the flags it lists.
func flagsOf(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(bin, "--help").CombinedOutput() // flag's -help exits 2
	flags := map[string]bool{}
	for _, m := range helpFlagRE.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 3 {
		t.Fatalf("%s --help listed %d flags:\n%s", bin, len(flags), out)
	}
	return flags
}

// flagArgs returns the --flag names and values of a command line
// ("--a b", "--a=b").
func flagArgs(args []string) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name := strings.TrimLeft(a, "-")
		if k, v, ok := strings.Cut(name, "="); ok {
			out[k] = v
			continue
		}
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			out[name] = args[i+1]
			i++
		} else {
			out[name] = ""
		}
	}
	return out
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func podvisorDaemonSet(t *testing.T, objs map[string]any) *appsv1.DaemonSet {
	return one[*appsv1.DaemonSet](t, objs, "daemonset.yaml/DaemonSet/podvisor")
}

// TestDaemonSetFlagsExist: every flag the DaemonSet gives podvisor is one
// the built binary accepts (a renamed flag would crash-loop every node).
func TestDaemonSetFlagsExist(t *testing.T) {
	ds := podvisorDaemonSet(t, objects(t, loadDocs(t)))
	c := container(t, ds.Spec.Template.Spec, "podvisor")
	known := flagsOf(t, binary(t, "podvisor"))
	args := flagArgs(append(c.Command[1:], c.Args...))
	for name := range args {
		if !known[name] {
			t.Errorf("podvisor container passes --%s, which podvisor does not have (it has: %s)", name, strings.Join(sortedKeys(known), ", "))
		}
	}
	// kubeconfig: without it the daemon has no Kubernetes client, and
	// ignores cloud-init data sources and VirtletImageMappings.
	for _, want := range []string{"listen", "state-dir", "image-translations-dir", "hypervisor", "network", "emulator", "kubeconfig"} {
		if _, ok := args[want]; !ok {
			t.Errorf("podvisor container does not pass --%s", want)
		}
	}
}

// TestDaemonSetWiring checks what the API server cannot: mounts name
// volumes, mounts with propagation are allowed, paths agree between the
// containers, the image provides the commands, and the objects the pod
// refers to are in deploy/.
func TestDaemonSetWiring(t *testing.T) {
	objs := objects(t, loadDocs(t))
	ds := podvisorDaemonSet(t, objs)
	spec := ds.Spec.Template.Spec
	if !cmp.Equal(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels, cmpLabels) {
		t.Errorf("selector %v does not match the template's labels %v", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
	}
	if ds.Namespace != "kube-system" {
		t.Errorf("namespace %q, want kube-system", ds.Namespace)
	}
	if spec.NodeSelector["extraRuntime"] != "virtlet" {
		t.Errorf("nodeSelector %v: Virtlet's label extraRuntime=virtlet must select the nodes", spec.NodeSelector)
	}
	if !spec.HostNetwork || !spec.HostPID {
		t.Errorf("hostNetwork=%v hostPID=%v: CNI plugins need the host network, the emulator the host's PIDs", spec.HostNetwork, spec.HostPID)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		if _, dup := volumes[v.Name]; dup {
			t.Errorf("volume %q defined twice", v.Name)
		}
		volumes[v.Name] = v
		if v.HostPath != nil && !filepath.IsAbs(v.HostPath.Path) {
			t.Errorf("volume %q: hostPath %q is not absolute", v.Name, v.HostPath.Path)
		}
	}
	used := map[string]bool{}
	mounts := map[string]map[string]corev1.VolumeMount{} // container -> mountPath -> mount
	for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
		mounts[c.Name] = map[string]corev1.VolumeMount{}
		for _, m := range c.VolumeMounts {
			used[m.Name] = true
			if _, ok := volumes[m.Name]; !ok {
				t.Errorf("container %s mounts volume %q, which the pod does not define", c.Name, m.Name)
			}
			if _, dup := mounts[c.Name][m.MountPath]; dup {
				t.Errorf("container %s mounts %s twice", c.Name, m.MountPath)
			}
			mounts[c.Name][m.MountPath] = m
			if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional &&
				(c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged) {
				t.Errorf("container %s: Bidirectional propagation on %s needs a privileged container (the API refuses it)", c.Name, m.MountPath)
			}
		}
	}
	for name := range volumes {
		if !used[name] {
			t.Errorf("volume %q is mounted by no container", name)
		}
	}
	for _, want := range []string{"podvisor", "libvirt", "vms"} {
		if _, ok := mounts[want]; !ok {
			t.Errorf("no %s container", want)
		}
	}

	// Paths podvisor and QEMU (vms) and libvirtd must see alike.
	pv := flagArgs(container(t, spec, "podvisor").Command[1:])
	state := pv["state-dir"]
	for _, c := range []string{"podvisor", "libvirt", "vms"} {
		for _, p := range []string{state, "/run/netns", "/var/log/pods", "/var/lib/kubelet/pods"} {
			m, ok := mounts[c][p]
			if !ok {
				t.Errorf("container %s does not mount %s (QEMU, libvirtd and podvisor must see the same files)", c, p)
				continue
			}
			if c != "podvisor" && (p == "/run/netns" || p == state) && (m.MountPropagation == nil || *m.MountPropagation == corev1.MountPropagationNone) {
				t.Errorf("container %s: %s needs HostToContainer propagation to see podvisor's later mounts", c, p)
			}
		}
	}
	if m := mounts["podvisor"]["/run/netns"]; m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationBidirectional {
		t.Errorf("podvisor: /run/netns needs Bidirectional propagation: its netns bind mounts must reach the host")
	}
	for _, c := range []string{"podvisor", "libvirt", "vms"} {
		if _, ok := mounts[c]["/var/run/libvirt"]; !ok && c != "vms" {
			t.Errorf("container %s does not mount /var/run/libvirt (libvirt's socket)", c)
		}
		if _, ok := mounts[c]["/dev"]; !ok {
			t.Errorf("container %s does not mount /dev (/dev/kvm, /dev/net/tun)", c)
		}
	}
	if m, ok := mounts["podvisor"][pv["image-translations-dir"]]; !ok || volumes[m.Name].ConfigMap == nil {
		t.Errorf("--image-translations-dir %s is not a ConfigMap volume", pv["image-translations-dir"])
	} else {
		cm := volumes[m.Name].ConfigMap.Name
		one[*corev1.ConfigMap](t, objs, "image-translations.yaml/ConfigMap/"+cm)
	}

	// --kubeconfig is a key of a ConfigMap volume, a kubeconfig that uses
	// the pod's service account.
	kc := pv["kubeconfig"]
	if m, ok := mounts["podvisor"][filepath.Dir(kc)]; !ok || volumes[m.Name].ConfigMap == nil {
		t.Errorf("--kubeconfig %s is not in a ConfigMap volume", kc)
	} else {
		cm := one[*corev1.ConfigMap](t, objs, "rbac.yaml/ConfigMap/"+volumes[m.Name].ConfigMap.Name)
		cfg, err := clientcmd.Load([]byte(cm.Data[filepath.Base(kc)]))
		if err != nil {
			t.Errorf("ConfigMap %s key %s: %v", cm.Name, filepath.Base(kc), err)
		} else if ctx := cfg.Contexts[cfg.CurrentContext]; ctx == nil || cfg.Clusters[ctx.Cluster] == nil || cfg.AuthInfos[ctx.AuthInfo] == nil {
			t.Errorf("ConfigMap %s: current context %q does not name a cluster and a user", cm.Name, cfg.CurrentContext)
		} else if u := cfg.AuthInfos[ctx.AuthInfo]; u.TokenFile != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
			t.Errorf("ConfigMap %s: kubeconfig user reads token %q, want the service account's", cm.Name, u.TokenFile)
		} else if c := cfg.Clusters[ctx.Cluster]; c.Server != "https://kubernetes.default.svc" || c.CertificateAuthority != "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt" {
			t.Errorf("ConfigMap %s: cluster %s at %s with CA %s, want the in-cluster ones", cm.Name, ctx.Cluster, c.Server, c.CertificateAuthority)
		}
		checkDaemonLoadsKubeconfig(t, cm.Data[filepath.Base(kc)])
	}

	// The pod's identity exists and may read what podvisor reads.
	sa := one[*corev1.ServiceAccount](t, objs, "rbac.yaml/ServiceAccount/"+spec.ServiceAccountName)
	if sa.Namespace != ds.Namespace {
		t.Errorf("service account in %q, DaemonSet in %q", sa.Namespace, ds.Namespace)
	}
	checkRBAC(t, objs, sa)

	// Every command the containers run comes from the image.
	dockerfile, err := os.ReadFile("image/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	commands := map[string]bool{pv["emulator"]: true}
	for _, o := range objs {
		d, ok := o.(*appsv1.DaemonSet)
		if !ok {
			continue
		}
		for _, c := range append(append([]corev1.Container(nil), d.Spec.Template.Spec.InitContainers...), d.Spec.Template.Spec.Containers...) {
			if strings.HasPrefix(c.Command[0], "/usr/local/") {
				commands[c.Command[0]] = true
			}
		}
	}
	for p := range commands {
		base := filepath.Base(p)
		if !strings.Contains(string(dockerfile), base) {
			t.Errorf("%s is not installed by image/Dockerfile", p)
		}
		if strings.HasPrefix(p, "/usr/local/bin/podvisor") && base != "podvisor-vms-emulator" {
			continue // built from cmd/
		}
		src := filepath.Join("image", base)
		fi, err := os.Stat(src)
		if err != nil {
			t.Errorf("%s: the image's %s has no source: %v", src, p, err)
			continue
		}
		if fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", src)
		}
		if out, err := exec.Command("bash", "-n", src).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", src, err, out)
		}
	}
}

var cmpLabels = cmp.Comparer(func(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
})

// checkRBAC: a binding gives sa a role with what podvisor reads.
func checkRBAC(t *testing.T, objs map[string]any, sa *corev1.ServiceAccount) {
	t.Helper()
	want := map[string][]string{ // "group/resource" -> verbs
		"/configmaps": {"get"},
		"/secrets":    {"get"},
		"/nodes":      {"get"},
		// The daemon's informer (runtime/image/crdsource) lists, then
		// watches, in every namespace unless --image-mapping-namespace
		// says otherwise: a ClusterRole fits both.
		"virtlet.k8s/virtletimagemappings":  {"list", "watch"},
		"virtlet.k8s/virtletconfigmappings": {"list"},
	}
	granted := map[string]bool{}
	for _, o := range objs {
		b, ok := o.(*rbacv1.ClusterRoleBinding)
		if !ok {
			continue
		}
		bound := false
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa.Name && s.Namespace == sa.Namespace {
				bound = true
			}
		}
		if !bound {
			continue
		}
		role := one[*rbacv1.ClusterRole](t, objs, "rbac.yaml/ClusterRole/"+b.RoleRef.Name)
		for _, r := range role.Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						granted[g+"/"+res+"/"+v] = true
					}
				}
			}
		}
	}
	for gr, verbs := range want {
		for _, verb := range verbs {
			if !granted[gr+"/"+verb] {
				t.Errorf("service account %s/%s may not %s %s", sa.Namespace, sa.Name, verb, gr)
			}
		}
	}
}

// TestRuntimeClassMatchesCriproxy: the RuntimeClass's handler is the name
// criproxy routes to podvisor, the proxy's podvisor endpoint is where the
// DaemonSet listens, kubelet is pointed at the proxy's socket, the flags the
// installer gives criproxy exist, and the RuntimeClass schedules onto the
// DaemonSet's nodes.
func TestRuntimeClassMatchesCriproxy(t *testing.T) {
	objs := objects(t, loadDocs(t))
	rc := one[*nodev1.RuntimeClass](t, objs, "runtimeclass.yaml/RuntimeClass/podvisor")
	ds := podvisorDaemonSet(t, objs)
	setup := one[*appsv1.DaemonSet](t, objs, "node-setup.yaml/DaemonSet/podvisor-node-setup")

	root := fakeNode(t, "")
	out := runInstaller(t, root, setupEnv(t, setup), "install")
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/criproxy.service"))
	if err != nil {
		t.Fatalf("installer wrote no unit: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=(\S+) (.*)$`).FindStringSubmatch(string(unit))
	if m == nil {
		t.Fatalf("no ExecStart in the unit:\n%s", unit)
	}
	args := strings.Fields(m[2])
	known := flagsOf(t, binary(t, "criproxy"))
	for name := range flagArgs(args) {
		if !known[name] {
			t.Errorf("criproxy.service passes --%s, which criproxy does not have", name)
		}
	}
	fa := flagArgs(args)
	rt, err := proxy.ParseRuntimeFlag(fa["runtime"])
	if err != nil {
		t.Fatal(err)
	}
	// Without --handler or a config file a runtime's handler is its name.
	if _, ok := fa["handler"]; ok {
		t.Fatalf("the unit adds handlers; update this test")
	}
	if rc.Handler != rt.Name || rt.Name != proxy.DefaultVirtletRuntime {
		t.Errorf("RuntimeClass handler %q, criproxy routes handler %q (runtime %q; Virtlet annotations go to %q)", rc.Handler, rt.Name, rt.Name, proxy.DefaultVirtletRuntime)
	}
	listen := flagArgs(container(t, ds.Spec.Template.Spec, "podvisor").Command[1:])["listen"]
	if rt.Endpoint != listen {
		t.Errorf("criproxy reaches podvisor at %s, the DaemonSet listens on %s", rt.Endpoint, listen)
	}
	kcfg, err := os.ReadFile(filepath.Join(root, "var/lib/kubelet/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(kcfg), "containerRuntimeEndpoint: "+fa["listen"]+"\n") {
		t.Errorf("kubelet config does not point at criproxy's %s:\n%s", fa["listen"], kcfg)
	}
	if rc.Scheduling == nil || !cmp.Equal(rc.Scheduling.NodeSelector, ds.Spec.Template.Spec.NodeSelector, cmpLabels) {
		t.Errorf("RuntimeClass schedules onto %v, the DaemonSet runs on %v", rc.Scheduling, ds.Spec.Template.Spec.NodeSelector)
	}
	if !cmp.Equal(setup.Spec.Template.Spec.NodeSelector, ds.Spec.Template.Spec.NodeSelector, cmpLabels) {
		t.Errorf("node setup runs on %v, podvisor on %v: both or neither", setup.Spec.Template.Spec.NodeSelector, ds.Spec.Template.Spec.NodeSelector)
	}
}

// setupEnv is the installer's environment as the node-setup DaemonSet sets
// it, less HOST_ROOT.
func setupEnv(t *testing.T, setup *appsv1.DaemonSet) []string {
	t.Helper()
	var env []string
	for _, e := range container(t, setup.Spec.Template.Spec, "install-criproxy").Env {
		if e.Name != "HOST_ROOT" {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	return env
}

// fakeNode makes a host root with kubeadm's kubelet files; flags is the
// content of kubeadm-flags.env ("" for none).
func fakeNode(t *testing.T, flags string) string {
	t.Helper()
	root := t.TempDir()
	write(t, filepath.Join(root, "var/lib/kubelet/config.yaml"), "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n")
	if flags != "" {
		write(t, filepath.Join(root, "var/lib/kubelet/kubeadm-flags.env"), flags)
	}
	return root
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func runInstaller(t *testing.T, root string, env []string, verb string) string {
	t.Helper()
	out, err := installer(root, env, verb)
	if err != nil {
		t.Fatalf("install-criproxy.sh %s: %v\n%s", verb, err, out)
	}
	return out
}

func installer(root string, env []string, verb string) (string, error) {
	fakeBin := filepath.Join(root, "..", filepath.Base(root)+"-criproxy")
	if _, err := os.Stat(fakeBin); err != nil {
		if err := os.WriteFile(fakeBin, []byte("#!/bin/sh\necho criproxy\n"), 0o755); err != nil {
			return "", err
		}
	}
	cmd := exec.CommandContext(context.Background(), "bash", "image/install-criproxy.sh", verb)
	cmd.Env = append(append(os.Environ(), env...), "HOST_ROOT="+root, "NO_SYSTEMCTL=1", "CRIPROXY_BIN="+fakeBin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInstallCriproxy runs the node installer against fake host roots:
// endpoints rewritten in the config file and kubeadm's flags, a second run
// changes nothing and restarts nothing, uninstall restores the primary.
func TestInstallCriproxy(t *testing.T) {
	const (
		proxySock = "unix:///run/criproxy/criproxy.sock"
		primary   = "unix:///run/containerd/containerd.sock"
	)
	tests := []struct {
		name      string
		config    string // kubelet config.yaml; "" = fakeNode's
		flags     string
		wantFlags string
	}{
		{
			name:      "kubeadm flags with the endpoint",
			flags:     `KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock --node-ip=172.18.0.2 --pod-infra-container-image=pause:3.10"` + "\n",
			wantFlags: `KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=` + proxySock + ` --node-ip=172.18.0.2 --pod-infra-container-image=pause:3.10"` + "\n",
		},
		{
			name:      "flag with a space and the image endpoint",
			flags:     `KUBELET_KUBEADM_ARGS="--node-ip=10.0.0.1 --container-runtime-endpoint unix:///run/containerd/containerd.sock --image-service-endpoint=unix:///run/containerd/containerd.sock"` + "\n",
			wantFlags: `KUBELET_KUBEADM_ARGS="--node-ip=10.0.0.1 --container-runtime-endpoint=` + proxySock + ` --image-service-endpoint=` + proxySock + `"` + "\n",
		},
		{
			name:   "no flags file, no endpoint in the config",
			config: "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeNode(t, tc.flags)
			cfgPath := filepath.Join(root, "var/lib/kubelet/config.yaml")
			flagsPath := filepath.Join(root, "var/lib/kubelet/kubeadm-flags.env")
			if tc.config != "" {
				write(t, cfgPath, tc.config)
			}
			before := read(t, cfgPath)

			out := runInstaller(t, root, nil, "install")
			if !strings.Contains(out, "would run: systemctl restart --no-block kubelet.service") {
				t.Errorf("first install did not restart kubelet:\n%s", out)
			}
			cfg := read(t, cfgPath)
			for _, key := range []string{"containerRuntimeEndpoint", "imageServiceEndpoint"} {
				if n := strings.Count(cfg, key+":"); n != 1 || !strings.Contains(cfg, key+": "+proxySock+"\n") {
					t.Errorf("config.yaml has %d %s lines, want one with %s:\n%s", n, key, proxySock, cfg)
				}
			}
			if !strings.Contains(cfg, "kind: KubeletConfiguration\n") {
				t.Errorf("config.yaml lost its other fields:\n%s", cfg)
			}
			if tc.flags != "" {
				if diff := cmp.Diff(tc.wantFlags, read(t, flagsPath)); diff != "" {
					t.Errorf("kubeadm-flags.env (-want +got):\n%s", diff)
				}
			}
			if got := read(t, filepath.Join(root, "usr/local/bin/criproxy")); got != "#!/bin/sh\necho criproxy\n" {
				t.Errorf("criproxy not copied: %q", got)
			}
			unit := read(t, filepath.Join(root, "etc/systemd/system/criproxy.service"))
			for _, want := range []string{"--listen " + proxySock, "--primary " + primary, "--runtime podvisor=unix:///run/podvisor/podvisor.sock", "Before=kubelet.service"} {
				if !strings.Contains(unit, want) {
					t.Errorf("unit lacks %q:\n%s", want, unit)
				}
			}

			snapshot := snapshotDir(t, root)
			out = runInstaller(t, root, nil, "install")
			if strings.Contains(out, "restart --no-block kubelet") || !strings.Contains(out, "node already set up") {
				t.Errorf("second install was not a no-op:\n%s", out)
			}
			if diff := cmp.Diff(snapshot, snapshotDir(t, root)); diff != "" {
				t.Errorf("second install changed files (-before +after):\n%s", diff)
			}

			runInstaller(t, root, nil, "uninstall")
			cfg = read(t, cfgPath)
			if strings.Contains(cfg, proxySock) || !strings.Contains(cfg, "containerRuntimeEndpoint: "+primary+"\n") {
				t.Errorf("after uninstall config.yaml still points at the proxy or not at %s:\n%s\n(before install:\n%s)", primary, cfg, before)
			}
			if tc.flags != "" {
				if diff := cmp.Diff(strings.ReplaceAll(tc.wantFlags, proxySock, primary), read(t, flagsPath)); diff != "" {
					t.Errorf("kubeadm-flags.env after uninstall (-want +got):\n%s", diff)
				}
			}
			for _, p := range []string{"usr/local/bin/criproxy", "etc/systemd/system/criproxy.service"} {
				if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
					t.Errorf("%s still there after uninstall (%v)", p, err)
				}
			}
		})
	}
}

func TestInstallCriproxyRefusesMissingKubeletConfig(t *testing.T) {
	root := t.TempDir()
	out, err := installer(root, nil, "install")
	if err == nil || !strings.Contains(out, "kubelet config") || !strings.Contains(out, "KUBELET_CONFIG") {
		t.Errorf("install without a kubelet config: err=%v, want a message naming the file and KUBELET_CONFIG:\n%s", err, out)
	}
	if out, err := installer(root, nil, "bogus"); err == nil || !strings.Contains(out, "usage") {
		t.Errorf("unknown verb: err=%v\n%s", err, out)
	}
}

func snapshotDir(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[strings.TrimPrefix(p, root)] = fmt.Sprintf("%v %s", fi.Mode(), b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// vmPod is a pod template of the examples that becomes a VM.
type vmPod struct {
	where string
	meta  map[string]string
	spec  corev1.PodSpec
}

func examplePods(t *testing.T, objs map[string]any) []vmPod {
	t.Helper()
	var pods []vmPod
	for key, o := range objs {
		if !strings.HasPrefix(key, "examples/") {
			continue
		}
		switch x := o.(type) {
		case *corev1.Pod:
			pods = append(pods, vmPod{key, x.Annotations, x.Spec})
		case *appsv1.Deployment:
			pods = append(pods, vmPod{key, x.Spec.Template.Annotations, x.Spec.Template.Spec})
		case *appsv1.StatefulSet:
			pods = append(pods, vmPod{key, x.Spec.Template.Annotations, x.Spec.Template.Spec})
		case *appsv1.DaemonSet:
			pods = append(pods, vmPod{key, x.Spec.Template.Annotations, x.Spec.Template.Spec})
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].where < pods[j].where })
	return pods
}

// mappingSource serves the example VirtletImageMapping as podvisor's CRD
// source would.
type mappingSource []image.NamedConfig

func (m mappingSource) Mappings(context.Context) ([]image.NamedConfig, error) { return m, nil }

// TestExamplesAreVMPods: every example pod is routed to podvisor, its
// annotations are accepted by podvisor's parser, and its image name is
// translated by a rule of the ConfigMap or the example VirtletImageMapping
// (not passed through as a URL by accident).
func TestExamplesAreVMPods(t *testing.T) {
	docs := loadDocs(t)
	objs := objects(t, docs)

	dir := t.TempDir()
	cm := one[*corev1.ConfigMap](t, objs, "image-translations.yaml/ConfigMap/virtlet-image-translations")
	if len(cm.Data) == 0 {
		t.Fatal("the image translations ConfigMap is empty")
	}
	for k, v := range cm.Data {
		if _, err := image.ParseConfig(k, []byte(v)); err != nil {
			t.Errorf("ConfigMap %s: %v", cm.Name, err)
		}
		write(t, filepath.Join(dir, k), v)
	}
	var src mappingSource
	for _, d := range docs {
		if d.Kind != "VirtletImageMapping" {
			continue
		}
		var obj struct {
			Spec any `json:"spec"`
		}
		if err := yaml.Unmarshal(d.raw, &obj); err != nil {
			t.Fatal(err)
		}
		spec, _ := yaml.Marshal(obj.Spec)
		c, err := image.ParseConfig(d.Name, spec)
		if err != nil {
			t.Errorf("%s: podvisor refuses the spec: %v", d, err)
			continue
		}
		src = append(src, image.NamedConfig{Name: d.Name, Config: c})
	}
	tr := image.NewTranslations(dir, src)

	pods := examplePods(t, objs)
	if len(pods) < 5 {
		t.Fatalf("%d example VM pods, want at least 5", len(pods))
	}
	runtimeClass := false
	for _, p := range pods {
		t.Run(p.where, func(t *testing.T) {
			if len(p.spec.Containers) != 1 {
				t.Errorf("%d containers: a VM pod has exactly one", len(p.spec.Containers))
			}
			byAnnotation := p.meta[proxy.TargetRuntimeAnnotation] == proxy.VirtletTargetRuntime
			byClass := p.spec.RuntimeClassName != nil && *p.spec.RuntimeClassName == proxy.DefaultVirtletRuntime
			runtimeClass = runtimeClass || (byClass && !byAnnotation)
			if !byAnnotation && !byClass {
				t.Errorf("neither %s: %s nor runtimeClassName: %s: criproxy would give it to containerd", proxy.TargetRuntimeAnnotation, proxy.VirtletTargetRuntime, proxy.DefaultVirtletRuntime)
			}
			for _, c := range p.spec.Containers {
				var res annotations.Resources
				if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
					res.MemoryLimitBytes = q.Value()
				}
				if _, err := annotations.Parse(p.meta, res, nil); err != nil {
					t.Errorf("podvisor refuses the annotations: %v", err)
				}
				name, ok := strings.CutPrefix(c.Image, proxy.VirtletTargetRuntime+"/")
				if !ok {
					t.Errorf("image %q: use %s/<name>", c.Image, proxy.VirtletTargetRuntime)
					continue
				}
				ep, err := tr.Translate(context.Background(), name)
				if err != nil {
					t.Fatal(err)
				}
				if ep.URL == name || !strings.HasPrefix(ep.URL, "https://") {
					t.Errorf("image %s: no translation rule matched (%s); add one to image-translations.yaml", c.Image, ep.Source)
				}
				if !c.TTY || !c.Stdin {
					t.Errorf("container %s: tty and stdin are needed for kubectl attach -t", c.Name)
				}
			}
			if p.spec.NodeSelector["extraRuntime"] == "" && p.spec.Affinity == nil && !byClass {
				t.Errorf("no node selection: the pod may land on a node without podvisor")
			}
		})
	}
	if !runtimeClass {
		t.Error("no example selects podvisor by RuntimeClass alone")
	}
}

// TestCRDSchemaRejects: the schema check used on the examples fails on
// the mistakes users make (so a passing example means something).
func TestCRDSchemaRejects(t *testing.T) {
	defs := crds(t, loadDocs(t))
	mapping := defs["virtlet.k8s/VirtletImageMapping"].Spec.Versions[0].Schema.OpenAPIV3Schema
	config := defs["virtlet.k8s/VirtletConfigMapping"].Spec.Versions[0].Schema.OpenAPIV3Schema
	tests := []struct {
		name   string
		schema *schemaProps
		obj    string
		want   string // substring of an error; "" = valid
	}{
		{"valid mapping", mapping, `spec: {translations: [{name: a, url: "https://x/a"}]}`, ""},
		{"name and regexp", mapping, `spec: {translations: [{name: a, regexp: b, url: "https://x/a"}]}`, "exactly one of 2 alternatives"},
		{"neither name nor regexp", mapping, `spec: {translations: [{url: "https://x/a"}]}`, "matches 0"},
		{"no url", mapping, `spec: {translations: [{name: a}]}`, `required field "url"`},
		{"typo regex", mapping, `spec: {translations: [{regex: a, url: u}]}`, `unknown field "regex"`},
		{"timeout as text", mapping, `spec: {transports: {t: {timeout: 30s}}}`, "not of type integer"},
		{"negative redirects", mapping, `spec: {transports: {t: {maxRedirects: -1}}}`, "less than the minimum"},
		{"tls cert without cert", mapping, `spec: {transports: {t: {tls: {certificates: [{key: k}]}}}}`, `required field "cert"`},
		{"valid config", config, `spec: {nodeName: n1, priority: 3, config: {kvm: "off", cniBinDirs: [/opt/cni/bin]}}`, ""},
		{"kvm value", config, `spec: {config: {kvm: sometimes}}`, "is not one of"},
		{"nodeSelector value", config, `spec: {nodeSelector: {a: 1}}`, "not of type string"},
		{"unknown config key", config, `spec: {config: {disableKvm: true}}`, `unknown field "disableKvm"`},
		{"fractional priority", config, `spec: {priority: 1.5}`, "not of type integer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := yamlToValue([]byte(tc.obj))
			if err != nil {
				t.Fatal(err)
			}
			errs := validate(tc.schema, v, "")
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			got := strings.Join(msgs, "\n")
			switch {
			case tc.want == "" && got != "":
				t.Errorf("valid object refused:\n%s", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("errors %q, want one containing %q", got, tc.want)
			}
		})
	}
}

// TestCRDStructureChecks: checkCRD refuses the schemas the API server
// refuses.
func TestCRDStructureChecks(t *testing.T) {
	base := func() *crd {
		c := &crd{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"}
		c.Metadata.Name = "things.example.org"
		c.Spec = crdSpec{Group: "example.org", Scope: "Namespaced", Names: crdNames{Kind: "Thing", Plural: "things"}}
		v := crdVersion{Name: "v1", Served: true, Storage: true}
		v.Schema = &struct {
			OpenAPIV3Schema *schemaProps `json:"openAPIV3Schema"`
		}{&schemaProps{Type: "object", Properties: map[string]*schemaProps{"spec": {Type: "object", Properties: map[string]*schemaProps{"a": {Type: "string"}}}}}}
		c.Spec.Versions = []crdVersion{v}
		return c
	}
	tests := []struct {
		name   string
		mutate func(*crd)
		want   string
	}{
		{"valid", func(*crd) {}, ""},
		{"wrong name", func(c *crd) { c.Metadata.Name = "thing.example.org" }, "<plural>.<group>"},
		{"untyped node", func(c *crd) { c.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["a"].Type = "" }, "type is required"},
		{"array without items", func(c *crd) {
			c.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["a"].Type = "array"
		}, "needs items"},
		{"type in oneOf", func(c *crd) {
			c.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].OneOf = []*schemaProps{{Type: "object"}}
		}, "only value validations"},
		{"two storage versions", func(c *crd) {
			c.Spec.Versions = append(c.Spec.Versions, c.Spec.Versions[0])
			c.Spec.Versions[1].Name = "v2"
		}, "2 storage versions"},
		{"printer column outside the schema", func(c *crd) {
			c.Spec.Versions[0].AdditionalPrinterColumns = []printerColumn{{Name: "B", Type: "string", JSONPath: ".spec.b"}}
		}, "not in the schema"},
		{"metadata fields", func(c *crd) {
			c.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["metadata"] = &schemaProps{Type: "object", Properties: map[string]*schemaProps{"name": {Type: "string"}}}
		}, "metadata may only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(c)
			var msgs []string
			for _, e := range checkCRD(c) {
				msgs = append(msgs, e.Error())
			}
			got := strings.Join(msgs, "\n")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("errors %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStrictDecodingRejectsUnknownFields: the decoder used above does fail
// on a misspelt field (a manifest with one would otherwise be accepted with
// the field dropped).
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	bad := doc{file: "inline", raw: []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: a\n    image: b\n    volumeMount: []\n")}
	if _, err := decodeBuiltin(bad); err == nil || !strings.Contains(err.Error(), "volumeMount") {
		t.Errorf("unknown field accepted or not named: %v", err)
	}
	good := doc{file: "inline", raw: []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: a\n    image: b\n    resources: {limits: {memory: 160Mi}}\n")}
	obj, err := decodeBuiltin(good)
	if err != nil {
		t.Fatal(err)
	}
	if q := obj.(*corev1.Pod).Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]; q.Cmp(resource.MustParse("160Mi")) != 0 {
		t.Errorf("decoded memory limit %v", q.String())
	}
}

// checkDaemonLoadsKubeconfig loads the shipped kubeconfig as the daemon
// does (runtime/kube, podvisor's own client, which refuses what it does
// not support), with the service-account files in a temporary directory.
func checkDaemonLoadsKubeconfig(t *testing.T, text string) {
	t.Helper()
	const saDir = "/var/run/secrets/kubernetes.io/serviceaccount/"
	dir := t.TempDir() + "/"
	for name, data := range map[string]string{"ca.crt": "the CA", "token": "the token"} {
		if err := os.WriteFile(dir+name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, saDir, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := kube.RESTConfig(path)
	switch {
	case err != nil:
		t.Errorf("the daemon cannot load the shipped kubeconfig: %v", err)
	case cfg.Server != "https://kubernetes.default.svc" || string(cfg.CAData) != "the CA" || cfg.TokenFile != dir+"token":
		t.Errorf("the daemon loads the shipped kubeconfig as server %s, CA %q, token file %s; want the in-cluster ones", cfg.Server, cfg.CAData, cfg.TokenFile)
	}
}
