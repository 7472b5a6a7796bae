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
	"github.com/podvisor/podvisor/runtime/vmbuild"
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

// TestDaemonSetDownloadPolicy: deploy/ keeps podvisor's image download
// policy at its defaults (docs/images.md, download policy): untranslated
// names refused, no loopback, link-local or private addresses, redirects
// to https or within the origin, the default size cap. An operator opens
// them in an overlay, knowing the network.
func TestDaemonSetDownloadPolicy(t *testing.T) {
	ds := podvisorDaemonSet(t, objects(t, loadDocs(t)))
	c := container(t, ds.Spec.Template.Spec, "podvisor")
	args := flagArgs(append(c.Command[1:], c.Args...))
	for _, off := range []string{"image-allow-untranslated", "image-download-allow-networks", "image-download-allow-private",
		"image-download-allow-insecure-redirects", "image-max-size"} {
		if v, ok := args[off]; ok {
			t.Errorf("podvisor container passes --%s %s: deploy/ keeps the download policy's default", off, v)
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
	// the pod's service account, projected outside /run.
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
		} else {
			u, c := cfg.AuthInfos[ctx.AuthInfo], cfg.Clusters[ctx.Cluster]
			if c.Server != "https://kubernetes.default.svc" {
				t.Errorf("ConfigMap %s: cluster %s at %s, want the in-cluster one", cm.Name, ctx.Cluster, c.Server)
			}
			checkProjectedServiceAccount(t, mounts["podvisor"], volumes, u.TokenFile, c.CertificateAuthority)
		}
		checkDaemonLoadsKubeconfig(t, cm.Data[filepath.Base(kc)])
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken is not false: the default token mount at /var/run/secrets lands in the host's /run, which the podvisor container mounts")
	}
	checkImageMappingNamespace(t, container(t, spec, "podvisor"), pv)

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

// checkRBAC: podvisor's service account may do what podvisor does and no
// more: get ConfigMaps in every namespace; get Secrets only where a
// namespace binds podvisor-secrets (no ClusterRoleBinding may grant them);
// list and watch VirtletImageMappings in its own namespace only.
func checkRBAC(t *testing.T, objs map[string]any, sa *corev1.ServiceAccount) {
	t.Helper()
	subject := func(subjects []rbacv1.Subject) bool {
		for _, s := range subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa.Name && s.Namespace == sa.Namespace {
				return true
			}
		}
		return false
	}
	grants := func(rules []rbacv1.PolicyRule, into map[string]bool) {
		for _, r := range rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						into[g+"/"+res+"/"+v] = true
					}
				}
			}
		}
	}
	cluster := map[string]bool{} // what the service account may do everywhere
	inOwn := map[string]bool{}   // ... in its own namespace
	for _, o := range objs {
		switch b := o.(type) {
		case *rbacv1.ClusterRoleBinding:
			if subject(b.Subjects) {
				grants(one[*rbacv1.ClusterRole](t, objs, "rbac.yaml/ClusterRole/"+b.RoleRef.Name).Rules, cluster)
			}
		case *rbacv1.RoleBinding:
			if subject(b.Subjects) && b.Namespace == sa.Namespace && b.RoleRef.Kind == "Role" {
				grants(one[*rbacv1.Role](t, objs, "rbac.yaml/Role/"+b.RoleRef.Name).Rules, inOwn)
			}
		}
	}
	want := map[string]bool{"/configmaps/get": true, "/pods/get": true, "/nodes/patch": true}
	if diff := cmp.Diff(want, cluster); diff != "" {
		t.Errorf("cluster-wide grants of %s/%s (-want +got): only get of ConfigMaps and Pods (a VM's ephemeral-storage limit) and the patch of its Node's accelerator label; Secrets are granted per namespace\n%s", sa.Namespace, sa.Name, diff)
	}
	wantOwn := map[string]bool{"virtlet.k8s/virtletimagemappings/get": true, "virtlet.k8s/virtletimagemappings/list": true, "virtlet.k8s/virtletimagemappings/watch": true}
	if diff := cmp.Diff(wantOwn, inOwn); diff != "" {
		t.Errorf("grants in namespace %s (-want +got): the image mappings podvisor watches there\n%s", sa.Namespace, diff)
	}
	secrets := map[string]bool{}
	grants(one[*rbacv1.ClusterRole](t, objs, "rbac.yaml/ClusterRole/podvisor-secrets").Rules, secrets)
	if diff := cmp.Diff(map[string]bool{"/secrets/get": true}, secrets); diff != "" {
		t.Errorf("ClusterRole podvisor-secrets, for per-namespace RoleBindings (-want +got):\n%s", diff)
	}
}

