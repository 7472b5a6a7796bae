package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/podvisor/podvisor/internal/syncbuf"
)

// portForwardTimeout bounds the wait for kubectl port-forward to listen.
var portForwardTimeout = 30 * time.Second

func (a *app) sshCmd() *cobra.Command {
	var (
		identity string
		port     int
		sshPath  string
	)
	cmd := &cobra.Command{
		Use:   "ssh [flags] [USER@]POD [--] [SSH-OPTIONS...] [COMMAND...]",
		Short: "ssh to a VM through kubectl port-forward",
		Long: `Connects ssh to a VM pod's guest:

  kubectl port-forward -n NAMESPACE pod/POD --address 127.0.0.1 :22
  ssh -p LOCAL-PORT -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null [-i KEY] [SSH-OPTIONS...] USER@127.0.0.1 [COMMAND...]

kubectl picks a free local port; podvisor connects the forwarded port to
the guest at the pod IP. The guest needs an ssh server and your key
(the VirtletSSHKeys annotation, or VirtletSSHKeySource).

Host keys are not checked, as with Virtlet's virtletctl ssh: the local port
changes every time and VMs get new keys when recreated under the same name.
The connection runs through the API server and kubelet to the pod, which
kubectl authenticates.

Two forms of what follows the pod:

  podvisorctl ssh -i KEY user@pod -- uname -a
      podvisorctl's form: podvisorctl's flags (-i, --port, --ssh) before
      the pod; what follows the pod (after an optional --) is the command
      to run in the guest.
  podvisorctl ssh user@pod -- -i KEY -A uname -a
      virtletctl's form (virtletctl ssh user@pod -- [ssh args]): when what
      follows the pod starts with an option, it is ssh's options, read as
      ssh reads them (-i KEY, -iKEY, -vvv, -o Name=value, a -- ending
      them); the words after the options are the command. The options go
      to ssh before the host. -p is refused: ssh's port is the tunnel's,
      and --port names the guest's.`,
		Example: `  podvisorctl ssh cirros@cirros-vm
  podvisorctl ssh -i ~/.ssh/vm_key ubuntu@ubuntu-vm -- uname -a
  podvisorctl ssh cirros@cirros-vm -- -i ~/.ssh/vm_key -o ConnectTimeout=5 uptime
  kubectl podvisor -n vms ssh --port 2222 admin@my-vm`,
		ValidArgsFunction: a.completeVMPods,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("ssh needs [USER@]POD")
			}
			target := args[0]
			sshOpts, remote, err := splitSSHArgs(args[1:])
			if err != nil {
				return err
			}
			user, pod, ok := strings.Cut(target, "@")
			if !ok {
				user, pod = "", target
			} else if user == "" || pod == "" {
				return fmt.Errorf("%q: want [USER@]POD", target)
			}
			if port < 1 || port > 65535 {
				return fmt.Errorf("--port %d: want a port number, 1 to 65535", port)
			}
			return a.ssh(cmd.Context(), sshOptions{user: user, pod: pod, sshOpts: sshOpts, remote: remote, identity: identity, port: port, sshPath: sshPath})
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVarP(&identity, "identity", "i", "", "private key file, passed to ssh -i")
	cmd.Flags().IntVar(&port, "port", 22, "the guest's ssh port")
	cmd.Flags().StringVar(&sshPath, "ssh", "ssh", "ssh client to run")
	return cmd
}

type sshOptions struct {
	user, pod string
	sshOpts   []string // ssh's own options (virtletctl's form)
	remote    []string // the command in the guest
	identity  string
	port      int
	sshPath   string
}

