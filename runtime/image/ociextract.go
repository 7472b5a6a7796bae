package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
	"github.com/podvisor/podvisor/runtime/ctxio"
)

// extractDisk downloads img's layers, in order, and extracts the one disk
// file under /disk/ into a temp file of the store, validated. Each blob is
// verified against its digest by the download before it is read; one is
// deleted once read, a pull cut short keeps the blob in progress for the
// next pull to resume.
func (s *Store) extractDisk(ctx context.Context, c registryClient, n ociName, img v1.Image) (*fetched, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading the layers of %s: %w", n, err)
	}
	x := &diskExtract{s: s, disks: map[string]bool{}}
	defer x.cleanup()
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("layer %d of %s: %w", i, n, err)
		}
		if err := x.layer(ctx, c, i, d); err != nil {
			return nil, fmt.Errorf("layer %d (%s) of %s: %w", i, d, n, err)
		}
	}
	return x.finish(ctx, n)
}

// diskExtract is the state of one extraction.
type diskExtract struct {
	s *Store
	// disks are the files under /disk/ so far (a later layer's whiteout
	// removes one); tmp holds the content of disk.
	disks map[string]bool
	disk  string
	tmp   string
	hex   string
	size  int64
	keys  []string // temp names registered as active
}

func (x *diskExtract) cleanup() {
	if x.tmp != "" {
		_ = os.Remove(x.tmp)
	}
	x.s.releaseTmp(x.keys...)
}

func (x *diskExtract) layer(ctx context.Context, c registryClient, i int, d v1.Hash) error {
	if d.Algorithm != "sha256" || !hexDigest.MatchString(d.Hex) {
		return fmt.Errorf("digest %s: only sha256 layers are accepted", d)
	}
	ep := c.blobEndpoint(ctx, d.String())
	key := partialKey(flightKey(ep.URL, d.Hex))
	x.keys = append(x.keys, key)
	x.s.holdTmp(key)
	res, err := x.s.fetch(ctx, ep, d.Hex)
	if err != nil {
		return err
	}
	defer os.Remove(res.tmp)
	f, err := os.Open(res.tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return err
	}
	defer r.Close()
	return x.untar(ctx, i, tar.NewReader(r))
}

// decompress reads a layer blob as gzip, zstd or plain tar, by its magic.
func decompress(f io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(f, 1<<20)
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("reading gzip: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("reading zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// diskPath returns the file name of a tar entry under /disk/, "" for any
// other entry.
func diskPath(entry string) string {
	p := path.Clean("/" + entry)
	rest, ok := strings.CutPrefix(p, "/disk/")
	if !ok || rest == "" {
		return ""
	}
	return rest
}

func (x *diskExtract) untar(ctx context.Context, layer int, tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		p := diskPath(h.Name)
		if p == "" || h.Typeflag == tar.TypeDir {
			continue
		}
		if base := path.Base(p); strings.HasPrefix(base, ".wh.") {
			gone := path.Join(path.Dir(p), strings.TrimPrefix(base, ".wh."))
			delete(x.disks, gone)
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return fmt.Errorf("/disk/%s is not a regular file (tar type %q): a containerDisk holds one disk file under /disk/", p, h.Typeflag)
		}
		x.disks[p] = true
		if len(x.disks) > 1 {
			return fmt.Errorf("more than one file under /disk/ (%s): a containerDisk holds exactly one disk file there", strings.Join(sortedKeys(x.disks), ", "))
		}
		if err := x.write(ctx, p, tr); err != nil {
			return fmt.Errorf("extracting /disk/%s: %w", p, err)
		}
	}
}

// write extracts one disk file, replacing any extracted before.
func (x *diskExtract) write(ctx context.Context, p string, r io.Reader) error {
	if x.tmp != "" {
		_ = os.Remove(x.tmp)
	}
	f, err := os.CreateTemp(x.s.tmpDir(), "ocidisk-*")
	if err != nil {
		return err
	}
	x.tmp, x.disk = f.Name(), p
	key := filepath.Base(f.Name())
	x.keys = append(x.keys, key)
	x.s.holdTmp(key)
	h := sha256.New()
	max := x.s.opts.maxSize
	var src io.Reader = r
	if max > 0 {
		src = io.LimitReader(r, max+1)
	}
	n, err := io.Copy(io.MultiWriter(f, h), ctxio.Reader(ctx, src))
	if err == nil && max > 0 && n > max {
		err = fmt.Errorf("the disk is larger than %d bytes, the limit (%s)", max, FlagMaxSize)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	x.hex, x.size = hex.EncodeToString(h.Sum(nil)), n
	return nil
}

// finish validates the disk as KubeVirt does and hands it to the commit.
func (x *diskExtract) finish(ctx context.Context, n ociName) (*fetched, error) {
	if len(x.disks) == 0 || x.tmp == "" {
		return nil, fmt.Errorf("%s has no file under /disk/: a containerDisk holds exactly one disk file (qcow2 or raw) there", n)
	}
	res := &fetched{tmp: x.tmp, hex: x.hex, size: x.size}
	if err := checkDownloaded(res); err != nil {
		return nil, fmt.Errorf("/disk/%s of %s: %w", x.disk, n, err)
	}
	_, format, err := VirtualSize(x.tmp)
	if err != nil {
		return nil, fmt.Errorf("/disk/%s of %s: %w", x.disk, n, err)
	}
	if err := x.s.opts.checkDisk(ctx, x.tmp, format); err != nil {
		return nil, fmt.Errorf("/disk/%s of %s: %w", x.disk, n, err)
	}
	x.tmp = "" // the commit owns it now
	return res, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
