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
		{name: "listen without port", yaml: "listen: 127.0.0.1:1\nadmin:\n  listen: localhost\n", wantErr: `cfg.yaml:3: admin.listen: "localhost" is not host:port`},
		{name: "listen with a bad port", yaml: "admin:\n  listen: 127.0.0.1:http\n", wantErr: "cfg.yaml:2: admin.listen"},
		{name: "listen on a port number too large", yaml: "admin:\n  listen: 127.0.0.1:65536\n", wantErr: "no valid port"},
		{name: "listen with the token file emptied", yaml: "admin:\n  listen: 127.0.0.1:8444\n  token_file: \"\"\n",
			wantErr: "cfg.yaml:3: admin.token_file: must be set"},
		{name: "plain HTTP off loopback", yaml: "admin:\n  listen: 0.0.0.0:8444\n",
			wantErr: `cfg.yaml:2: admin.listen: "0.0.0.0:8444" is not a loopback address`},
		{name: "plain HTTP on every interface", yaml: "admin:\n  listen: :8444\n", wantErr: "not a loopback address"},
		{name: "TLS off loopback", yaml: "tls:\n  cert_file: /c.pem\n  key_file: /k.pem\nadmin:\n  listen: :8444\n",
			want: Admin{Listen: ":8444", TokenFile: "/etc/voucher-authority/admin.token"}},
		{name: "unknown key", yaml: "admin:\n  token: abc\n", wantErr: "cfg.yaml:2: admin.token: unknown field"},
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

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8444": true, "[::1]:8444": true, "localhost:8444": true, "127.1.2.3:1": true,
		"0.0.0.0:8444": false, ":8444": false, "10.0.0.1:8444": false, "example.com:8444": false, "bad": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
