package main

import (
	"fmt"
	"log/slog"

	"github.com/gpumeter/gpumeter/authority/config"
	"github.com/gpumeter/gpumeter/authority/server"
)

// readToken is the operators' token for reads on the nodes' API
// (server.Options.OperatorToken): the operator API's, when one is
// configured. Like the operator API, the nodes' API takes it only over TLS
// or on a loopback address, so that it never crosses a network in clear;
// elsewhere only nodes' signed reads are answered.
func readToken(cfg config.Config, log *slog.Logger) ([]byte, error) {
	if cfg.Admin.Listen == "" {
		return nil, nil
	}
	if cfg.TLS.CertFile == "" && !config.IsLoopback(cfg.Listen) {
		log.Info("the operators' token reads nothing on the nodes' API: it serves plain HTTP off loopback; only nodes' signed reads are answered",
			slog.String("listen", cfg.Listen))
		return nil, nil
	}
	tok, err := server.LoadAdminToken(cfg.Admin.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin.token_file: %w", err)
	}
	return tok, nil
}
