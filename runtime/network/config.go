package network

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// Defaults of Config.
const (
	DefaultConfDir  = "/etc/cni/net.d"
	DefaultNetNSDir = "/run/netns"
	DefaultCacheDir = "/var/lib/podvisor/cni"
)

// DefaultBinDirs are searched for CNI plugins when Config.BinDirs is empty:
// the upstream location and Debian's.
var DefaultBinDirs = []string{"/opt/cni/bin", "/usr/lib/cni"}

// Config configures a Network.
type Config struct {
	// ConfDir holds the CNI network configurations (.conflist, .conf,
	// .json). The first valid one by file name is used, as kubelet and
	// containerd do.
	ConfDir string
	// BinDirs are searched for plugin binaries, in order.
	BinDirs []string
	// NetNSDir holds the pods' named network namespaces.
	NetNSDir string
	// CacheDir keeps libcni's result cache and podvisor's per-sandbox
	// network state. It must survive a restart of podvisor.
	CacheDir string
	Logger   *slog.Logger
}

func (c *Config) setDefaults() {
	if c.ConfDir == "" {
		c.ConfDir = DefaultConfDir
	}
	if len(c.BinDirs) == 0 {
		c.BinDirs = DefaultBinDirs
	}
	if c.NetNSDir == "" {
		c.NetNSDir = DefaultNetNSDir
	}
	if c.CacheDir == "" {
		c.CacheDir = DefaultCacheDir
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// errNoConfig is wrapped by loadConfList when the directory has no usable
// network configuration.
var errNoConfig = errors.New("no usable CNI network configuration")

// loadConfList returns the first valid network configuration in dir by
// file name; invalid files are skipped (and reported in the error when
// none is valid), like kubelet and containerd do.
func loadConfList(dir string) (*libcni.NetworkConfigList, string, error) {
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, "", fmt.Errorf("listing CNI configurations in %s: %w", dir, err)
	}
	sort.Strings(files)
	var problems []string
	for _, f := range files {
		list, err := loadConfFile(f)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", filepath.Base(f), err))
			continue
		}
		return list, f, nil
	}
	if len(files) == 0 {
		return nil, "", fmt.Errorf("%w in %s: no .conflist, .conf or .json file", errNoConfig, dir)
	}
	return nil, "", fmt.Errorf("%w in %s: %s", errNoConfig, dir, strings.Join(problems, "; "))
}

func loadConfFile(f string) (*libcni.NetworkConfigList, error) {
	var list *libcni.NetworkConfigList
	if strings.HasSuffix(f, ".conflist") {
		l, err := libcni.ConfListFromFile(f)
		if err != nil {
			return nil, err
		}
		list = l
	} else {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		// A .conf/.json may hold a list too (some installers write that).
		if l, err := libcni.ConfListFromBytes(data); err == nil && len(l.Plugins) > 0 {
			list = l
		} else {
			conf, err := libcni.NetworkPluginConfFromBytes(data)
			if err != nil {
				return nil, err
			}
			if list, err = libcni.ConfListFromConf(conf); err != nil {
				return nil, err
			}
		}
	}
	if len(list.Plugins) == 0 {
		return nil, errors.New("no plugins")
	}
	if list.Name == "" {
		return nil, errors.New("no network name")
	}
	return list, nil
}

// findConfList returns the valid network configuration in dir whose network
// name is name; with several, the first by file name (as loadConfList
// picks). Not found is an error listing the names there are.
func findConfList(dir, name string) (*libcni.NetworkConfigList, string, error) {
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, "", fmt.Errorf("listing CNI configurations in %s: %w", dir, err)
	}
	sort.Strings(files)
	var names []string
	for _, f := range files {
		list, err := loadConfFile(f)
		if err != nil {
			continue
		}
		if list.Name == name {
			return list, f, nil
		}
		names = append(names, list.Name)
	}
	there := "there is none"
	if len(names) > 0 {
		there = "there are " + strings.Join(names, ", ")
	}
	return nil, "", fmt.Errorf("%w: no CNI network configuration named %q in %s (%s)", errNoNetwork, name, dir, there)
}

// errNoNetwork is wrapped by findConfList when no configuration has the name.
var errNoNetwork = errors.New("unknown network")
