package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// cloudConfig is the part of a #cloud-config user-data the test guest
// applies, in cloud-init's order: bootcmd, write_files, mounts, runcmd. It
// is what podvisor uses for sysctls, files, the container environment and
// volumes.
type cloudConfig struct {
	// BootCmd entries, like RunCmd's; they run first (cloud-init runs
	// them early at every boot).
	BootCmd [][]string
	Files   []guestFile
	Mounts  [][]string
	// RunCmd entries: a string runs with sh -c, a list is argv.
	RunCmd [][]string
}

type guestFile struct {
	Path    string
	Content []byte
	Mode    os.FileMode
	Append  bool
}

func parseCloudConfig(src string) (*cloudConfig, error) {
	if !strings.HasPrefix(src, "#cloud-config") {
		return nil, fmt.Errorf("user-data is not #cloud-config")
	}
	v, err := parseYAML(src)
	if err != nil {
		return nil, fmt.Errorf("cloud-config: %w", err)
	}
	top, ok := v.(map[string]any)
	if v != nil && !ok {
		return nil, fmt.Errorf("cloud-config: want a mapping at the top, got %T", v)
	}
	cc := &cloudConfig{}
	for i, e := range list(top["write_files"]) {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("cloud-config: write_files[%d]: want a mapping", i)
		}
		f := guestFile{Path: str(m["path"]), Mode: 0o644, Append: str(m["append"]) == "true"}
		if !filepath.IsAbs(f.Path) {
			return nil, fmt.Errorf("cloud-config: write_files[%d].path: %q is not an absolute path", i, f.Path)
		}
		content := str(m["content"])
		switch enc := str(m["encoding"]); enc {
		case "", "text/plain":
			f.Content = []byte(content)
		case "b64", "base64":
			b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(content), ""))
			if err != nil {
				return nil, fmt.Errorf("cloud-config: write_files[%d] (%s): content is not base64: %v", i, f.Path, err)
			}
			f.Content = b
		default:
			return nil, fmt.Errorf("cloud-config: write_files[%d].encoding: %q: accepted b64, base64, text/plain", i, enc)
		}
		if p := str(m["permissions"]); p != "" {
			n, err := strconv.ParseUint(p, 8, 32)
			if err != nil || n > 0o7777 {
				return nil, fmt.Errorf("cloud-config: write_files[%d].permissions: %q is not an octal mode", i, p)
			}
			f.Mode = os.FileMode(n)
		}
		cc.Files = append(cc.Files, f)
	}
	for i, e := range list(top["mounts"]) {
		fields := strList(e)
		if len(fields) < 2 {
			return nil, fmt.Errorf("cloud-config: mounts[%d]: want [device, directory, type, options], got %v", i, e)
		}
		cc.Mounts = append(cc.Mounts, fields)
	}
	if cc.BootCmd, err = cmdList("bootcmd", top["bootcmd"]); err != nil {
		return nil, err
	}
	if cc.RunCmd, err = cmdList("runcmd", top["runcmd"]); err != nil {
		return nil, err
	}
	return cc, nil
}

// cmdList reads a bootcmd or runcmd list: a string runs with sh -c, a
// list is argv (no shell).
func cmdList(key string, v any) ([][]string, error) {
	var r [][]string
	for i, e := range list(v) {
		switch c := e.(type) {
		case string:
			r = append(r, []string{"sh", "-c", c})
		case []any:
			argv := strList(c)
			if len(argv) == 0 {
				return nil, fmt.Errorf("cloud-config: %s[%d]: empty command", key, i)
			}
			r = append(r, argv)
		default:
			return nil, fmt.Errorf("cloud-config: %s[%d]: want a string or a list, got %T", key, i, e)
		}
	}
	return r, nil
}

// cloudOps is what applying a cloud-config needs from the guest.
type cloudOps interface {
	WriteFile(f guestFile) error
	// Run runs argv and returns its combined output.
	Run(argv ...string) (string, error)
}