func (a *app) ssh(ctx context.Context, o sshOptions) error {
	k, err := a.kubectl()
	if err != nil {
		return err
	}
	sshBin, err := a.lookPath(o.sshPath)
	if err != nil {
		return fmt.Errorf("ssh client %q not found: install OpenSSH's client or give one with --ssh (%v)", o.sshPath, err)
	}
	vm, err := a.vmPod(ctx, k, o.pod)
	if err != nil {
		return err
	}
	tun, err := a.portForward(ctx, k, vm, 0, o.port)
	if err != nil {
		return err
	}
	defer tun.stop()

	host := "127.0.0.1"
	if o.user != "" {
		host = o.user + "@" + host
	}
	args := []string{"-p", strconv.Itoa(tun.local),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"}
	if o.identity != "" {
		args = append(args, "-i", o.identity)
	}
	args = append(args, o.sshOpts...)
	args = append(args, host)
	args = append(args, o.remote...)
	c := newCommand(ctx, sshBin, args)
	c.Stdin, c.Stdout, c.Stderr = a.stdin, a.stdout, a.stderr
	err = c.Run()
	if err != nil {
		// Why the tunnel failed (podvisor could not reach the guest's
		// port, the pod went away) is in kubectl's messages.
		if msg := strings.TrimSpace(tun.stderr.String()); msg != "" {
			fmt.Fprintf(a.stderr, "kubectl port-forward said:\n%s\n", msg)
		}
	}
	return passExit(err, "ssh")
}

// sshOptsWithArg are OpenSSH's options that take an argument (ssh(1),
// its getopt string); sshFlags those that take none.
const (
	sshOptsWithArg = "BbcDEeFIiJLlmOoPpQRSWw"
	sshFlags       = "1246AaCfGgKkMNnqsTtVvXxYy"
)

// splitSSHArgs splits what follows the pod on the command line into ssh's
// options and the command in the guest. One "--" after the pod is
// podvisorctl's separator. When the next word is an option, this is
// virtletctl's form: options are read as ssh's getopt reads them (grouped
// flags, an option's argument attached or in the next word) up to the
// first word that is not one, or a "--" that ends them.
func splitSSHArgs(words []string) (opts, command []string, err error) {
	if len(words) > 0 && words[0] == "--" {
		words = words[1:]
	}
	i := 0
	for i < len(words) {
		w := words[i]
		if w == "--" {
			return words[:i], words[i+1:], nil
		}
		if len(w) < 2 || w[0] != '-' {
			break
		}
		i++
		for j := 1; j < len(w); j++ {
			c := w[j]
			if strings.IndexByte(sshFlags, c) >= 0 {
				continue
			}
			if strings.IndexByte(sshOptsWithArg, c) < 0 {
				return nil, nil, fmt.Errorf("ssh option -%c (in %q): not an ssh option (ssh options after the pod are virtletctl's form; see podvisorctl ssh --help)", c, w)
			}
			if c == 'p' {
				return nil, nil, errors.New("ssh option -p: podvisorctl sets ssh's port to the tunnel's local port; give the guest's port with --port before the pod")
			}
			if j == len(w)-1 { // the argument is the next word
				if i == len(words) {
					return nil, nil, fmt.Errorf("ssh option -%c needs an argument", c)
				}
				i++
			}
			break
		}
	}
	return words[:i], words[i:], nil
}

var forwardingRE = regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> `)

// tunnel is a kubectl port-forward running in the background.
type tunnel struct {
	local  int             // the local port kubectl listens on
	stderr *syncbuf.Buffer // what kubectl said
	exited <-chan struct{} // closed when kubectl ended
	stop   func()          // ends it (SIGTERM, then SIGKILL) and waits
	args   []string
	err    func() error // kubectl's exit, once exited is closed
}

// portForward runs kubectl port-forward from local (0: a free port) to
// the VM pod's port remote in the background and returns once kubectl
// listens.
func (a *app) portForward(ctx context.Context, k *kubectl, vm *vmPod, local, remote int) (*tunnel, error) {
	spec := ":" + strconv.Itoa(remote)
	if local != 0 {
		spec = strconv.Itoa(local) + spec
	}
	args := []string{"port-forward", "-n", vm.Namespace, "pod/" + vm.Name, "--address", "127.0.0.1", spec}
	cmd := k.command(ctx, args)
	// Its own process group: a Ctrl-C meant for ssh must not end the tunnel
	// under it; stop() ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting kubectl port-forward: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	portc := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			if m := forwardingRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				p, _ := strconv.Atoi(m[1])
				portc <- p
				sent = true
			}
		}
		io.Copy(io.Discard, out)
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		select {
		case <-exited:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	t := &tunnel{stderr: stderr, exited: exited, stop: stop, args: args, err: func() error { return waitErr }}
	timer := time.NewTimer(portForwardTimeout)
	defer timer.Stop()
	select {
	case t.local = <-portc:
		return t, nil
	case <-exited:
		if waitErr == nil {
			waitErr = errors.New("exited without reporting a local port")
		}
		return nil, &kubectlError{args: args, err: waitErr, stderr: stderr.String()}
	case <-timer.C:
		stop()
		return nil, fmt.Errorf("kubectl %s did not report a local port within %v: %s", quoteArgs(args), portForwardTimeout, strings.TrimSpace(stderr.String()))
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	}
}
