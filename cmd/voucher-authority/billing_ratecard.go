package main

import (
	"context"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

func rateCardAddCmd() *cobra.Command {
	d := dbLeaf("add", "add a rate card: a provider's price per GPU-hour of a model")
	fs := d.Flags()
	id := fs.String("id", "", "rate card id")
	provider := fs.String("provider", "", "provider")
	model := fs.String("model", "", `GPU model as the records name it (e.g. "NVIDIA H100 80GB HBM3")`)
	profile := fs.String("mig-profile", "", "MIG profile (e.g. 3g.40gb); empty: the whole GPU")
	yuan := fs.String("price-yuan-per-hour", "", "price per GPU-hour in CNY, at most 2 decimals")
	fen := fs.String("price-fen-per-hour", "", "price per GPU-hour in fen")
	from := fs.String("from", "", "in force from TIME (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	to := fs.String("to", "", "in force until TIME, exclusive; empty: open (end it later with ratecard end)")
	required(d.Command, "id", "provider", "model", "from")
	var c billing.RateCard
	return d.run(withBilling, func() (err error) {
		c = billing.RateCard{ID: *id, Provider: *provider, Model: *model, MIGProfile: *profile}
		if c.PricePerHour, err = moneyFlags("price-yuan-per-hour", *yuan, "price-fen-per-hour", *fen); err == nil {
			if c.ValidFrom, err = timeFlag("from", *from); err == nil && *to != "" {
				c.ValidTo, err = timeFlag("to", *to)
			}
		}
		return err
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		until := "open-ended"
		if !c.ValidTo.IsZero() {
			until = "until " + formatTime(c.ValidTo)
		}
		return done(st.AddRateCard(ctx, c), stdout, "added rate card %s: %s %s%s at %s CNY per GPU-hour from %s (UTC+8), %s\n", c.ID, c.Provider,
			c.Model, profileSuffix(c.MIGProfile), billing.FormatYuan(c.PricePerHour), formatTime(c.ValidFrom), until)
	})
}

func profileSuffix(p string) string {
	if p == "" {
		return ""
	}
	return " " + p
}

func rateCardEndCmd() *cobra.Command {
	d := dbLeaf("end", "end an open rate card")
	id := d.Flags().String("id", "", "rate card id")
	at := d.Flags().String("at", "", "end TIME, exclusive: a new card may start then (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	required(d.Command, "id", "at")
	var t time.Time
	return d.run(withBilling, func() (err error) {
		t, err = timeFlag("at", *at)
		return err
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		return done(st.EndRateCard(ctx, *id, t), stdout, "rate card %s ends at %s (UTC+8)\n", *id, formatTime(t))
	})
}

func rateCardListCmd() *cobra.Command {
	return listCommand[billing.RateCard]{
		use: "list", short: "list the rate cards", filter: "provider", filterHelp: "only this provider's cards",
		load: func(ctx context.Context, st *store.Store, provider string) ([]billing.RateCard, error) {
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
	}.command()
}
