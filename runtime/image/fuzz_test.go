package image

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseName: no name panics, and every accepted name stays inside
// links/ as a single path element.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"cirros", "virtlet.cloud/a/b", "..", "a/../b", "x@sha256:" + strings.Repeat("a", 64), "/abs", "a%b", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := parseName(name)
		if err != nil {
			if !strings.Contains(err.Error(), "image name") {
				t.Fatalf("error %q does not name the field", err)
			}
			return
		}
		if n.link == "" || n.link == "." || n.link == ".." || strings.ContainsAny(n.link, "/\x00") {
			t.Fatalf("name %q gives link %q, which is not one safe path element", name, n.link)
		}
		if filepath.Base(n.link) != n.link {
			t.Fatalf("link %q is not a base name", n.link)
		}
	})
}

// FuzzVirtualSize: no input panics, and what VirtualSize accepts QEMU
// reads the same way: a qcow2 that `qemu-img info -f qcow2` can open has
// the header's size rounded down to 512-byte sectors (QEMU's rule) and no
// backing file; a raw file is checked by checkRawAsQEMU. (An external data file is not checked here: qemu-img names
// the header's data-file extension even when the incompatible-feature bit
// that makes QEMU open it is clear; TestVirtualSizeHeaders checks the bit.)
// VirtualSize reads the header only, so a qcow2 whose tables are broken is
// for qemu-img to refuse. The
// seeds include small qcow2 images made by qemu-img (512-byte clusters),
// so that mutations of their header fields still open.
func FuzzVirtualSize(f *testing.F) {
	needQemuImg(f)
	dir := f.TempDir()
	for i, args := range [][]string{
		{"-o", "cluster_size=512", "1000"},
		{"-o", "cluster_size=512,compat=0.10", "1M"},
		{"-o", "cluster_size=512,data_file=" + filepath.Join(dir, "data"), "1M"},
		{"-o", "cluster_size=512", "-b", filepath.Join(dir, "seed0"), "-F", "qcow2", "1M"},
	} {
		p := filepath.Join(dir, "seed"+strconv.Itoa(i))
		if out, err := exec.Command(QemuImg, append([]string{"create", "-q", "-f", "qcow2", p}, args...)...).CombinedOutput(); err != nil {
			f.Fatalf("qemu-img create %v: %v\n%s", args, err, out)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(header(3, 1<<30, 0, 0, 104))
	f.Add(header(2, 1<<20, 0, 0, 72))
	f.Add([]byte("KDMV"))
	f.Add([]byte{})
	f.Add([]byte("abc"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "img")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		size, format, err := VirtualSize(p)
		if err != nil {
			return
		}
		if size < 0 || (format != FormatQCOW2 && format != FormatRaw) {
			t.Fatalf("VirtualSize = %d, %q", size, format)
		}
		if format == FormatRaw {
			checkRawAsQEMU(t, p, size)
			return
		}
		info, err := qemuImgInfo(p, FormatQCOW2)
		if err != nil {
			return
		}
		if want := size / 512 * 512; info.VirtualSize != want || info.Format != format {
			t.Fatalf("VirtualSize = %d %s; qemu-img info: %d %s (want %d)", size, format, info.VirtualSize, info.Format, want)
		}
		if info.Backing != "" {
			t.Fatalf("VirtualSize accepts a qcow2 with backing file %q", info.Backing)
		}
	})
}

// checkRawAsQEMU: a file VirtualSize calls raw of size bytes is never one
// QEMU's probe takes for qcow2 (the probing confusion that lets a "raw"
// image name host files, also when the qcow2 driver then refuses it:
// "Unsupported qcow2 version 4"); when QEMU probes it as raw, its size is
// size rounded up to sectors. (Other formats QEMU may probe, a LUKS header
// say, are raw disks to podvisor, which always names the format.)
func checkRawAsQEMU(t *testing.T, p string, size int64) {
	t.Helper()
	probed, err := qemuImgInfo(p, "")
	switch {
	case err != nil && strings.Contains(err.Error(), "qcow"):
		t.Fatalf("VirtualSize calls raw what qemu-img probes as qcow2 (and refuses): %v", err)
	case err != nil:
	case probed.Format == "qcow2" || probed.Format == "qcow":
		t.Fatalf("VirtualSize calls raw what qemu-img probes as %s", probed.Format)
	case probed.Format == FormatRaw && probed.VirtualSize != (size+511)/512*512:
		t.Fatalf("VirtualSize = %d raw; qemu-img info: %d", size, probed.VirtualSize)
	}
}

type fuzzQemuInfo struct {
	VirtualSize int64  `json:"virtual-size"`
	Format      string `json:"format"`
	Backing     string `json:"backing-filename"`
}

// qemuImgInfo is `qemu-img info` of path read as format, probed when format
// is "" (it reports a backing file without opening it).
func qemuImgInfo(path, format string) (*fuzzQemuInfo, error) {
	// Some broken qcow2 tables keep qemu-img busy for long: those count as
	// not opened.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	args := []string{"info", "-U", "--output=json", path}
	if format != "" {
		args = append(args, "-f", format)
	}
	out, err := exec.CommandContext(ctx, QemuImg, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	var info fuzzQemuInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("qemu-img info output: %w: %s", err, out)
	}
	return &info, nil
}

// FuzzRedirectPolicy: whatever the URLs, a followed redirect goes to https,
// or stays on the original's scheme, host and port, or is plain http with
// insecure redirects allowed; never to another scheme.
func FuzzRedirectPolicy(f *testing.F) {
	f.Add("https://a.example/x", "http://127.0.0.1/y", false)
	f.Add("http://a.example/x", "http://a.example:80/y", false)
	f.Add("http://a.example/x", "HTTP://A.EXAMPLE/y", false)
	f.Add("https://a.example/x", "file:///etc/passwd", true)
	f.Add("http://[::1]:8080/x", "http://[::1]:8080/y", false)
	f.Add("http://a.example/x", "https:opaque", false)
	f.Fuzz(func(t *testing.T, from, to string, insecure bool) {
		fu, err := url.Parse(from)
		if err != nil {
			return
		}
		tu, err := url.Parse(to)
		if err != nil {
			return
		}
		o := options{insecureRedirects: insecure}
		err = o.checkRedirect(&http.Request{URL: tu}, []*http.Request{{URL: fu}}, DefaultMaxRedirects)
		scheme := strings.ToLower(tu.Scheme)
		switch {
		case err != nil:
		case scheme != "http" && scheme != "https":
			t.Fatalf("redirect %q -> %q to scheme %q followed", from, to, tu.Scheme)
		case scheme == "http" && !insecure && !sameOrigin(fu, tu):
			t.Fatalf("plain http redirect %q -> %q to another origin followed", from, to)
		}
	})
}

// FuzzDialControl: whatever address the dialer is given, one the default
// policy lets through is a global unicast, non-private address.
func FuzzDialControl(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "[::ffff:127.0.0.1]:80", "[fe80::1%eth0]:80", "8.8.8.8:443", "[::]:1", "0.0.0.1:80", "10.0.0.1:80", "[64:ff9b::7f00:1]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, address string) {
		var o options
		if o.dialControl("tcp", address, nil) != nil {
			return
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			t.Fatalf("%q is not an address, yet allowed", address)
		}
		a := ap.Addr().Unmap()
		if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || sharedSpace.Contains(a) || thisNetwork.Contains(a) {
			t.Fatalf("%s allowed by the default policy", a)
		}
	})
}