// checkProjectedServiceAccount: the kubeconfig's token and CA files are
// the projected service-account volume's, mounted where the kubeconfig
// says.
func checkProjectedServiceAccount(t *testing.T, mounts map[string]corev1.VolumeMount, volumes map[string]corev1.Volume, token, ca string) {
	t.Helper()
	m, ok := mounts[filepath.Dir(token)]
	if !ok || volumes[m.Name].Projected == nil || filepath.Dir(ca) != filepath.Dir(token) {
		t.Errorf("kubeconfig token %s and CA %s are not in one projected volume of the podvisor container", token, ca)
		return
	}
	if strings.HasPrefix(token, "/run/") || strings.HasPrefix(token, "/var/run/") {
		t.Errorf("token %s is under /run, the host's /run in the podvisor container", token)
	}
	files := map[string]string{}
	for _, src := range volumes[m.Name].Projected.Sources {
		switch {
		case src.ServiceAccountToken != nil:
			files[src.ServiceAccountToken.Path] = "token"
		case src.ConfigMap != nil && src.ConfigMap.Name == "kube-root-ca.crt":
			for _, it := range src.ConfigMap.Items {
				files[it.Path] = "configmap kube-root-ca.crt key " + it.Key
			}
		}
	}
	if files[filepath.Base(token)] != "token" {
		t.Errorf("projected volume %s has no service-account token at %s (%v)", m.Name, filepath.Base(token), files)
	}
	if files[filepath.Base(ca)] != "configmap kube-root-ca.crt key ca.crt" {
		t.Errorf("projected volume %s has no cluster CA at %s (%v)", m.Name, filepath.Base(ca), files)
	}
}

