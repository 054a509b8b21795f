package console

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// Every message key the templates and pages use has both languages.
func TestMessagesComplete(t *testing.T) {
	keys := map[string]bool{}
	tmplKey := regexp.MustCompile(`\{\{t "([^"]+)"\}\}`)
	_ = fs.WalkDir(files, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := fs.ReadFile(files, path)
		for _, m := range tmplKey.FindAllStringSubmatch(string(data), -1) {
			keys[m[1]] = true
		}
		return nil
	})
	for _, r := range []string{"operator", "provider", "entity"} {
		keys["role."+r] = true
	}
	if len(keys) < 10 {
		t.Fatalf("found only %d keys in the templates", len(keys))
	}
	for k := range keys {
		m, ok := messages[k]
		if !ok || m[0] == "" || m[1] == "" {
			t.Errorf("message %q lacks a language", k)
		}
	}
	for k, m := range messages {
		if strings.TrimSpace(m[1]) == m[0] && k != "gpus" {
			t.Errorf("message %q: the Chinese text is the English one", k)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{yuan(billing.Fen(123456)), "¥1234.56"},
		{yuan(billing.Fen(5)), "¥0.05"},
		{hours(3_600_000), "1.00"},
		{hours(5_400_000), "1.50"},
		{hours(17_999), "0.00"},
		{hours(18_000), "0.01"},
		{csvSafe("=cmd()"), "'=cmd()"},
		{csvSafe("-12"), "-12"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
