package config

import (
	"fmt"
	"net"
	"strconv"
)

// Admin is the operator API (entities, programs, vouchers, rate cards,
// statements, claims): a listener of its own, apart from the nodes' API,
// where every request carries the bearer token read from TokenFile.
//
// A listener without TLS must be on a loopback address (the token would
// otherwise cross the network in clear): a config error. The token file
// must be mode 0600 or stricter, checked when serve reads it.
type Admin struct {
	// Listen is where the operator API is served; "" serves none.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token operators send.
	TokenFile string `yaml:"token_file"`
}

func defaultAdmin() Admin {
	return Admin{TokenFile: "/etc/voucher-authority/admin.token"}
}

// validate checks the admin section; paths start with "admin".
// tls is the config's tls section, whose certificate the API reuses.
func (a Admin) validate(tls TLS) []invalid {
	var out []invalid
	bad := func(msg string, path ...string) { out = append(out, invalid{append([]string{"admin"}, path...), msg}) }
	if a.Listen == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(a.Listen); err != nil {
		bad(fmt.Sprintf("%q is not host:port", a.Listen), "listen")
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		bad(fmt.Sprintf("%q has no valid port (0-65535)", a.Listen), "listen")
	}
	if tls.CertFile == "" && !IsLoopback(a.Listen) {
		bad(fmt.Sprintf("%q is not a loopback address: without tls (cert_file, key_file) the operator API listens only on loopback, or its token would cross the network in clear", a.Listen), "listen")
	}
	if a.TokenFile == "" {
		bad("must be set when admin.listen is set (a file holding the operators' bearer token, mode 0600)", "token_file")
	}
	return out
}

// IsLoopback reports whether a host:port names a loopback address.
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
