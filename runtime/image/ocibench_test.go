package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkOCIPull compares PullImage of a containerDisk from Debian's
// docker-registry on loopback (manifest, layer into the store, the disk
// extracted and validated) with `skopeo copy` of the same image to a
// directory (manifest and blobs, digests verified), in the same run
// (issue 20's P4; ci/bench-images.sh interleaves the two round by round).
// Needs PODVISOR_REGISTRY_TESTS=1 like the registry tests.
func BenchmarkOCIPull(b *testing.B) {
	needRegistry(b)
	size := benchPullSize(b)
	// Random bytes: what gzip cannot shrink, as a compressed qcow2 is; no
	// qcow2 magic, so qemu-img takes it for raw.
	disk := string(fakeQcow2(size, 1, 7)[8:])
	r := startRegistry(b, "", "")
	ref := r.addr + "/disks/bench:v1"
	pushDisk(b, ref, []string{"--dest-tls-verify=false"}, tarOf(b, [2]string{"disk/bench.img", disk}))
	dir := b.TempDir()

	b.Run("store", func(b *testing.B) {
		b.SetBytes(int64(size))
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			s := ociStore(b, r.addr)
			b.StartTimer()
			if _, err := s.PullImage(context.Background(), "", ref, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := os.RemoveAll(s.dir); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("skopeo-dir", func(b *testing.B) {
		b.SetBytes(int64(size))
		for i := 0; b.Loop(); i++ {
			out := filepath.Join(dir, "skopeo-"+strconv.Itoa(i))
			cmd := exec.Command("skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://"+ref, "dir:"+out)
			if o, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("skopeo copy: %v: %s", err, o)
			}
			b.StopTimer()
			if err := os.RemoveAll(out); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}
