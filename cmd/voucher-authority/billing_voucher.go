package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

func voucherIssueCmd() *cobra.Command {
	d := dbLeaf("issue", "issue a voucher of a program to an entity")
	fs := d.Flags()
	id := fs.String("id", "", "voucher id")
	program := fs.String("program", "", "program id")
	holder := fs.String("holder", "", "entity id of the holder (fixed: vouchers are not transferable)")
	faceYuan := fs.String("face-yuan", "", "face value in CNY, at most 2 decimals")
	faceFen := fs.String("face-fen", "", "face value in fen")
	issued := fs.String("issued", "", "valid from TIME (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	expires := fs.String("expires", "", "valid until TIME, exclusive (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	required(d.Command, "id", "program", "holder", "issued", "expires")
	var v billing.Voucher
	return d.run(withBilling, func() (err error) {
		v = billing.Voucher{ID: *id, Program: *program, Holder: *holder}
		if v.Face, err = moneyFlags("face-yuan", *faceYuan, "face-fen", *faceFen); err == nil {
			if v.Issued, err = timeFlag("issued", *issued); err == nil {
				v.Expires, err = timeFlag("expires", *expires)
			}
		}
		return err
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		return done(st.IssueVoucher(ctx, v), stdout, "issued voucher %s of program %s to %s: %s CNY, valid %s to %s (UTC+8)\n",
			v.ID, v.Program, v.Holder, billing.FormatYuan(v.Face), formatTime(v.Issued), formatTime(v.Expires))
	})
}

func voucherListCmd() *cobra.Command {
	return listCommand[billing.Voucher]{
		use: "list", short: "list the vouchers and their balances", filter: "holder", filterHelp: "only this entity's vouchers",
		load: func(ctx context.Context, st *store.Store, holder string) ([]billing.Voucher, error) {
			return st.Vouchers(ctx, holder)
		},
		header: []string{"id", "program", "holder", "face CNY", "balance CNY", "issued (UTC+8)", "expires", "status"},
		row: func(v billing.Voucher) []string {
			return []string{v.ID, v.Program, v.Holder, billing.FormatYuan(v.Face),
				billing.FormatYuan(v.Balance), formatTime(v.Issued), formatTime(v.Expires), v.Status}
		},
	}.command()
}

// voucherStatusOf maps the status commands to statuses.
var voucherStatusOf = map[string]string{
	"suspend": billing.VoucherSuspended,
	"resume":  billing.VoucherActive,
	"revoke":  billing.VoucherRevoked,
}

func voucherStatusCmd(verb string) *cobra.Command {
	status := voucherStatusOf[verb]
	return idChangeCmd(verb, "make a voucher "+status, "id", "voucher id", withBilling,
		func(ctx context.Context, st *store.Store, id string) (string, error) {
			return "voucher " + id + " is " + status, st.SetVoucherStatus(ctx, id, status)
		})
}
