package config

// Admin is the operator API (programs, vouchers, rate cards, statements).
type Admin struct {
	// Listen is where the operator API is served; "" serves none.
	Listen string `yaml:"listen"`
}

func defaultAdmin() Admin { return Admin{} }

// validate checks the admin section; paths start with "admin".
func (a Admin) validate() []invalid { return nil }
