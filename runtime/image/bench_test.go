package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/podvisor/podvisor/fakes/imageserver"
)

// benchPullSize is the image size of BenchmarkPull; override with
// PODVISOR_BENCH_PULL_MIB.
func benchPullSize(b *testing.B) int {
	mib := 256
	if v := os.Getenv("PODVISOR_BENCH_PULL_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("PODVISOR_BENCH_PULL_MIB=%q: want a positive integer", v)
		}
		mib = n
	}
	return mib << 20
}

// BenchmarkPull compares a store pull (download, hash, rename, link) with
// `curl -o` followed by `sha256sum` of the same file from the same local
// server, in the same run.
func BenchmarkPull(b *testing.B) {
	size := benchPullSize(b)
	data := fakeQcow2(size, 1<<40, 99)
	srv := imageserver.New(imageserver.Options{})
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	srv.AddImage("img", data)
	url := srv.URL() + "/img"
	dir := b.TempDir()

	b.Run("store", func(b *testing.B) {
		b.SetBytes(int64(size))
		for i := 0; b.Loop(); i++ {
			s, err := NewStore(filepath.Join(dir, "store-"+strconv.Itoa(i)), staticTranslator{"img": {URL: url}}, testPolicy()...)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Pull(context.Background(), "img"); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := os.RemoveAll(s.dir); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	// curl alone: the transfer without verification, for scale.
	b.Run("curl", func(b *testing.B) {
		if _, err := exec.LookPath("curl"); err != nil {
			b.Skip("curl not found")
		}
		b.SetBytes(int64(size))
		out := filepath.Join(dir, "curl-only.img")
		for b.Loop() {
			if o, err := exec.Command("curl", "-sSf", "-o", out, url).CombinedOutput(); err != nil {
				b.Fatalf("curl: %v: %s", err, o)
			}
			b.StopTimer()
			if err := os.Remove(out); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("curl+sha256sum", func(b *testing.B) {
		for _, tool := range []string{"curl", "sha256sum"} {
			if _, err := exec.LookPath(tool); err != nil {
				b.Skipf("%s not found", tool)
			}
		}
		b.SetBytes(int64(size))
		out := filepath.Join(dir, "curl.img")
		for b.Loop() {
			if o, err := exec.Command("curl", "-sSf", "-o", out, url).CombinedOutput(); err != nil {
				b.Fatalf("curl: %v: %s", err, o)
			}
			if o, err := exec.Command("sha256sum", out).CombinedOutput(); err != nil {
				b.Fatalf("sha256sum: %v: %s", err, o)
			}
			b.StopTimer()
			if err := os.Remove(out); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}

// BenchmarkCreateOverlay times overlay creation over a small image and a
// large sparse one: backing, not copying, makes them cost the same.
func BenchmarkCreateOverlay(b *testing.B) {
	needQemuImg(b)
	dir := b.TempDir()
	for _, tc := range []struct {
		name string
		size int64
		fill bool
	}{
		{"20MiB", 20 << 20, true},
		{"10GiB-sparse", 10 << 30, false},
	} {
		base := filepath.Join(dir, tc.name+".raw")
		f, err := os.Create(base)
		if err != nil {
			b.Fatal(err)
		}
		if tc.fill {
			if _, err := f.Write(fakeQcow2(int(tc.size), 1, 5)[8:]); err != nil { // raw: no qcow2 magic
				b.Fatal(err)
			}
		}
		if err := f.Truncate(tc.size); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				ov := filepath.Join(dir, fmt.Sprintf("%s-%d.qcow2", tc.name, i))
				size, err := CreateOverlay(context.Background(), base, ov, 0)
				if err != nil {
					b.Fatal(err)
				}
				if size != tc.size {
					b.Fatalf("overlay size %d, want %d", size, tc.size)
				}
			}
		})
	}
}
