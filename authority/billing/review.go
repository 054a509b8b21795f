package billing

// Review states of a charge (docs/billing.md, "Held subsidies"): whether
// its subsidy is paid. Ingest holds the subsidy of usage whose energy or
// utilization says the GPU did no work; an operator approves or rejects it.
const (
	// ReviewNone: paid as billed.
	ReviewNone = ""
	// ReviewHeld: the vouchers paid it, but it waits for an operator: the
	// provider cannot claim it, and the tenant does not owe it.
	ReviewHeld = "held"
	// ReviewApproved: paid, after review.
	ReviewApproved = "approved"
	// ReviewRejected: the grants went back to the vouchers; subsidy 0.
	ReviewRejected = "rejected"
)

// Paid reports whether a subsidy in review state r counts as paid:
// claimable by the provider, and taken off what the tenant owes.
func Paid(review string) bool { return review == ReviewNone || review == ReviewApproved }