// applyCloudConfig applies cc, logging each step; a failing step is
// logged and the rest still run (cloud-init does the same). It returns the
// number of failed steps.
func applyCloudConfig(cc *cloudConfig, ops cloudOps, log io.Writer) int {
	failed := 0
	step := func(what string, err error) {
		if err != nil {
			failed++
			fmt.Fprintf(log, "cloud-config: %s: FAILED: %v\n", what, err)
			return
		}
		fmt.Fprintf(log, "cloud-config: %s\n", what)
	}
	run := func(argv []string) {
		out, err := ops.Run(argv...)
		if out != "" {
			fmt.Fprint(log, out)
			if !strings.HasSuffix(out, "\n") {
				fmt.Fprintln(log)
			}
		}
		step("ran "+strings.Join(argv, " "), err)
	}
	for _, argv := range cc.BootCmd {
		run(argv)
	}
	for _, f := range cc.Files {
		step(fmt.Sprintf("wrote %s (%d bytes, mode %04o)", f.Path, len(f.Content), f.Mode), ops.WriteFile(f))
	}
	for _, m := range cc.Mounts {
		dev, dir := m[0], m[1]
		args := []string{"mount"}
		if len(m) > 2 && m[2] != "" && m[2] != "auto" {
			args = append(args, "-t", m[2])
		}
		var opts string
		noauto := false
		if len(m) > 3 {
			opts, noauto = kernelMountOptions(m[3])
		}
		if noauto {
			fmt.Fprintf(log, "cloud-config: %s on %s is noauto: not mounted\n", dev, dir)
			continue
		}
		if opts != "" {
			args = append(args, "-o", opts)
		}
		args = append(args, dev, dir)
		_, err := ops.Run("mkdir", "-p", dir)
		if err == nil {
			var out string
			if out, err = ops.Run(args...); err != nil {
				err = fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
			}
		}
		step(fmt.Sprintf("mounted %s on %s", dev, dir), err)
	}
	for _, argv := range cc.RunCmd {
		run(argv)
	}
	return failed
}

// kernelMountOptions drops from an fstab options field what only mount(8),
// systemd or cloud-init read (defaults, auto, nofail, _netdev, comment=...,
// x-...), as util-linux's mount does, so that busybox's mount passes only
// the rest to the kernel (busybox hands options it does not know to the
// filesystem as they are). noauto tells that `mount -a`, which cloud-init
// runs, skips the entry.
func kernelMountOptions(field string) (opts string, noauto bool) {
	var keep []string
	for _, o := range strings.Split(field, ",") {
		switch {
		case o == "noauto":
			noauto = true
		case o == "" || o == "defaults" || o == "auto" || o == "nofail" || o == "_netdev" || o == "user" || o == "nouser" || o == "users":
		case strings.HasPrefix(o, "comment=") || strings.HasPrefix(o, "x-"):
		default:
			keep = append(keep, o)
		}
	}
	return strings.Join(keep, ","), noauto
}

type guestCloudOps struct{}

func (guestCloudOps) WriteFile(f guestFile) error {
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if f.Append {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	w, err := os.OpenFile(f.Path, flags, f.Mode)
	if err != nil {
		return err
	}
	if _, err := w.Write(f.Content); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.Chmod(f.Path, f.Mode)
}

func (guestCloudOps) Run(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// runCloudConfig is the cloudconfig subcommand. Exit status 0: applied; 1:
// some step failed or the file is not usable cloud-config.
func runCloudConfig(path string, log io.Writer) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(log, "cloud-config: %v\n", err)
		return 1
	}
	cc, err := parseCloudConfig(string(b))
	if err != nil {
		fmt.Fprintf(log, "%v\n", err)
		return 1
	}
	if applyCloudConfig(cc, guestCloudOps{}, log) > 0 {
		return 1
	}
	return 0
}
