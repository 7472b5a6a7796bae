package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/podvisor/podvisor/deploy"
)

// now is the clock of the dump's name and summary (tests fix it).
var now = time.Now

// criNote says why the dump has no CRI state.
const criNote = `CRI state (crictl pods/ps/inspect) is not collected: the podvisor image
has no crictl and podvisor has no dump command. On the node, run
  crictl --runtime-endpoint unix:///run/podvisor/podvisor.sock pods -o json
  crictl --runtime-endpoint unix:///run/podvisor/podvisor.sock ps -a -o json
vm-pods.txt maps each VM pod to its container ID and libvirt domain.
`

func (a *app) diagCmd() *cobra.Command {
	diag := &cobra.Command{
		Use:   "diag",
		Short: "Diagnostics of podvisor's nodes",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(a.stderr)
			_ = cmd.Help()
			return &exitError{code: 2}
		},
	}
	var (
		node, output string
	)
	dump := &cobra.Command{
		Use:   "dump [--node NODE] [-o DIR | -o FILE.tar.gz | -o -]",
		Short: "Collect logs, domains and VM pods of every podvisor node into a directory or a tar.gz",
		Long: `Collects, from the podvisor pod of each node (or of --node):

  NODE/pod.yaml                the podvisor pod
  NODE/logs/CONTAINER.log      kubectl logs of podvisor, libvirt, vms and
                               prepare-node (and .previous.log after a restart)
  NODE/virsh-list.txt          virsh list --all
  NODE/domains/DOMAIN.xml      virsh dumpxml of every domain
  NODE/libvirt-qemu-logs/      libvirt's per-domain QEMU logs (/var/log/libvirt/qemu)
  NODE/vm-pods.txt             the node's VM pods: container ID and domain
  NODE/errors.txt              what could not be collected, and why
  summary.txt                  when, which nodes, what failed

into a new directory (default podvisor-diag-TIMESTAMP), a .tar.gz or .tgz
file, or a tar.gz on standard output (-o -). CRI state is not collected: the
image has no crictl (summary.txt says how to get it on the node).

Items that fail are recorded in errors.txt and the dump goes on; the exit
code is 0 once a dump is written.`,
		Example: `  podvisorctl diag dump
  podvisorctl diag dump --node worker-1 -o /tmp/worker-1
  podvisorctl diag dump -o podvisor-diag.tar.gz`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.diagDump(cmd.Context(), node, output)
		},
	}
	dump.Flags().StringVar(&node, "node", "", "only this node (default: every node with a podvisor pod)")
	dump.Flags().StringVarP(&output, "output", "o", "", "a directory to create, a FILE.tar.gz/.tgz, or - for a tar.gz on standard output (default podvisor-diag-TIMESTAMP)")
	diag.AddCommand(dump)
	return diag
}

// sink receives the dump's files.
type sink interface {
	add(name string, data []byte) error
	close() error
}

type dirSink struct{ root string }

