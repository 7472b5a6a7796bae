package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A download interrupted for good (retries exhausted, every caller gone,
// podvisor restarted) keeps what it received as tmp/partial-<key> with a
// tmp/partial-<key>.json describing it, so that the next pull of the same
// URL resumes instead of starting over: a multi-GiB image over a link that
// fails for longer than the retry budget still gets there. Only the bytes
// up to the last fsync recorded in the description are trusted.

const (
	partialPrefix = "partial-"
	partialMeta   = ".json"
	// syncEvery is how often (bytes) a download is fsynced and its
	// description updated.
	syncEvery = 64 << 20
)

// partialInfo is the description of a partial download.
type partialInfo struct {
	URL          string `json:"url"`
	Pin          string `json:"pin,omitempty"`
	Validator    string `json:"validator"`
	Total        int64  `json:"total"`
	ServerDigest string `json:"serverDigest,omitempty"`
	// Synced bytes are on disk for sure.
	Synced int64 `json:"synced"`
}

// partialKey names the partial file of a URL and pin; the same string keys
// the in-flight downloads.
func partialKey(flightKey string) string {
	sum := sha256.Sum256([]byte(flightKey))
	return hex.EncodeToString(sum[:16])
}

func flightKey(url, pin string) string { return url + "\x00" + pin }

// openPartial opens (creating) the partial file of d and, when a valid
// description exists, loads the trusted prefix: it is hashed again and the
// download continues after it.
func (d *download) openPartial(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	d.f, d.metaPath = f, path+partialMeta
	data, err := os.ReadFile(d.metaPath)
	if err != nil {
		return d.restart()
	}
	var pi partialInfo
	if json.Unmarshal(data, &pi) != nil || pi.URL != d.url || pi.Pin != d.want || pi.Validator == "" ||
		pi.Synced <= 0 || (pi.Total >= 0 && pi.Synced > pi.Total) {
		return d.restart()
	}
	st, err := f.Stat()
	if err != nil || st.Size() < pi.Synced {
		return d.restart()
	}
	if err := f.Truncate(pi.Synced); err != nil {
		return d.restart()
	}
	if _, err := io.Copy(d.h, io.NewSectionReader(f, 0, pi.Synced)); err != nil {
		return d.restart()
	}
	if _, err := f.Seek(pi.Synced, io.SeekStart); err != nil {
		return d.restart()
	}
	d.written, d.synced, d.best = pi.Synced, pi.Synced, pi.Synced
	d.validator, d.total, d.serverDigest = pi.Validator, pi.Total, pi.ServerDigest
	d.resumedFrom = pi.Synced
	return nil
}

// checkpoint fsyncs the data and records how much of it is durable.
func (d *download) checkpoint() error {
	if d.metaPath == "" || d.validator == "" || d.written == d.synced {
		return nil
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", d.f.Name(), err)
	}
	pi := partialInfo{URL: d.url, Pin: d.want, Validator: d.validator, Total: d.total,
		ServerDigest: d.serverDigest, Synced: d.written}
	data, err := json.Marshal(pi)
	if err != nil {
		return err
	}
	tmp := d.metaPath + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("recording partial download: %w", err)
	}
	if err := os.Rename(tmp, d.metaPath); err != nil {
		return fmt.Errorf("recording partial download: %w", err)
	}
	d.synced = d.written
	return nil
}

// dropPartial forgets the partial download.
func (d *download) dropPartial() {
	_ = os.Remove(d.f.Name())
	_ = os.Remove(d.metaPath)
	_ = os.Remove(d.metaPath + ".new")
}

// cleanTmp removes from tmp/ everything but partial downloads with their
// description, and those too when older than ttl or belonging to no one.
// keep names partial keys in use.
func cleanTmp(dir string, ttl time.Duration, keep map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	has := map[string]bool{}
	for _, e := range entries {
		has[e.Name()] = true
	}
	now := time.Now()
	for _, e := range entries {
		name := e.Name()
		key, isPartial := strings.CutPrefix(name, partialPrefix)
		key = strings.TrimSuffix(key, partialMeta)
		if keep[key] {
			continue
		}
		if isPartial && !strings.HasSuffix(name, ".new") {
			pair := partialPrefix + key
			info, ierr := e.Info()
			if has[pair] && has[pair+partialMeta] && ierr == nil && now.Sub(info.ModTime()) < ttl {
				continue
			}
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
