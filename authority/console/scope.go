package console

import (
	"context"
	"errors"
	"net/http"

	"github.com/gpumeter/gpumeter/authority/store"
)

// viewer is who a session signed in as. What each role may see is decided
// here and nowhere else: pages ask may() before reading one party's
// records, and pass scope() to every listing.
type viewer struct {
	Role  string // store.RoleOperator, RoleProvider or RoleEntity
	Scope string // the provider or the entity; "" for an operator
	CSRF  string
	Lang  string
}

func (v viewer) operator() bool { return v.Role == store.RoleOperator }

// scope is the store's filter for the viewer's listings.
func (v viewer) storeScope() store.ConsoleScope {
	switch v.Role {
	case store.RoleProvider:
		return store.ConsoleScope{Provider: v.Scope}
	case store.RoleEntity:
		return store.ConsoleScope{Entity: v.Scope}
	}
	return store.ConsoleScope{}
}

// The kinds of things a page shows.
const (
	kindOperatorOnly = "operator" // programs, reviews, the audit trail, all entities
	kindProvider     = "provider"
	kindEntity       = "entity"
	kindNode         = "node"    // the node's provider's
	kindVoucher      = "voucher" // the voucher's holder's
	kindRecord       = "record"  // the record's provider's and its charge's entity's
)

// errNotVisible: the viewer may not see the thing (403, never saying
// whether it exists).
var errNotVisible = errors.New("not visible to this sign-in")

// may reports whether v may see the thing of kind and id; nodes and
// vouchers are looked up to find their owner.
func (c *Console) may(ctx context.Context, v viewer, kind, id string) error {
	if v.operator() {
		return nil
	}
	owner := ""
	switch kind {
	case kindProvider, kindEntity:
		owner = id
	case kindNode:
		n, err := c.st.Node(ctx, id)
		if err != nil {
			return errNotVisible
		}
		kind, owner = kindProvider, n.Provider
	case kindVoucher:
		vs, err := c.st.Vouchers(ctx, v.Scope)
		if err != nil || v.Role != store.RoleEntity {
			return errNotVisible
		}
		for _, vo := range vs {
			if vo.ID == id {
				return nil
			}
		}
		return errNotVisible
	case kindRecord:
		rec, err := c.st.ConsoleRecordByID(ctx, id)
		if err != nil {
			return errNotVisible
		}
		if (v.Role == store.RoleProvider && rec.Provider == v.Scope) || (v.Role == store.RoleEntity && rec.Billed && rec.Entity == v.Scope) {
			return nil
		}
		return errNotVisible
	default:
		return errNotVisible
	}
	if kind == v.Role && owner == v.Scope {
		return nil
	}
	return errNotVisible
}

// operatorOnly runs h for a program officer only: the pages of every
// party's records (programs, the review queue and its decisions, the audit
// trail).
func (c *Console) operatorOnly(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, v viewer) {
		if c.may(r.Context(), v, kindOperatorOnly, "") != nil {
			c.forbidden(w, r, v)
			return
		}
		h(w, r, v)
	}
}

// pathVisible is the page's {id}, if v may see it; else it answers 403.
func (c *Console) pathVisible(w http.ResponseWriter, r *http.Request, v viewer, kind string) (string, bool) {
	id := r.PathValue("id")
	if c.may(r.Context(), v, kind, id) != nil {
		c.forbidden(w, r, v)
		return id, false
	}
	return id, true
}
