package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func (a *app) installCmd() *cobra.Command {
	var (
		dir     string
		symlink bool
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install podvisorctl as the kubectl plugin 'kubectl podvisor'",
		Long: `Copies podvisorctl to kubectl-podvisor in a directory, by default the one
podvisorctl is in. kubectl runs any kubectl-NAME program on your PATH as
'kubectl NAME', so afterwards 'kubectl podvisor console POD' is
'podvisorctl console POD'. An existing kubectl-podvisor there is replaced.

kubectl does not pass its own flags to plugins: write them after the plugin
name (kubectl podvisor -n vms console POD); podvisorctl hands --kubeconfig,
--context and -n to the kubectl it runs.`,
		Example: `  podvisorctl install
  podvisorctl install --dir ~/.local/bin
  podvisorctl install --symlink && kubectl plugin list`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return a.install(dir, symlink) },
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to install kubectl-podvisor into; it must be on your PATH (default: podvisorctl's own directory)")
	cmd.Flags().BoolVar(&symlink, "symlink", false, "make kubectl-podvisor a symbolic link to podvisorctl instead of a copy (follows its upgrades)")
	return cmd
}

func (a *app) install(dir string, symlink bool) error {
	self, err := a.executable()
	if err != nil {
		return fmt.Errorf("finding podvisorctl's own executable: %w", err)
	}
	if s, err := filepath.EvalSymlinks(self); err == nil {
		self = s
	}
	if dir == "" {
		dir = filepath.Dir(self)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("--dir %s: not a directory", dir)
	}
	dst := filepath.Join(dir, pluginName)
	if s, err := filepath.EvalSymlinks(dst); err == nil && s == self {
		// dst is podvisorctl itself, or a link to it: nothing to do,
		// unless a link is to become a copy.
		fi, err := os.Lstat(dst)
		if isLink := err == nil && fi.Mode()&os.ModeSymlink != 0; !isLink || symlink {
			fmt.Fprintf(a.stdout, "%s is already podvisorctl\n", dst)
			a.warnPath(dir)
			return nil
		}
	}
	tmp, err := os.CreateTemp(dir, "."+pluginName+"-*")
	if err != nil {
		return fmt.Errorf("cannot write to %s (%v): choose a directory of yours on PATH with --dir", dir, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	how := "a copy of " + self
	if symlink {
		tmp.Close()
		os.Remove(tmpName)
		if err := os.Symlink(self, tmpName); err != nil {
			return err
		}
		how = "a symbolic link to " + self
	} else {
		src, err := os.Open(self)
		if err != nil {
			tmp.Close()
			return err
		}
		_, err = io.Copy(tmp, src)
		src.Close()
		if err == nil {
			err = tmp.Chmod(0o755)
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("copying %s to %s: %w", self, tmpName, err)
		}
	}
	if err := os.Rename(tmpName, dst); err != nil {
		return fmt.Errorf("installing %s: %w", dst, err)
	}
	fmt.Fprintf(a.stdout, "installed %s (%s)\n", dst, how)
	if !a.warnPath(dir) {
		fmt.Fprintln(a.stdout, "try: kubectl podvisor version --client")
	}
	return nil
}

// warnPath warns when dir is not on PATH and says whether it did.
func (a *app) warnPath(dir string) bool {
	for _, p := range filepath.SplitList(a.getenv("PATH")) {
		if abs, err := filepath.Abs(p); err == nil && abs == dir {
			return false
		}
	}
	fmt.Fprintf(a.stderr, "warning: %s is not on your PATH, so kubectl will not find the plugin: add it (export PATH=\"$PATH:%s\") or install with --dir DIR-ON-PATH\n", dir, dir)
	return true
}
