package pod

import (
	"fmt"
	"os"
	"path/filepath"
)

func containerDir(stateDir, domainName string) string {
	return filepath.Join(stateDir, "vms", domainName)
}

func removeDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}
