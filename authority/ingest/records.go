package ingest

import (
	"strconv"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// checkRecords is what the authority checks of each record on its own,
// beyond ledger.Open's structure checks: the window has ended by now
// (within skew), the GPU time fits in the window, and the id is the
// record's identity (the id is the dedup key: a made-up id could store
// the same usage twice).
func checkRecords(b *protocol.Batch, now time.Time, skew time.Duration) *protocol.Problem {
	latest := now.Add(skew)
	var notEnded time.Time // the latest window end after now, within skew
	for i := range b.Records {
		r := &b.Records[i]
		if r.WindowEnd.After(latest) {
			return protocol.NewProblem(protocol.FutureWindow, "record seq "+u(r.Seq)+": window_end "+
				r.WindowEnd.UTC().Format(time.RFC3339Nano)+" is after the authority's now + "+skew.String())
		}
		if id := r.ComputeID(); r.ID != id {
			return protocol.NewProblem(protocol.InvalidRecord, "record seq "+u(r.Seq)+": id "+r.ID+" is not the record's identity "+id)
		}
		if r.Kind == protocol.KindInventory {
			continue // an instant: no window to bound, nothing to pay
		}
		if r.WindowEnd.After(now) && r.WindowEnd.After(notEnded) {
			notEnded = r.WindowEnd
		}
		win := r.WindowEnd.UnixMilli() - r.WindowStart.UnixMilli()
		if win <= 0 {
			// Windows are whole milliseconds; a shorter one has no length to bound gpu_ms.
			return protocol.NewProblem(protocol.InvalidRecord, "record seq "+u(r.Seq)+": window shorter than 1 ms")
		}
		if r.GPUMillis > win {
			return protocol.NewProblem(protocol.OverWallTime, "record seq "+u(r.Seq)+": gpu_ms "+i64(r.GPUMillis)+
				" exceeds its window of "+i64(win)+" ms")
		}
	}
	if !notEnded.IsZero() {
		// Within the skew: a node whose clock runs a little ahead is not
		// refused, only told to send again once the window has ended here.
		wait := notEnded.Sub(now)
		p := protocol.NewProblem(protocol.WindowNotEnded, "a record's window ends at "+
			notEnded.UTC().Format(time.RFC3339Nano)+", after the authority's now; nothing is paid for time that has not passed")
		p.RetryAfter = max(wait.Truncate(time.Second)+time.Second, time.Second)
		return p
	}
	return nil
}

func u(n uint64) string  { return strconv.FormatUint(n, 10) }
func i64(n int64) string { return strconv.FormatInt(n, 10) }
