package server

import "time"

// HoldIngestSlot takes one of s's ingest slots (admission.go), waiting
// for it, until the returned function is called.
func HoldIngestSlot(s *Server) (release func()) {
	s.adm.slots <- struct{}{}
	return s.adm.release
}

// SetIngestPace sets the admitter's measured time between finished
// ingests (admission.go), as a saturated authority would have measured it.
func SetIngestPace(s *Server, d time.Duration) {
	s.adm.mu.Lock()
	s.adm.pace = d
	s.adm.mu.Unlock()
}
