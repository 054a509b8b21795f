package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

func voucherIssueCmd() *cobra.Command {
	c := leaf("issue", "issue a voucher of a program to an entity")
	db := dbFlag(c)
	fs := c.Flags()
	id := fs.String("id", "", "voucher id")
	program := fs.String("program", "", "program id")
	holder := fs.String("holder", "", "entity id of the holder (fixed: vouchers are not transferable)")
	faceYuan := fs.String("face-yuan", "", "face value in CNY, at most 2 decimals")
	faceFen := fs.String("face-fen", "", "face value in fen")
	issued := fs.String("issued", "", "valid from TIME (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	expires := fs.String("expires", "", "valid until TIME, exclusive (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	required(c, "id", "program", "holder", "issued", "expires")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		v := billing.Voucher{ID: *id, Program: *program, Holder: *holder}
		var err error
		if v.Face, err = moneyFlags("face-yuan", *faceYuan, "face-fen", *faceFen); err == nil {
			if v.Issued, err = timeFlag("issued", *issued); err == nil {
				v.Expires, err = timeFlag("expires", *expires)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "voucher issue: %v\n", err)
			return exitUsage
		}
		return withBilling(ctx, *db, stderr, func(st *store.Store) error {
			if err := st.IssueVoucher(ctx, v); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "issued voucher %s of program %s to %s: %s CNY, valid %s to %s (UTC+8)\n",
				v.ID, v.Program, v.Holder, billing.FormatYuan(v.Face), formatTime(v.Issued), formatTime(v.Expires))
			return nil
		})
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
	c := leaf(verb, "make a voucher "+status)
	db := dbFlag(c)
	id := c.Flags().String("id", "", "voucher id")
	required(c, "id")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		return withBilling(ctx, *db, stderr, func(st *store.Store) error {
			if err := st.SetVoucherStatus(ctx, *id, status); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "voucher %s is %s\n", *id, status)
			return nil
		})
	})
}
