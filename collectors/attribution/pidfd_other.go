//go:build !linux

package attribution

// newPidfdWatcher: pidfds are Linux's; elsewhere every poll checks start
// times.
func newPidfdWatcher(string) *pidfdWatcher { return nil }

type pidfdWatcher struct{ ProcessWatcher }

func (*pidfdWatcher) releaseWhenUnreachable(*Attributor) {}
