package store

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPutGetDeleteAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "meta.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Put("sandboxes", "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := db.Batch([]Op{
		{Bucket: "sandboxes", Key: "b", Value: []byte("2")},
		{Bucket: "containers", Key: "c", Value: []byte("3")},
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Delete("sandboxes", "missing"); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := map[string]string{}
	if err := db.ForEach("sandboxes", func(k string, v []byte) error {
		got[k] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a": "1", "b": "2"}, got); diff != "" {
		t.Errorf("sandboxes after reopen (-want +got):\n%s", diff)
	}
	v, err := db.Get("containers", "c")
	if err != nil || string(v) != "3" {
		t.Errorf("Get containers/c = %q, %v; want 3", v, err)
	}
	if err := db.Delete("containers", "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get("containers", "c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	if _, err := db.Get("nobucket", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get from missing bucket: err = %v, want ErrNotFound", err)
	}
	if err := db.ForEach("nobucket", func(string, []byte) error { t.Error("called"); return nil }); err != nil {
		t.Error(err)
	}
}

func TestBatchIsAtomic(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// An empty bucket name makes bbolt fail the second op; the first must
	// not be visible afterwards.
	err = db.Batch([]Op{
		{Bucket: "ok", Key: "k", Value: []byte("v")},
		{Bucket: "", Key: "k", Value: []byte("v")},
	})
	if err == nil {
		t.Fatal("Batch with an invalid bucket succeeded")
	}
	if _, err := db.Get("ok", "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("first op of a failed batch is visible: %v", err)
	}
}
