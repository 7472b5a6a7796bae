// Command podvisorctl is podvisor's command-line tool for users of a
// cluster, also usable as the kubectl plugin `kubectl podvisor` (see
// `podvisorctl install`): a list of VM pods, the serial console, ssh, the
// VNC display, virsh in the node's podvisor pod, a diagnostics dump, the
// deploy manifests, versions and shell completion.
// docs/podvisorctl.md describes every verb.
//
// Cluster operations shell out to kubectl, as a kubectl plugin does, rather
// than linking client-go: the user's kubeconfig, contexts, exec credential
// plugins and proxies work exactly as they do for kubectl, attach and
// port-forward get kubectl's own terminal and SPDY/websocket handling, and
// the binary stays small.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/podvisor/podvisor/deploy"
	pvversion "github.com/podvisor/podvisor/internal/version"
)

// version is podvisorctl's version: the daemon's and the image tag's
// (internal/version, the VERSION file).
var version = pvversion.String()

// pluginName is the file name kubectl looks for to run `kubectl podvisor`.
const pluginName = "kubectl-podvisor"

func main() {
	// A signal cancels the context: the verbs stop what they started (the
	// port-forward under ssh runs in its own process group and would
	// otherwise outlive a Ctrl-C).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{
		stdin:      os.Stdin,
		stdout:     os.Stdout,
		stderr:     os.Stderr,
		lookPath:   exec.LookPath,
		executable: os.Executable,
		getenv:     os.Getenv,
		isTerminal: isTerminal,
	}
	os.Exit(a.run(ctx, filepath.Base(os.Args[0]), os.Args[1:]))
}

// app is one invocation: its streams, the global flags and the seams the
// tests replace.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookPath       func(string) (string, error)
	executable     func() (string, error)
	getenv         func(string) string
	isTerminal     func(io.Reader) bool

	// Global flags.
	kubectlPath       string
	kubeconfig        string
	kubeContext       string
	namespace         string
	podvisorNamespace string
}

// exitError makes podvisorctl exit with code without printing anything
// more: the program that failed (kubectl, virsh, ssh) has said why.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run executes the command line and returns the exit code.
func (a *app) run(ctx context.Context, argv0 string, args []string) int {
	root := a.rootCmd(argv0)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(a.stderr, "%s: %v\n", root.DisplayName(), err)
	return 1
}

func (a *app) rootCmd(argv0 string) *cobra.Command {
	root := &cobra.Command{
		Use:   "podvisorctl",
		Short: "Work with podvisor's virtual machines: list, console, ssh, vnc, virsh, diagnostics, deploy YAML",
		Long: `podvisorctl works with the VMs that podvisor runs as Kubernetes pods.

Cluster operations run kubectl (from PATH, or --kubectl) with your
kubeconfig and context, so they have exactly the permissions kubectl has.
Installed as kubectl-podvisor (podvisorctl install), it is also the kubectl
plugin "kubectl podvisor".`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// No verb: help, and a non-zero exit.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(a.stderr)
			_ = cmd.Help()
			return &exitError{code: 2}
		},
	}
	if argv0 == pluginName {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl podvisor"}
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())
	})
	// Our own completion verb (bash, zsh, fish) replaces cobra's default one.
	root.CompletionOptions.DisableDefaultCmd = true

	pf := root.PersistentFlags()
	pf.StringVar(&a.kubectlPath, "kubectl", "", "kubectl to run (default: kubectl in PATH)")
	pf.StringVar(&a.kubeconfig, "kubeconfig", "", "kubeconfig file, passed to kubectl (default: kubectl's: $KUBECONFIG or ~/.kube/config)")
	pf.StringVar(&a.kubeContext, "context", "", "kubeconfig context, passed to kubectl")
	pf.StringVarP(&a.namespace, "namespace", "n", "", "namespace of the VM pod (default: the context's)")
	pf.StringVar(&a.podvisorNamespace, "podvisor-namespace", deploy.DefaultNamespace, "namespace of the podvisor DaemonSet")

	root.AddCommand(
		a.listCmd(),
		a.consoleCmd(),
		a.sshCmd(),
		a.vncCmd(),
		a.virshCmd(),
		a.snapshotCmd(),
		a.restoreCmd(),
		a.diagCmd(),
		a.genCmd(),
		a.installCmd(),
		a.versionCmd(),
		a.completionCmd(),
	)
	return root
}

// noArgs refuses arguments with a message naming them.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// onePod wants exactly one argument, a pod name.
func onePod(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s needs one argument, the VM pod's name (got %d: %q)", cmd.CommandPath(), len(args), args)
	}
	return nil
}

// quoteArgs renders a command line for messages.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, s := range args {
		if s == "" || strings.ContainsAny(s, " \t\n\"'\\$`|&;<>()*?[]{}!#~") {
			s = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
		q[i] = s
	}
	return strings.Join(q, " ")
}

// isTerminal says whether r is a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
