package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/gpumeter/gpumeter/internal/fsutil"
)

// Compaction thresholds for Open: a bbolt file never shrinks, so after a
// long outage (a large backlog, then acknowledged) it keeps its peak size.
const (
	compactMinFileBytes = 64 << 20 // smaller files are not worth a rewrite
	compactRatio        = 4        // file size over live bytes that triggers it
	compactTxMaxBytes   = 64 << 20 // bolt.Compact commits every this many bytes
)

// bloated reports whether the file is much larger than its live data.
func (s *Spool) bloated() bool {
	fi, err := os.Stat(s.opts.Path)
	if err != nil || fi.Size() < compactMinFileBytes {
		return false
	}
	s.mu.Lock()
	live := s.st.storedBytes()
	s.mu.Unlock()
	return fi.Size() > compactRatio*(live+1<<20)
}

// Compact rewrites the file with only its live data (bolt.Compact into a
// temporary file in the same directory, fsynced, then renamed over the
// spool). A crash at any point leaves either the old or the new file
// complete; a stale temporary file is removed on the next attempt.
func (s *Spool) Compact(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.db == nil {
		return ErrClosed
	}
	// Not renameio, unlike the repository's other atomic writes: bbolt
	// opens its file by name and owns it (flock, mmap, its own fsyncs), so
	// the temporary file must be a path bolt.Open creates, not the
	// *os.File a renameio.PendingFile hands out. The steps are the same:
	// write a temporary file beside the spool, fsync, rename, sync the
	// directory.
	tmp := s.opts.Path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("compact spool %s: remove stale %s: %w", s.opts.Path, tmp, err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("compact spool %s: create %s: %w", s.opts.Path, tmp, err)
	}
	// Every bolt.Compact commit is fsynced (NoSync false).
	if err := bolt.Compact(dst, s.db, compactTxMaxBytes); err != nil {
		_ = dst.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("compact spool %s: %w", s.opts.Path, err)
	}
	if err := dst.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("compact spool %s: close %s: %w", s.opts.Path, tmp, err)
	}
	// Between the rename and the reopen below the new file is unlocked; a
	// second agent starting in that instant would take it, and the reopen
	// then fails with ErrLocked and leaves this Spool closed.
	if err := os.Rename(tmp, s.opts.Path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("compact spool %s: replace: %w", s.opts.Path, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(s.opts.Path)); err != nil {
		return fmt.Errorf("compact spool %s: sync directory: %w", s.opts.Path, err)
	}
	if err := s.db.Close(); err != nil {
		s.db = nil
		return fmt.Errorf("compact spool %s: close old file: %w", s.opts.Path, err)
	}
	// The state is unchanged: the new file holds the same committed data.
	s.db, err = openDB(s.opts.Path)
	if err != nil {
		s.db = nil
		return fmt.Errorf("compact spool %s: reopen: %w", s.opts.Path, err)
	}
	return nil
}
