package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/server"
)

// Money and ratios arrive as decimal strings and become integers without
// floating point: yuan with at most 2 decimals are whole fen, percentages
// with at most 2 decimals are whole basis points.

// parseDecimal parses s, a decimal with at most places decimals and an
// optional leading '-', as an integer scaled by 10^places.
func parseDecimal(s string, places int) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	digits := strings.TrimPrefix(s, "-")
	whole, frac, hasDot := strings.Cut(digits, ".")
	if whole == "" || (hasDot && frac == "") || !allDigits(whole) || !allDigits(frac) {
		return 0, fmt.Errorf("%q is not a decimal number", s)
	}
	if len(frac) > places {
		return 0, fmt.Errorf("%q has more than %d decimals", s, places)
	}
	frac += strings.Repeat("0", places-len(frac))
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	scale := int64(1)
	for range places {
		scale *= 10
	}
	var f int64
	if frac != "" {
		f, _ = strconv.ParseInt(frac, 10, 64)
	}
	if w > (math.MaxInt64-f)/scale {
		return 0, fmt.Errorf("%q is too large", s)
	}
	v := w*scale + f
	if neg {
		v = -v
	}
	return v, nil
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseYuan parses an amount of yuan ("12", "12.5", "0.07") into fen.
func parseYuan(s string) (billing.Fen, error) {
	v, err := parseDecimal(s, 2)
	return billing.Fen(v), err
}

// parsePercent parses a percentage ("50", "12.5") into basis points.
func parsePercent(s string) (billing.BasisPoints, error) {
	v, err := parseDecimal(s, 2)
	return billing.BasisPoints(v), err
}

// moneyFlags resolves a pair of exclusive flags, one in yuan and one in
// whole fen, to fen; exactly one must be given and it must not be
// negative. The error names the flag.
func moneyFlags(yuanName, yuan, fenName, fen string) (billing.Fen, error) {
	var (
		v           billing.Fen
		err         error
		name, given string
	)
	switch {
	case yuan != "" && fen != "":
		return 0, fmt.Errorf("--%s and --%s are exclusive: give one", yuanName, fenName)
	case yuan != "":
		name, given = yuanName, yuan
		v, err = parseYuan(yuan)
	case fen != "":
		name, given = fenName, fen
		var n int64
		n, err = parseDecimal(fen, 0)
		v = billing.Fen(n)
	default:
		return 0, fmt.Errorf("--%s or --%s is required", yuanName, fenName)
	}
	if err != nil {
		return 0, fmt.Errorf("--%s: %w", name, err)
	}
	if v < 0 {
		return 0, fmt.Errorf("--%s: %s is negative", name, given)
	}
	return v, nil
}

// timeFlag parses a TIME flag (RFC 3339 or YYYY-MM-DD in China Standard
// Time); the error names the flag.
func timeFlag(name, s string) (time.Time, error) {
	t, err := server.ParseBillingTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s: %w", name, err)
	}
	return t, nil
}

// formatPercent prints basis points as a percentage ("50%", "12.5%").
func formatPercent(bp billing.BasisPoints) string {
	s := strconv.FormatInt(int64(bp)/100, 10)
	if r := int64(bp) % 100; r != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%02d", abs(r)), "0")
	}
	return s + "%"
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// formatTime prints a time in China Standard Time for tables ("" for the
// zero time: open).
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(server.ChinaStandardTime).Format("2006-01-02 15:04")
}

// parseCategory parses NAME=FROM..TO (TO optional: open) of --category.
func parseCategory(spec string) (billing.Category, error) {
	name, span, ok := strings.Cut(spec, "=")
	if !ok || name == "" {
		return billing.Category{}, errors.New("want NAME=FROM..TO, or NAME=FROM.. for an open end")
	}
	from, to, _ := strings.Cut(span, "..")
	c := billing.Category{Name: name}
	var err error
	if c.From, err = server.ParseBillingTime(from); err != nil {
		return c, fmt.Errorf("from: %w", err)
	}
	if to != "" {
		if c.To, err = server.ParseBillingTime(to); err != nil {
			return c, fmt.Errorf("to: %w", err)
		}
	}
	return c, nil
}
