package agent

// WakeReporter cuts the reporter's wait short, as if its backoff ended:
// tests need not wait RetryWaitMax after acting at the authority.
func WakeReporter(d *Daemon) {
	if d.delivery != nil && d.delivery.reporter != nil {
		d.delivery.reporter.Wake()
	}
}
