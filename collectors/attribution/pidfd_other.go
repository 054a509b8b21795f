//go:build !linux

package attribution

// newPidfdWatcher: pidfds are Linux's; elsewhere every poll checks start
// times.
func newPidfdWatcher(string) *pidfdWatcher { return nil }

type pidfdWatcher struct{ ProcessWatcher }

func (*pidfdWatcher) releaseWhenUnreachable(*Attributor) {}

// PidfdStandIn: pidfds are Linux's; elsewhere there is none.
func PidfdStandIn(uint32) ProcessWatcher { return nil }