// checkImageMappingNamespace: the daemon watches VirtletImageMappings in
// its own namespace, which the Role of rbac.yaml covers, whatever
// namespace `podvisorctl gen --podvisor-namespace` puts it in.
func checkImageMappingNamespace(t *testing.T, c corev1.Container, pv map[string]string) {
	t.Helper()
	if pv["image-mapping-namespace"] != "$(POD_NAMESPACE)" {
		t.Errorf("--image-mapping-namespace %q, want $(POD_NAMESPACE): mappings only from podvisor's own namespace", pv["image-mapping-namespace"])
	}
	for _, e := range c.Env {
		if e.Name == "POD_NAMESPACE" {
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
				t.Errorf("env POD_NAMESPACE is not the pod's namespace (downward API metadata.namespace)")
			}
			return
		}
	}
	t.Errorf("container podvisor has no env POD_NAMESPACE for --image-mapping-namespace")
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
	if got := rc.Overhead; got == nil || got.PodFixed.Memory().Value() != vmbuild.QEMUMemoryOverheadBytes {
		t.Errorf("RuntimeClass overhead %+v: want podFixed memory %d (vmbuild.QEMUMemoryOverheadBytes, what the VM's cgroup allows QEMU beyond the guest's RAM)", got, vmbuild.QEMUMemoryOverheadBytes)
	}
	if rc.Handler != rt.Name || rt.Name != proxy.DefaultVirtletRuntime {
		t.Errorf("RuntimeClass handler %q, criproxy routes handler %q (runtime %q; Virtlet annotations go to %q)", rc.Handler, rt.Name, rt.Name, proxy.DefaultVirtletRuntime)
	}
	listen := flagArgs(container(t, ds.Spec.Template.Spec, "podvisor").Command[1:])["listen"]
	if rt.Endpoint != listen {
		t.Errorf("criproxy reaches podvisor at %s, the DaemonSet listens on %s", rt.Endpoint, listen)
	}
	kcfg, err := os.ReadFile(filepath.Join(root, dropIn))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(kcfg), "containerRuntimeEndpoint: "+fa["listen"]+"\n") {
		t.Errorf("kubelet's drop-in does not point at criproxy's %s:\n%s", fa["listen"], kcfg)
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
	cmd.Env = append(append(os.Environ(), "PROC_DIR="+filepath.Join(root, "proc")), env...)
	cmd.Env = append(cmd.Env, "HOST_ROOT="+root, "NO_SYSTEMCTL=1", "CRIPROXY_BIN="+fakeBin)
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

// dropIn is where the installer puts kubelet's endpoints on a kubeadm node
// whose kubelet runs without --config-dir.
const dropIn = "etc/kubernetes/kubelet.conf.d/99-podvisor-criproxy.conf"

// TestInstallCriproxy runs the node installer against fake host roots: a
// kubelet drop-in with the proxy's endpoints, --config-dir given to kubelet
// when it has none, endpoint flags rewritten, a second run (also after
// kubeadm upgrade rewrote config.yaml) changes nothing and restarts
// nothing, uninstall restores every file as it was.
func TestInstallCriproxy(t *testing.T) {
	const (
		proxySock = "unix:///run/criproxy/criproxy.sock"
		primary   = "unix:///run/containerd/containerd.sock"
	)
	tests := []struct {
		name      string
		flags     string            // kubeadm-flags.env ("" = none)
		files     map[string]string // more host files
		cmdline   string            // the running kubelet's argv, NUL-separated ("" = none)
		dropIn    string            // where the drop-in must be
		wantFlags string            // kubeadm-flags.env after install
		wantExtra string            // /etc/default/kubelet after install ("" = not written)
	}{
		{
			name:      "kubeadm 1.37 node",
			flags:     `KUBELET_KUBEADM_ARGS="--node-ip=172.18.0.2"` + "\n",
			dropIn:    dropIn,
			wantFlags: `KUBELET_KUBEADM_ARGS="--node-ip=172.18.0.2"` + "\n",
			wantExtra: "# podvisor install-criproxy.sh: --config-dir added for 99-podvisor-criproxy.conf\nKUBELET_EXTRA_ARGS=\"--config-dir=/etc/kubernetes/kubelet.conf.d\"\n",
		},
		{
			name:      "old kubeadm flags with the endpoints, user's extra args",
			flags:     `KUBELET_KUBEADM_ARGS="--node-ip=10.0.0.1 --container-runtime-endpoint unix:///run/containerd/containerd.sock --image-service-endpoint=unix:///run/containerd/containerd.sock"` + "\n",
			files:     map[string]string{"etc/default/kubelet": "# mine\nKUBELET_EXTRA_ARGS=\"--v=2\"\n"},
			dropIn:    dropIn,
			wantFlags: `KUBELET_KUBEADM_ARGS="--node-ip=10.0.0.1 --container-runtime-endpoint ` + proxySock + ` --image-service-endpoint=` + proxySock + `"` + "\n",
			wantExtra: "# mine\n# podvisor install-criproxy.sh: --config-dir added for 99-podvisor-criproxy.conf\nKUBELET_EXTRA_ARGS=\"--v=2 --config-dir=/etc/kubernetes/kubelet.conf.d\"\n",
		},
		{
			name:    "kubelet already runs with --config-dir",
			cmdline: "/usr/bin/kubelet\x00--config=/var/lib/kubelet/config.yaml\x00--config-dir\x00/etc/kubelet.d\x00",
			dropIn:  "etc/kubelet.d/99-podvisor-criproxy.conf",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeNode(t, tc.flags)
			for p, c := range tc.files {
				write(t, filepath.Join(root, p), c)
			}
			if tc.cmdline != "" {
				write(t, filepath.Join(root, "proc/4242/cmdline"), tc.cmdline)
			}
			before := snapshotDir(t, root)

			out := runInstaller(t, root, nil, "install")
			if !strings.Contains(out, "would run: systemctl restart --no-block kubelet.service") {
				t.Errorf("first install did not restart kubelet:\n%s", out)
			}
			want := "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncontainerRuntimeEndpoint: " + proxySock + "\nimageServiceEndpoint: " + proxySock + "\n"
			if got := read(t, filepath.Join(root, tc.dropIn)); !strings.HasSuffix(got, want) {
				t.Errorf("drop-in %s:\n%s\nwant it to end with:\n%s", tc.dropIn, got, want)
			}
			if diff := cmp.Diff(before["/var/lib/kubelet/config.yaml"], snapshotDir(t, root)["/var/lib/kubelet/config.yaml"]); diff != "" {
				t.Errorf("config.yaml changed (kubeadm upgrade rewrites it; the drop-in must do the work):\n%s", diff)
			}
			if tc.flags != "" {
				if diff := cmp.Diff(tc.wantFlags, read(t, filepath.Join(root, "var/lib/kubelet/kubeadm-flags.env"))); diff != "" {
					t.Errorf("kubeadm-flags.env (-want +got):\n%s", diff)
				}
			}
			extra, err := os.ReadFile(filepath.Join(root, "etc/default/kubelet"))
			if tc.wantExtra == "" && tc.files["etc/default/kubelet"] == "" && err == nil {
				t.Errorf("etc/default/kubelet written although kubelet has a --config-dir:\n%s", extra)
			} else if tc.wantExtra != "" {
				if diff := cmp.Diff(tc.wantExtra, string(extra)); diff != "" {
					t.Errorf("etc/default/kubelet (-want +got):\n%s", diff)
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

			// kubeadm upgrade node writes config.yaml anew, with the
			// endpoint of instance-config.yaml (containerd).
			write(t, filepath.Join(root, "var/lib/kubelet/config.yaml"), "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\ncontainerRuntimeEndpoint: "+primary+"\n")
			snapshot := snapshotDir(t, root)
			out = runInstaller(t, root, nil, "install")
			if strings.Contains(out, "restart --no-block kubelet") || !strings.Contains(out, "node already set up") {
				t.Errorf("install after kubeadm upgrade was not a no-op:\n%s", out)
			}
			if diff := cmp.Diff(snapshot, snapshotDir(t, root)); diff != "" {
				t.Errorf("second install changed files (-before +after):\n%s", diff)
			}

			out = runInstaller(t, root, nil, "uninstall")
			if !strings.Contains(out, "would run: systemctl restart --no-block kubelet.service") {
				t.Errorf("uninstall did not restart kubelet:\n%s", out)
			}
			after := snapshotDir(t, root)
			before["/var/lib/kubelet/config.yaml"] = snapshot["/var/lib/kubelet/config.yaml"]
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("uninstall did not restore the node's files (-before install +after uninstall):\n%s", diff)
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
	const saDir = "/etc/podvisor/serviceaccount/"
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

// TestEveryContainerRequestsResources: the scheduler must account for
// podvisor's daemons on the node: every container of every DaemonSet,
// init containers too, requests CPU and memory.
func TestEveryContainerRequestsResources(t *testing.T) {
	objs := objects(t, loadDocs(t))
	n := 0
	for key, o := range objs {
		d, ok := o.(*appsv1.DaemonSet)
		if !ok {
			continue
		}
		n++
		spec := d.Spec.Template.Spec
		for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
					t.Errorf("%s container %s requests no %s", key, c.Name, r)
				}
			}
		}
	}
	if n < 3 {
		t.Fatalf("found %d DaemonSets, want podvisor, node setup and node uninstall", n)
	}
}

// TestDaemonSetKeepsStateOnTheNode: what must outlive a container restart
// or a rollout is on hostPaths: libvirt's domain definitions, the running
// domains' status and sockets, per-domain state; the CNI plugins' host
// files (Virtlet mounted the host's /run; Calico's /var/lib/calico); the
// metrics endpoint is not on every interface.
func TestDaemonSetKeepsStateOnTheNode(t *testing.T) {
	objs := objects(t, loadDocs(t))
	spec := podvisorDaemonSet(t, objs).Spec.Template.Spec
	host := map[string]string{} // volume -> host path
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			host[v.Name] = v.HostPath.Path
		}
	}
	mounted := func(c, path string) (string, bool) {
		for _, m := range container(t, spec, c).VolumeMounts {
			if m.MountPath == path {
				p, ok := host[m.Name]
				return p, ok
			}
		}
		return "", false
	}
	for _, tc := range []struct{ container, path, why string }{
		{"libvirt", "/etc/libvirt/qemu", "domain definitions (podvisor defines domains persistently)"},
		{"libvirt", "/var/run/libvirt", "sockets and running domains' status, from which a new libvirtd reconnects"},
		{"libvirt", "/var/lib/libvirt", "per-domain state: monitor sockets, master keys"},
		{"libvirt", "/var/log/libvirt", "QEMU logs"},
		{"vms", "/var/lib/libvirt", "QEMU opens its master key file there"},
		{"podvisor", "/run", "CNI plugins' host files and sockets (Flannel, Cilium, Calico, Multus), as Virtlet mounted"},
		{"podvisor", "/var/lib/calico", "Calico's CNI plugin reads the node name there"},
		{"podvisor", "/var/lib/cni", "host-local IPAM state shared with containerd"},
	} {
		if p, ok := mounted(tc.container, tc.path); !ok || p != tc.path {
			t.Errorf("container %s: %s is not the node's %s (got hostPath %q): %s", tc.container, tc.path, tc.path, p, tc.why)
		}
	}
	pv := flagArgs(container(t, spec, "podvisor").Command[1:])
	if a := pv["metrics-addr"]; strings.HasPrefix(a, "0.0.0.0:") || strings.HasPrefix(a, ":") || strings.HasPrefix(a, "[::]:") {
		t.Errorf("--metrics-addr %s listens on every interface of the node (hostNetwork), unauthenticated", a)
	}
}
