package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// What the store keeps of an OCI image's config: its User, which the CRI
// reports in ImageStatus as containerd does (kubelet's runAsNonRoot check
// reads it). The config belongs to a manifest, and the image ID is the
// disk's digest, so the record is kept per manifest digest, next to
// manifests/<hex>:
//
//	configs/<manifest hex>  JSON, written with manifests/<hex> when a pull
//	                        extracts the manifest
//
// An image's user is the one its manifests' records agree on. A manifest
// pulled by an older podvisor has no record, and an image downloaded from
// a URL no manifest: neither adds a user.

// configRecord is the JSON of configs/<manifest hex>.
type configRecord struct {
	// User is the config's User as the image gives it: "", "1002",
	// "www-data", "1003:1004", "www-data:1004".
	User string `json:"user"`
}

// maxConfigSize bounds an image config podvisor reads (a containerDisk's
// is a few hundred bytes; the manifest declares its size).
const maxConfigSize = 4 << 20

func (s *Store) configsDir() string { return filepath.Join(s.dir, "configs") }

// fetchConfig downloads img's config through the registry's
// authenticating transport under the download policy, as the layers are,
// but whole and in memory (it is small): bounded, and verified against
// its digest. It runs in the pull's shared work (ctx outlives a caller
// that gives up), once for concurrent pulls of one manifest.
func (s *Store) fetchConfig(ctx context.Context, c registryClient, img v1.Image) (configRecord, error) {
	m, err := img.Manifest()
	if err != nil {
		return configRecord{}, fmt.Errorf("reading the image manifest: %w", err)
	}
	d := m.Config.Digest
	if d.Algorithm != "sha256" || !hexDigest.MatchString(d.Hex) {
		return configRecord{}, fmt.Errorf("image config digest %s: only sha256 is accepted", d)
	}
	if m.Config.Size > maxConfigSize {
		return configRecord{}, fmt.Errorf("the image config %s is %d bytes, more than the %d accepted", d, m.Config.Size, maxConfigSize)
	}
	raw, err := s.fetchSmallBlob(ctx, c, d)
	if err != nil {
		return configRecord{}, fmt.Errorf("image config %s: %w", d, err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return configRecord{}, fmt.Errorf("image config %s: %w", d, err)
	}
	return configRecord{User: cf.Config.User}, nil
}

// fetchSmallBlob GETs blob d of c's repository, at most maxConfigSize
// bytes, within the transport's connect and stall timeouts together.
func (s *Store) fetchSmallBlob(ctx context.Context, c registryClient, d v1.Hash) ([]byte, error) {
	ep := c.blobEndpoint(ctx, d.String())
	client, err := s.httpClient(ep)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, ep.Transport.timeout(s.opts.connectTimeout)+ep.Transport.timeout(s.opts.stallTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.URL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", ep.URL, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", ep.URL, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("GET %s: more than %d bytes", ep.URL, maxConfigSize)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != d.Hex {
		return nil, fmt.Errorf("GET %s: the content's digest is sha256:%x", ep.URL, sum)
	}
	return b, nil
}

// writeConfigRecord atomically writes configs/<mhex>. Called with s.mu
// held.
func (s *Store) writeConfigRecord(mhex string, rec configRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.tmpDir(), fmt.Sprintf("config-%d-%s", time.Now().UnixNano(), mhex[:12]))
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("recording the config of manifest sha256:%s: %w", mhex, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.configsDir(), mhex)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("recording the config of manifest sha256:%s: %w", mhex, err)
	}
	return nil
}

// manifestsByHex maps each image's hex to the manifest digests (hex)
// recorded as giving it. Called with s.mu held.
func (s *Store) manifestsByHex() (map[string][]string, error) {
	return symlinksByTarget(s.manifestsDir(), hexDigest.MatchString)
}

// userOf is the config user of an image whose manifests are mhexes: the
// one their records agree on, "" when they disagree or none has a record.
// An unreadable record counts as none (logged): it must not hide the
// image. Called with s.mu held.
func (s *Store) userOf(mhexes []string) string {
	var user string
	found := false
	for _, m := range mhexes {
		b, err := os.ReadFile(filepath.Join(s.configsDir(), m))
		if errors.Is(err, os.ErrNotExist) {
			continue // pulled before configs were recorded
		}
		var rec configRecord
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil {
			s.opts.logger.Warn("ignoring an unreadable image config record", "manifest", "sha256:"+m, "err", err)
			continue
		}
		if found && rec.User != user {
			return ""
		}
		user, found = rec.User, true
	}
	return user
}

// forgetManifests deletes the manifest and config records of the disk
// hex, whose data is being removed: a later pull bringing the same disk
// back under another manifest must not find them again (they would add
// a user the image no longer has). Called with s.mu held.
func (s *Store) forgetManifests(hex string) error {
	m, err := s.manifestsByHex()
	if err != nil {
		return err
	}
	for _, mhex := range m[hex] {
		for _, p := range []string{filepath.Join(s.manifestsDir(), mhex), filepath.Join(s.configsDir(), mhex)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("forgetting manifest sha256:%s: %w", mhex, err)
			}
		}
	}
	return nil
}

// collectConfigs deletes the config records of manifests no longer
// recorded (and leftovers of a pull cut between the two writes). Called
// with s.mu held, after collectManifests.
func (s *Store) collectConfigs() error {
	entries, err := os.ReadDir(s.configsDir())
	if err != nil {
		return fmt.Errorf("collecting image configs: %w", err)
	}
	for _, e := range entries {
		if _, err := os.Lstat(filepath.Join(s.manifestsDir(), e.Name())); err == nil {
			continue
		}
		if err := os.Remove(filepath.Join(s.configsDir(), e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("collecting image config %s: %w", e.Name(), err)
		}
	}
	return nil
}
