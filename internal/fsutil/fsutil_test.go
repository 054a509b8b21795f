package fsutil_test

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/gpumeter/gpumeter/internal/fsutil"
)

func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := fsutil.SyncDir(dir); err != nil {
		t.Errorf("SyncDir(%s): %v", dir, err)
	}
	missing := filepath.Join(dir, "missing")
	if err := fsutil.SyncDir(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SyncDir(%s) = %v, want a not-exist error", missing, err)
	}
}
