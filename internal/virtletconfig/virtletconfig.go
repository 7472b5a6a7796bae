// Package virtletconfig reads Virtlet's `virtlet-config` ConfigMap (kube-system),
// mounted as a directory with one file per key, and says what each key
// becomes in podvisor: the keys with a podvisor equivalent set it (unless a
// podvisor flag or config file says otherwise), every other key is a
// warning naming the key and what replaces it. Nothing in the ConfigMap is
// ignored without a word.
package virtletconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Settings are the podvisor settings the ConfigMap gives ("" or nil: not
// given). They name podvisor's flags' values.
type Settings struct {
	KVM                  string // "off" for disable_kvm
	ImageTranslationsDir string
	LibvirtURI           string
	CNIConfDir           string
	CNIBinDirs           []string
	LogLevel             string // "debug" or "info"
}

// Result is what a ConfigMap becomes.
type Result struct {
	Settings Settings
	// From names, for each flag set, the key that set it (for the
	// "overridden by a flag" warning).
	From map[string]string
	// Warnings name each key that has no effect and what replaces it,
	// sorted by key.
	Warnings []string
}

// key is one of Virtlet's keys: its ConfigMap name (virtlet-ds.yaml's
// configMapKeyRef keys), its config field name (Virtlet 1.x's
// VirtletConfigMapping and --config), and what podvisor does with it.
type key struct {
	names []string
	// apply sets the podvisor setting; it returns the flag it sets, or an
	// error for a value it cannot take.
	apply func(v string, s *Settings) (flag string, err error)
	// instead, when apply is nil: why the key has no effect, and what to
	// use.
	instead string
}

var keys = []key{
	{names: []string{"disable_kvm", "disableKVM"}, apply: disableKVM},
	{names: []string{"image_translations_dir", "imageTranslationConfigsDir"}, apply: func(v string, s *Settings) (string, error) {
		s.ImageTranslationsDir = v
		return "image-translations-dir", nil
	}},
	{names: []string{"libvirt_uri", "libvirtURI"}, apply: func(v string, s *Settings) (string, error) {
		s.LibvirtURI = v
		return "libvirt-uri", nil
	}},
	{names: []string{"cni_plugin_dir", "cniPluginDir"}, apply: func(v string, s *Settings) (string, error) {
		s.CNIBinDirs = strings.Split(v, ",")
		return "cni-bin-dir", nil
	}},
	{names: []string{"cni_config_dir", "cniConfigDir"}, apply: func(v string, s *Settings) (string, error) {
		s.CNIConfDir = v
		return "cni-conf-dir", nil
	}},
	{names: []string{"loglevel", "logLevel"}, apply: logLevel},
	{names: []string{"download_protocol", "downloadProtocol"}, instead: "podvisor downloads the URL a translation gives (http:// or https://), and a name no translation matches as https:// with --image-allow-untranslated; give http:// URLs in the virtlet-image-translations ConfigMap or VirtletImageMappings"},
	{names: []string{"image_regexp_translation", "enableRegexpImageTranslation"}, instead: "podvisor always applies regexp translation rules"},
	{names: []string{"image_dir", "imageDir"}, instead: "podvisor keeps its own image store (--image-dir, default <state-dir>/images); Virtlet's images are not reused"},
	{names: []string{"database_path", "databasePath"}, instead: "podvisor keeps its metadata under --state-dir"},
	{names: []string{"fd_server_socket_path", "fdServerSocketPath"}, instead: "podvisor has no tap fd server: the VM's NIC is attached by podvisor-vmwrapper in the pod's network namespace"},
	{names: []string{"cri_socket_path", "criSocketPath"}, instead: "use podvisor's --listen (the DaemonSet sets it; criproxy connects to it)"},
	{names: []string{"raw_devices", "rawDevices"}, instead: "podvisor passes the block volumes kubelet gives (volumeDevices of a volumeMode: Block claim), not host devices named by patterns"},
	{names: []string{"disable_logging", "disableLogging"}, instead: "podvisor always writes the serial console to the CRI container log (kubectl logs)"},
	{names: []string{"sriov_support", "enableSriov"}, instead: "SR-IOV is not supported by podvisor"},
	{names: []string{"calico-subnet", "calico_subnet", "calicoSubnetSize"}, instead: "podvisor takes the prefix length from the CNI result"},
	{names: []string{"cpu-model", "cpu_model", "cpuModel"}, instead: "podvisor has no node-wide CPU model: use the VirtletCPUModel or VirtletLibvirtCPUSetting pod annotation"},
	{names: []string{"stream_port", "streamPort"}, instead: "use podvisor's --stream-addr (host:port of the streaming server for attach, exec and port-forward)"},
	{names: []string{"skipImageTranslation"}, instead: "a Virtlet test setting; podvisor always translates image names (--image-allow-untranslated takes names no rule matches as URLs)"},
}

// truthy and falsy are the boolean spellings accepted for disable_kvm
// (Virtlet's examples write "y").
var (
	truthy = map[string]bool{"y": true, "yes": true, "true": true, "1": true, "on": true}
	falsy  = map[string]bool{"": true, "n": true, "no": true, "false": true, "0": true, "off": true}
)

func disableKVM(v string, s *Settings) (string, error) {
	switch l := strings.ToLower(v); {
	case truthy[l]:
		s.KVM = "off"
		return "kvm", nil
	case falsy[l]:
		return "", nil // KVM when it works: podvisor's default (--kvm auto)
	}
	return "", fmt.Errorf("%q is not a boolean: use y, yes, true or 1 to disable KVM", v)
}

// logLevel maps Virtlet's glog verbosity: 3 or more (Virtlet's debug
// messages) is podvisor's debug, less is info.
func logLevel(v string, s *Settings) (string, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return "", fmt.Errorf("%q is not a verbosity (0, 1, 2, ...)", v)
	}
	s.LogLevel = "info"
	if n >= 3 {
		s.LogLevel = "debug"
	}
	return "log-level", nil
}

// Read reads the ConfigMap mounted at dir: each regular file is a key
// (kubelet's `..data` entries and links are what a configMap volume has;
// names starting with ".." are skipped). A missing directory is an empty
// ConfigMap: the DaemonSet mounts it optional.
func Read(dir string) (map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the virtlet-config ConfigMap at %s: %w", dir, err)
	}
	out := map[string]string{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading the virtlet-config ConfigMap's key %s: %w", e.Name(), err)
		}
		out[e.Name()] = strings.TrimSpace(string(b))
	}
	return out, nil
}

// Translate says what the keys become.
func Translate(cm map[string]string) Result {
	r := Result{From: map[string]string{}}
	names := make([]string, 0, len(cm))
	for k := range cm {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		v := cm[name]
		k, ok := lookup(name)
		switch {
		case !ok:
			r.Warnings = append(r.Warnings, fmt.Sprintf("virtlet-config key %s: not a Virtlet setting podvisor knows; ignored (podvisor is configured by its flags and --config file)", name))
		case k.apply == nil:
			r.Warnings = append(r.Warnings, fmt.Sprintf("virtlet-config key %s=%q has no effect: %s", name, v, k.instead))
		default:
			flag, err := k.apply(v, &r.Settings)
			if err != nil {
				r.Warnings = append(r.Warnings, fmt.Sprintf("virtlet-config key %s: %v; ignored", name, err))
			} else if flag != "" {
				r.From[flag] = name
			}
		}
	}
	return r
}

func lookup(name string) (key, bool) {
	for _, k := range keys {
		for _, n := range k.names {
			if n == name {
				return k, true
			}
		}
	}
	return key{}, false
}
