package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// kubectl runs the user's kubectl with the global flags.
type kubectl struct {
	path   string
	global []string // --kubeconfig, --context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// kubectl finds kubectl (--kubectl, else PATH).
func (a *app) kubectl() (*kubectl, error) {
	path := a.kubectlPath
	if path == "" {
		p, err := a.lookPath("kubectl")
		if err != nil {
			return nil, errors.New("kubectl not found in PATH: podvisorctl runs kubectl for every cluster operation; install it or give its path with --kubectl")
		}
		path = p
	} else if p, err := a.lookPath(path); err != nil {
		return nil, fmt.Errorf("--kubectl %s: not an executable file (%v)", path, err)
	} else {
		path = p
	}
	k := &kubectl{path: path, stdin: a.stdin, stdout: a.stdout, stderr: a.stderr}
	if a.kubeconfig != "" {
		k.global = append(k.global, "--kubeconfig", a.kubeconfig)
	}
	if a.kubeContext != "" {
		k.global = append(k.global, "--context", a.kubeContext)
	}
	return k, nil
}

func (k *kubectl) command(ctx context.Context, args []string) *exec.Cmd {
	return newCommand(ctx, k.path, append(append([]string(nil), k.global...), args...))
}

// newCommand is exec.CommandContext whose cancellation sends SIGTERM, so
// that kubectl or ssh restores the terminal of an interactive session; the
// program is killed only if it lingers.
func newCommand(ctx context.Context, path string, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// kubectlError is a failed kubectl call with what kubectl said.
type kubectlError struct {
	args   []string
	err    error
	stderr string
}

func (e *kubectlError) Error() string {
	msg := strings.TrimSpace(e.stderr)
	if msg == "" {
		msg = e.err.Error()
	}
	return fmt.Sprintf("kubectl %s: %s", quoteArgs(e.args), msg)
}

func (e *kubectlError) Unwrap() error { return e.err }

// notFound says whether the API server answered NotFound.
func (e *kubectlError) notFound() bool {
	return strings.Contains(e.stderr, "(NotFound)")
}

// output runs kubectl and returns its standard output; a failure carries
// its standard error.
func (k *kubectl) output(ctx context.Context, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := k.command(ctx, args)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &kubectlError{args: args, err: err, stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

// stream runs kubectl with its standard output going to w; a failure
// carries its standard error.
func (k *kubectl) stream(ctx context.Context, w io.Writer, args ...string) error {
	var stderr bytes.Buffer
	cmd := k.command(ctx, args)
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		return &kubectlError{args: args, err: err, stderr: stderr.String()}
	}
	return nil
}

// interactive runs kubectl on the user's terminal (or the app's streams);
// kubectl's non-zero exit becomes podvisorctl's exit code, without a
// message of ours (kubectl, or the command it ran, printed one).
func (k *kubectl) interactive(ctx context.Context, args ...string) error {
	cmd := k.command(ctx, args)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = k.stdin, k.stdout, k.stderr
	return passExit(cmd.Run(), "kubectl")
}

// passExit turns a program's exit status into an exitError.
func passExit(err error, what string) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if code := ee.ExitCode(); code > 0 {
			return &exitError{code: code}
		}
		return fmt.Errorf("%s: %v", what, err) // killed by a signal
	}
	if err != nil {
		return fmt.Errorf("running %s: %w", what, err)
	}
	return nil
}
