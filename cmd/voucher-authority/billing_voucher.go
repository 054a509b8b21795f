package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

func cmdVoucherIssue(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("voucher issue", flag.ContinueOnError)
	db := dbFlag(fs)
	id := fs.String("id", "", "voucher id")
	program := fs.String("program", "", "program id")
	holder := fs.String("holder", "", "entity id of the holder (fixed: vouchers are not transferable)")
	faceYuan := fs.String("face-yuan", "", "face value in CNY, at most 2 decimals")
	faceFen := fs.String("face-fen", "", "face value in fen")
	issued := fs.String("issued", "", "valid from TIME (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	expires := fs.String("expires", "", "valid until TIME, exclusive (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "id": *id,
		"program": *program, "holder": *holder, "issued": *issued, "expires": *expires}) {
		return exitUsage
	}
	v := billing.Voucher{ID: *id, Program: *program, Holder: *holder}
	var err error
	if v.Face, err = moneyFlags("face-yuan", *faceYuan, "face-fen", *faceFen); err == nil {
		if v.Issued, err = timeFlag("issued", *issued); err == nil {
			v.Expires, err = timeFlag("expires", *expires)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
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
}

func cmdVoucherList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return listCommand[billing.Voucher]{
		name: "voucher list", filter: "holder", filterHelp: "only this entity's vouchers",
		load: func(st *store.Store, holder string) ([]billing.Voucher, error) {
			return st.Vouchers(ctx, holder)
		},
		header: []string{"id", "program", "holder", "face CNY", "balance CNY", "issued (UTC+8)", "expires", "status"},
		row: func(v billing.Voucher) []string {
			return []string{v.ID, v.Program, v.Holder, billing.FormatYuan(v.Face),
				billing.FormatYuan(v.Balance), formatTime(v.Issued), formatTime(v.Expires), v.Status}
		},
	}.run(ctx, args, stdout, stderr)
}

// voucherStatusOf maps the status commands to statuses.
var voucherStatusOf = map[string]string{
	"suspend": billing.VoucherSuspended,
	"resume":  billing.VoucherActive,
	"revoke":  billing.VoucherRevoked,
}

func cmdVoucherStatus(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("voucher "+verb, flag.ContinueOnError)
	db := dbFlag(fs)
	id := fs.String("id", "", "voucher id")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "id": *id}) {
		return exitUsage
	}
	status := voucherStatusOf[verb]
	return withBilling(ctx, *db, stderr, func(st *store.Store) error {
		if err := st.SetVoucherStatus(ctx, *id, status); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "voucher %s is %s\n", *id, status)
		return nil
	})
}
