// Package fsutil holds the file-system steps that more than one package
// needs to make its files durable.
package fsutil

import "os"

// SyncDir makes the entries of dir durable: after a rename or a link into
// dir, fsync of the file alone does not persist the new name; the
// directory has to be synced too.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