func (d *dirSink) add(name string, data []byte) error {
	p := filepath.Join(d.root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

func (d *dirSink) close() error { return nil }

type tarSink struct {
	top  string // directory of every entry
	f    io.Closer
	gz   *gzip.Writer
	tw   *tar.Writer
	time time.Time
}

func newTarSink(w io.Writer, f io.Closer, top string, t time.Time) *tarSink {
	gz := gzip.NewWriter(w)
	return &tarSink{top: top, f: f, gz: gz, tw: tar.NewWriter(gz), time: t}
}

func (t *tarSink) add(name string, data []byte) error {
	if err := t.tw.WriteHeader(&tar.Header{Name: path.Join(t.top, name), Mode: 0o644, Size: int64(len(data)), ModTime: t.time, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := t.tw.Write(data)
	return err
}

func (t *tarSink) close() error {
	err := t.tw.Close()
	if e := t.gz.Close(); err == nil {
		err = e
	}
	if t.f != nil {
		if e := t.f.Close(); err == nil {
			err = e
		}
	}
	return err
}

// openSink creates the output named by -o.
func (a *app) openSink(output string) (sink, string, error) {
	t := now()
	if output == "" {
		output = "podvisor-diag-" + t.UTC().Format("20060102-150405")
	}
	if output == "-" {
		return newTarSink(a.stdout, nil, "podvisor-diag-"+t.UTC().Format("20060102-150405"), t), "standard output", nil
	}
	if _, err := os.Lstat(output); err == nil {
		return nil, "", fmt.Errorf("-o %s exists: name a new directory or file", output)
	}
	if base, ok := strings.CutSuffix(output, ".tar.gz"); ok || strings.HasSuffix(output, ".tgz") {
		if !ok {
			base = strings.TrimSuffix(output, ".tgz")
		}
		f, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, "", err
		}
		return newTarSink(f, f, filepath.Base(base), t), output, nil
	}
	if err := os.Mkdir(output, 0o755); err != nil {
		return nil, "", err
	}
	return &dirSink{root: output}, output, nil
}

// collector writes one node's files and remembers what failed.
type collector struct {
	s     sink
	dir   string
	files int
	errs  []string
	fatal error // the sink failed: stop
}

func (c *collector) add(name string, data []byte) {
	if c.fatal != nil {
		return
	}
	if err := c.s.add(path.Join(c.dir, name), data); err != nil {
		c.fatal = fmt.Errorf("writing %s: %w", path.Join(c.dir, name), err)
		return
	}
	c.files++
}

func (c *collector) fail(item string, err error) {
	c.errs = append(c.errs, item+": "+strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

func (a *app) diagDump(ctx context.Context, node, output string) error {
	k, err := a.kubectl()
	if err != nil {
		return err
	}
	pods, err := a.podvisorPods(ctx, k, node)
	if err != nil {
		return err
	}
	if len(pods) == 0 {
		return a.noPodvisorPod(node)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Spec.NodeName < pods[j].Spec.NodeName })
	s, where, err := a.openSink(output)
	if err != nil {
		return err
	}
	var summary strings.Builder
	fmt.Fprintf(&summary, "podvisorctl %s diag dump, %s\npodvisor namespace %s\n\n%s\n", version, now().UTC().Format(time.RFC3339), a.podvisorNamespace, criNote)
	files, failed := 0, 0
	for _, p := range pods {
		if err := ctx.Err(); err != nil {
			s.close()
			return err
		}
		name := p.Spec.NodeName
		if name == "" {
			name = p.Metadata.Name
		}
		c := &collector{s: s, dir: name}
		a.collectNode(ctx, k, &p, c)
		if len(c.errs) > 0 {
			c.add("errors.txt", []byte(strings.Join(c.errs, "\n")+"\n"))
		}
		if c.fatal != nil {
			s.close()
			return c.fatal
		}
		fmt.Fprintf(&summary, "node %s: pod %s (%s), %d files, %d items failed\n", name, p.ref(), p.Status.Phase, c.files, len(c.errs))
		for _, e := range c.errs {
			fmt.Fprintf(&summary, "  %s\n", strings.ReplaceAll(e, "\n", "\n  "))
		}
		files += c.files
		failed += len(c.errs)
	}
	if err := s.add("summary.txt", []byte(summary.String())); err != nil {
		s.close()
		return err
	}
	if err := s.close(); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "wrote %s: %d nodes, %d files", where, len(pods), files+1)
	if failed > 0 {
		fmt.Fprintf(a.stderr, "; %d items could not be collected (NODE/errors.txt, summary.txt)", failed)
	}
	fmt.Fprintln(a.stderr)
	return nil
}

// collectNode gathers one podvisor pod's node.
func (a *app) collectNode(ctx context.Context, k *kubectl, p *podJSON, c *collector) {
	ns, pod := p.Metadata.Namespace, p.Metadata.Name
	get := func(file string, args ...string) []byte {
		out, err := k.output(ctx, args...)
		if err != nil {
			c.fail(file, err)
			return nil
		}
		c.add(file, out)
		return out
	}
	get("pod.yaml", "get", "pod", "-n", ns, pod, "-o", "yaml")

	// Logs of every container, and of the previous run of those that
	// restarted.
	restarts := map[string]int{}
	for _, s := range append(append([]containerStatus(nil), p.Status.InitStatuses...), p.Status.ContainerStatuses...) {
		restarts[s.Name] = s.RestartCount
	}
	for _, ctr := range []string{deploy.PodvisorContainer, deploy.LibvirtContainer, deploy.VMsContainer, deploy.PrepareNodeContainer} {
		get("logs/"+ctr+".log", "logs", "-n", ns, pod, "-c", ctr)
		if restarts[ctr] > 0 {
			get("logs/"+ctr+".previous.log", "logs", "-n", ns, pod, "-c", ctr, "--previous")
		}
	}

	virsh := func(args ...string) []string {
		return append([]string{"exec", "-n", ns, pod, "-c", deploy.LibvirtContainer, "--", "virsh", "-c", deploy.LibvirtURI}, args...)
	}
	if p.Status.Phase == "Running" {
		get("virsh-list.txt", virsh("list", "--all")...)
		if names, err := k.output(ctx, virsh("list", "--all", "--name")...); err != nil {
			c.fail("domains/", err)
		} else {
			for _, d := range strings.Fields(string(names)) {
				if d != path.Base(d) || strings.HasPrefix(d, ".") {
					c.fail("domains/", fmt.Errorf("skipped a domain named %q", d))
					continue
				}
				get("domains/"+d+".xml", virsh("dumpxml", d)...)
			}
		}
		// libvirt's QEMU logs: the reason a domain did not start.
		var logs bytes.Buffer
		if err := k.stream(ctx, &logs, "exec", "-n", ns, pod, "-c", deploy.LibvirtContainer, "--", "tar", "-C", "/var/log/libvirt", "-cf", "-", "qemu"); err != nil {
			c.fail("libvirt-qemu-logs/", err)
		} else if err := untar(&logs, "libvirt-qemu-logs", c); err != nil {
			c.fail("libvirt-qemu-logs/", err)
		}
	} else {
		c.fail("virsh, domains, libvirt-qemu-logs", fmt.Errorf("pod %s is %s: nothing to exec in", p.ref(), p.Status.Phase))
	}

	if p.Spec.NodeName != "" {
		if out, err := k.output(ctx, "get", "pods", "-A", "--field-selector", "spec.nodeName="+p.Spec.NodeName, "-o", "json"); err != nil {
			c.fail("vm-pods.txt", err)
		} else if table, err := vmPodTable(out); err != nil {
			c.fail("vm-pods.txt", err)
		} else {
			c.add("vm-pods.txt", table)
		}
	}
}

// untar adds the regular files of a tar stream under dir; entries whose
// names leave it are skipped, and named in the error.
func untar(r io.Reader, dir string, c *collector) error {
	tr := tar.NewReader(r)
	var skipped []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(h.Name)
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			skipped = append(skipped, fmt.Sprintf("%q", h.Name))
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		c.add(path.Join(dir, name), data)
	}
	if len(skipped) > 0 {
		return fmt.Errorf("skipped tar entries that leave the directory: %s", strings.Join(skipped, ", "))
	}
	return nil
}

// vmPodTable lists the VM pods of a pod list with their domains.
func vmPodTable(list []byte) ([]byte, error) {
	var l podListJSON
	if err := json.Unmarshal(list, &l); err != nil {
		return nil, fmt.Errorf("reading the node's pods from kubectl: %w", err)
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tPHASE\tCONTAINER ID\tDOMAIN")
	for i := range l.Items {
		p := &l.Items[i]
		vm, err := checkVMPod(p)
		switch {
		case err == nil:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ref(), p.Status.Phase, vm.ContainerID, vm.Domain)
		case looksLikeVM(p) && !hasContainerID(p):
			fmt.Fprintf(tw, "%s\t%s\t-\t- (no container yet)\n", p.ref(), p.Status.Phase)
		}
	}
	tw.Flush()
	return b.Bytes(), nil
}

func hasContainerID(p *podJSON) bool {
	for _, s := range p.Status.ContainerStatuses {
		if s.ContainerID != "" {
			return true
		}
	}
	return false
}
