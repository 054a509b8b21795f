package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

func cmdRateCardAdd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ratecard add", flag.ContinueOnError)
	db := dbFlag(fs)
	id := fs.String("id", "", "rate card id")
	provider := fs.String("provider", "", "provider")
	model := fs.String("model", "", `GPU model as the records name it (e.g. "NVIDIA H100 80GB HBM3")`)
	profile := fs.String("mig-profile", "", "MIG profile (e.g. 3g.40gb); empty: the whole GPU")
	yuan := fs.String("price-yuan-per-hour", "", "price per GPU-hour in CNY, at most 2 decimals")
	fen := fs.String("price-fen-per-hour", "", "price per GPU-hour in fen")
	from := fs.String("from", "", "in force from TIME (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	to := fs.String("to", "", "in force until TIME, exclusive; empty: open (end it later with ratecard end)")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "id": *id,
		"provider": *provider, "model": *model, "from": *from}) {
		return exitUsage
	}
	c := billing.RateCard{ID: *id, Provider: *provider, Model: *model, MIGProfile: *profile}
	var err error
	if c.PricePerHour, err = moneyFlags("price-yuan-per-hour", *yuan, "price-fen-per-hour", *fen); err == nil {
		if c.ValidFrom, err = timeFlag("from", *from); err == nil && *to != "" {
			c.ValidTo, err = timeFlag("to", *to)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return exitUsage
	}
	return withBilling(ctx, *db, stderr, func(st *store.Store) error {
		if err := st.AddRateCard(ctx, c); err != nil {
			return err
		}
		until := "open-ended"
		if !c.ValidTo.IsZero() {
			until = "until " + formatTime(c.ValidTo)
		}
		fmt.Fprintf(stdout, "added rate card %s: %s %s%s at %s CNY per GPU-hour from %s (UTC+8), %s\n", c.ID, c.Provider,
			c.Model, profileSuffix(c.MIGProfile), billing.FormatYuan(c.PricePerHour), formatTime(c.ValidFrom), until)
		return nil
	})
}

func profileSuffix(p string) string {
	if p == "" {
		return ""
	}
	return " " + p
}

func cmdRateCardEnd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ratecard end", flag.ContinueOnError)
	db := dbFlag(fs)
	id := fs.String("id", "", "rate card id")
	at := fs.String("at", "", "end TIME, exclusive: a new card may start then (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "id": *id, "at": *at}) {
		return exitUsage
	}
	t, err := timeFlag("at", *at)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return exitUsage
	}
	return withBilling(ctx, *db, stderr, func(st *store.Store) error {
		if err := st.EndRateCard(ctx, *id, t); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rate card %s ends at %s (UTC+8)\n", *id, formatTime(t))
		return nil
	})
}

func cmdRateCardList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return listCommand[billing.RateCard]{
		name: "ratecard list", filter: "provider", filterHelp: "only this provider's cards",
		load: func(st *store.Store, provider string) ([]billing.RateCard, error) {
			return st.RateCards(ctx, provider)
		},
		header: []string{"id", "provider", "model", "MIG profile", "CNY/GPU-hour", "from (UTC+8)", "to"},
		row: func(c billing.RateCard) []string {
			to := "open"
			if !c.ValidTo.IsZero() {
				to = formatTime(c.ValidTo)
			}
			return []string{c.ID, c.Provider, c.Model, c.MIGProfile,
				billing.FormatYuan(c.PricePerHour), formatTime(c.ValidFrom), to}
		},
	}.run(ctx, args, stdout, stderr)
}
