// Package store persists podvisor's metadata in a bbolt file. It is the only
// package that touches the database; it stores opaque values per bucket so
// that the lifecycle code owns its record types.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = errors.New("not found in store")

// DB is an open metadata database.
type DB struct {
	bolt *bolt.DB
	path string
}

// Open opens (creating if needed) the database at path. The file is locked
// for exclusive use: a second daemon on the same state dir fails here rather
// than corrupting state.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating store directory: %w", err)
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening store %s (is another podvisor using this state dir?): %w", path, err)
	}
	return &DB{bolt: b, path: path}, nil
}

// Path is the database file.
func (d *DB) Path() string { return d.path }

// Close closes the database.
func (d *DB) Close() error { return d.bolt.Close() }

// Put stores value under key in bucket, creating the bucket if needed. It
// returns once the write is durable (fsynced).
func (d *DB) Put(bucket, key string, value []byte) error {
	return d.Batch([]Op{{Bucket: bucket, Key: key, Value: value}})
}

// Delete removes key from bucket; a missing key is not an error.
func (d *DB) Delete(bucket, key string) error {
	return d.Batch([]Op{{Bucket: bucket, Key: key, Delete: true}})
}

// Op is one write of a Batch.
type Op struct {
	Bucket string
	Key    string
	Value  []byte
	Delete bool
}

// Batch applies ops atomically: all or none.
func (d *DB) Batch(ops []Op) error {
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		for _, op := range ops {
			b, err := tx.CreateBucketIfNotExists([]byte(op.Bucket))
			if err != nil {
				return fmt.Errorf("bucket %q: %w", op.Bucket, err)
			}
			if op.Delete {
				if err := b.Delete([]byte(op.Key)); err != nil {
					return fmt.Errorf("deleting %s/%s: %w", op.Bucket, op.Key, err)
				}
				continue
			}
			if err := b.Put([]byte(op.Key), op.Value); err != nil {
				return fmt.Errorf("writing %s/%s: %w", op.Bucket, op.Key, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store update: %w", err)
	}
	return nil
}

// Get returns a copy of the value under key, or ErrNotFound.
func (d *DB) Get(bucket, key string) ([]byte, error) {
	var out []byte
	err := d.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return ErrNotFound
		}
		v := b.Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", bucket, key, err)
	}
	return out, nil
}

// ForEach calls fn for every key of bucket in key order with a copy of the
// value. A missing bucket has no keys.
func (d *DB) ForEach(bucket string, fn func(key string, value []byte) error) error {
	return d.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			return fn(string(k), append([]byte(nil), v...))
		})
	})
}
