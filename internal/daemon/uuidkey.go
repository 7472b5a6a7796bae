package daemon

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// uuidKeyFile, under the state dir, holds the node's secret that keys the
// domain UUIDs podvisor derives (domain.KeyedUUIDFor). It is made on the
// first start and kept: a UUID derived for a container stays the same
// across restarts of podvisor.
const uuidKeyFile = "uuid-key"

const uuidKeySize = 32

// loadUUIDKey reads the key at path, making it (random, mode 0600) if
// there is none. Two daemons starting at once on one state dir cannot both
// make one: the key is linked into place, and the loser reads the winner's.
func loadUUIDKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return makeUUIDKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the UUID key: %w", err)
	}
	if len(key) != uuidKeySize {
		return nil, fmt.Errorf("UUID key %s: %d bytes, want %d (remove it to make a new one; VMs already defined keep their UUIDs)", path, len(key), uuidKeySize)
	}
	return key, nil
}

func makeUUIDKey(path string) ([]byte, error) {
	key := make([]byte, uuidKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("making the UUID key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".uuid-key-*")
	if err != nil {
		return nil, fmt.Errorf("making the UUID key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing the UUID key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing the UUID key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("writing the UUID key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return loadUUIDKey(path)
	} else if err != nil {
		return nil, fmt.Errorf("storing the UUID key: %w", err)
	}
	return key, nil
}
