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
// The token file must be mode 0600 or stricter; that, and that a listener
// without TLS is on a loopback address (the token would otherwise cross
// the network in clear), are checked when serve starts, where the file
// and the tls section are at hand.
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
func (a Admin) validate() []invalid {
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
	if a.TokenFile == "" {
		bad("must be set when admin.listen is set (a file holding the operators' bearer token, mode 0600)", "token_file")
	}
	return out
}
