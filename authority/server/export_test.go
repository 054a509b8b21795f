package server

// HoldIngestSlot takes one of s's ingest slots (admission.go), waiting
// for it, until the returned function is called.
func HoldIngestSlot(s *Server) (release func()) {
	s.adm.slots <- struct{}{}
	return s.adm.release
}
