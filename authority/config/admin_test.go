package config

import (
	"strings"
	"testing"
)

func TestAdmin(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // substring; "" means valid
		want    Admin
	}{
		{name: "off by default", yaml: "", want: defaultAdmin()},
		{name: "listen with the default token file", yaml: "admin:\n  listen: 127.0.0.1:8444\n",
			want: Admin{Listen: "127.0.0.1:8444", TokenFile: "/etc/voucher-authority/admin.token"}},
		{name: "both set", yaml: "admin:\n  listen: '[::1]:8444'\n  token_file: /run/secrets/admin\n",
			want: Admin{Listen: "[::1]:8444", TokenFile: "/run/secrets/admin"}},
		{name: "token file without listen stays off", yaml: "admin:\n  token_file: /x\n", want: Admin{TokenFile: "/x"}},
		{name: "listen without port", yaml: "listen: :1\nadmin:\n  listen: localhost\n", wantErr: `cfg.yaml:3: admin.listen: "localhost" is not host:port`},
		{name: "listen with a bad port", yaml: "admin:\n  listen: 127.0.0.1:http\n", wantErr: "cfg.yaml:2: admin.listen"},
		{name: "listen on a port number too large", yaml: "admin:\n  listen: 127.0.0.1:65536\n", wantErr: "no valid port"},
		{name: "listen with the token file emptied", yaml: "admin:\n  listen: 127.0.0.1:8444\n  token_file: \"\"\n",
			wantErr: "cfg.yaml:3: admin.token_file: must be set"},
		{name: "unknown key", yaml: "admin:\n  token: abc\n", wantErr: "cfg.yaml:2: field token not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("cfg.yaml", []byte(tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Admin != tc.want {
				t.Errorf("admin = %+v, want %+v", c.Admin, tc.want)
			}
		})
	}
}
