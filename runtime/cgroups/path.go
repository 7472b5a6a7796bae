// Package cgroups places a VM's QEMU in its pod's cgroup and sets the
// container's CPU and memory limits there. kubelet names the pod's cgroup
// in the CRI cgroup_parent, in the form of its cgroup driver: a path
// (cgroupfs driver: /kubepods/burstable/pod<uid>) or a systemd slice
// (kubepods-burstable-pod<uid>.slice). Each VM gets a child of it named
// after its domain, as runc gives each container one. Writing the files is
// this package's; joining is done by podvisor-vmwrapper before it executes
// QEMU (docs/libvirt.md says why not libvirt's <resource><partition>).
//
// It imports only the standard library and golang.org/x/sys, so the
// wrapper links little.
package cgroups

import (
	"fmt"
	"strings"
)

// DefaultParent is the parent of VMs whose sandbox has no cgroup_parent
// (crictl, critest): their limits still apply, under /podvisor.
const DefaultParent = "/podvisor"

// EnvCgroup is the emulator environment variable (the domain's qemu:env)
// naming the VM's cgroup, a path inside each hierarchy, which
// podvisor-vmwrapper joins before executing QEMU.
const EnvCgroup = "PODVISOR_CGROUP"

// ParentPath turns a CRI cgroup_parent into a path inside the
// hierarchies: a cgroupfs path is taken as it is (cleaned), a systemd
// slice is expanded the way systemd nests slices
// (a-b.slice -> /a.slice/a-b.slice). "" gives DefaultParent.
func ParentPath(parent string) (string, error) {
	switch {
	case parent == "":
		return DefaultParent, nil
	case strings.HasPrefix(parent, "/"):
		return cleanPath(parent)
	case strings.HasSuffix(parent, ".slice") && !strings.Contains(parent, "/"):
		return expandSlice(parent)
	}
	return "", fmt.Errorf("cgroup parent %q: want an absolute path (kubelet's cgroupfs driver, e.g. /kubepods/burstable/pod<uid>) or a systemd slice (systemd driver, e.g. kubepods-burstable-pod<uid>.slice)", parent)
}

// VMPath is the cgroup of the VM whose domain is name, in the sandbox's
// cgroup parent.
func VMPath(parent, name string) (string, error) {
	p, err := ParentPath(parent)
	if err != nil {
		return "", err
	}
	if err := checkComponent(name); err != nil {
		return "", fmt.Errorf("cgroup of VM %q: %w", name, err)
	}
	if p == "/" {
		return "/" + name, nil
	}
	return p + "/" + name, nil
}

func cleanPath(p string) (string, error) {
	var parts []string
	for _, c := range strings.Split(p, "/") {
		if c == "" {
			continue
		}
		if err := checkComponent(c); err != nil {
			return "", fmt.Errorf("cgroup parent %q: %w", p, err)
		}
		parts = append(parts, c)
	}
	return "/" + strings.Join(parts, "/"), nil
}

// expandSlice is systemd's slice nesting: every '-' opens a level.
func expandSlice(slice string) (string, error) {
	name := strings.TrimSuffix(slice, ".slice")
	if name == "-" {
		return "/", nil
	}
	if name == "" || strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", fmt.Errorf("cgroup parent %q: not a systemd slice name (no leading, trailing or doubled '-')", slice)
	}
	if err := checkComponent(slice); err != nil {
		return "", fmt.Errorf("cgroup parent %q: %w", slice, err)
	}
	var b strings.Builder
	prefix := ""
	for _, part := range strings.Split(name, "-") {
		b.WriteString("/" + prefix + part + ".slice")
		prefix += part + "-"
	}
	return b.String(), nil
}

func checkComponent(c string) error {
	if c == "." || c == ".." || c == "" {
		return fmt.Errorf("%q is not a cgroup name", c)
	}
	for _, r := range c {
		if r < 0x21 || r == 0x7f || r == '/' {
			return fmt.Errorf("cgroup name %q has a space, '/' or a control character", c)
		}
	}
	return nil
}
