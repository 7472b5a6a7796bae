package deploy

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestPrepareNodeKeepsExistingNamespaces runs image/prepare-node.sh in a
// private mount namespace (the machine's mounts are not touched) on a
// stand-in for the host's /run holding a live network namespace under
// netns/, as a node with pods has. Afterwards that file must still be the
// namespace (nsfs), not the empty file a non-recursive bind leaves, and
// netns/ a shared mount point; a second run (a restarted pod) too.
func TestPrepareNodeKeepsExistingNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mount and network namespaces")
	}
	for _, tool := range []string{"unshare", "findmnt", "mountpoint"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (util-linux)", tool)
		}
	}
	run := t.TempDir()
	script := `set -euo pipefail
mount -t tmpfs run "$RUN"
mkdir -p "$RUN/netns"
touch "$RUN/netns/pod1"
unshare --net="$RUN/netns/pod1" true
echo "before $(stat -f -c %T "$RUN/netns/pod1")"
for i in 1 2; do
	HOST_RUN="$RUN" bash image/prepare-node.sh >/dev/null
	echo "after$i $(stat -f -c %T "$RUN/netns/pod1") $(findmnt -n -o PROPAGATION --mountpoint "$RUN/netns" | tail -n 1)"
done
umount -l "$RUN/netns/pod1" 2>/dev/null || true
`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "bash", "-c", script)
	cmd.Env = append(os.Environ(), "RUN="+run)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("prepare-node in a private mount namespace: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{"before nsfs", "after1 nsfs shared", "after2 nsfs shared"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("namespace file type and netns/ propagation:\ngot  %q\nwant %q", lines, want)
	}
}
