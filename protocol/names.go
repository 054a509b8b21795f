package protocol

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxNameBytes bounds a name (tenant, node, provider, entity, key id).
const MaxNameBytes = 128

// CheckName is the one rule for the names that cross the wire or the
// operator's CLI: tenants, nodes, providers and entities. A name is 1 to
// MaxNameBytes bytes of valid UTF-8; it may hold letters, marks, digits,
// punctuation, symbols and inner spaces of any script (a tenant may be
// named in Chinese), but no control character (NUL included), no format
// character (the bidirectional overrides and isolates, zero-width joiners
// and spaces: they make two names look alike or reorder what an operator
// reads), no line or paragraph separator, no U+FFFD, and no leading or
// trailing white space. what names the field in the error.
func CheckName(what, s string) error { return CheckText(what, s, MaxNameBytes) }

// CheckText is CheckName's character rule for a label of at most maxBytes
// (an issuer, a program's name).
func CheckText(what, s string, maxBytes int) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > maxBytes:
		return fmt.Errorf("%s is %d bytes, at most %d", what, len(s), maxBytes)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	for i, r := range s {
		var bad string
		switch {
		case r == utf8.RuneError:
			bad = "U+FFFD"
		case unicode.IsControl(r):
			bad = "a control character"
		case unicode.In(r, unicode.Cf):
			bad = "a format (bidirectional or invisible) character"
		case unicode.In(r, unicode.Zl, unicode.Zp):
			bad = "a line separator"
		case unicode.IsSpace(r) && (i == 0 || i+utf8.RuneLen(r) == len(s)):
			bad = "leading or trailing white space"
		case unicode.IsSpace(r) && r != ' ':
			bad = "white space other than a plain space"
		case !unicode.IsPrint(r) && r != ' ':
			bad = "a character that is not printable"
		}
		if bad != "" {
			return fmt.Errorf("%s %+q has %s (U+%04X) at byte %d", what, s, bad, r, i)
		}
	}
	return nil
}

// ErrNotCanonical marks a UUID that is not in its canonical form.
var ErrNotCanonical = errors.New("not a canonical UUID")
