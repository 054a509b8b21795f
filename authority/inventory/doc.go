// Package inventory is the authority's GPU model table: for each GPU model
// the authority pays for, the names NVML gives it, its MIG slices and
// profiles, the power at or below which it did no work (the idle floor)
// and its maximum board power. The table is models.yaml, embedded and
// validated when the package loads; docs/models.md describes it.
//
// Its one job is to answer, from facts the authority holds itself, what a
// model can do: which model an NVML name is (Lookup), what share of the
// GPU a MIG profile is (Model.Slice), whether a MIG layout fits the GPU
// (Model.CheckLayout), the most energy a record may carry
// (Model.MaxEnergyMillijoules) and whether a record's energy says the GPU
// was idle (Model.AtOrBelowIdle).
//
// Invariants:
//   - The table is read-only once loaded: Lookup and Models hand out
//     copies, so no caller can change what another one sees.
//   - No two models share an id or an NVML name (compared trimmed and
//     case-insensitively), so a name maps to at most one model.
//   - Every MIG model's largest profile takes the whole GPU (slices ==
//     total slices), and a profile's slices times its instance limit never
//     exceeds the GPU's slices.
//   - Power checks use integer arithmetic only and cannot overflow.
//
// It must never take a figure from a node (a record's slice share, a
// model's power or profile table as a provider declares it): the node's
// word is what this table checks, never what it holds. It decides nothing
// about money and reads no store; callers turn its answers into refusals
// or reviews.
package inventory
