package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// serve starts the emulator, seeds its users, writes the -addr-file and
// serves until ctx is done. It prints the URL and the user names, never the
// keys, to stdout.
func serve(ctx context.Context, cfg config, logger *log.Logger, stdout io.Writer) error {
	opts := aisquaretest.Options{
		AccessTTL:     cfg.accessTTL,
		RefreshTTL:    cfg.refreshTTL,
		RotateRefresh: cfg.rotateRefresh,
	}
	if !cfg.quiet {
		opts.Logger = logger
	}

	srv, err := aisquaretest.StartServer(cfg.listen, opts)
	if err != nil {
		return err
	}
	defer srv.Close()

	var userNames []string
	for _, seed := range cfg.users {
		id := srv.AddUser(seed.name, seed.apiKey)
		userNames = append(userNames, fmt.Sprintf("%s (user_id %d)", seed.name, id))
	}

	if cfg.addrFile != "" {
		if err := writeFileAtomically(cfg.addrFile, srv.URL); err != nil {
			return fmt.Errorf("failed to write -addr-file: %w", err)
		}
		defer removeAddrFile(cfg.addrFile, logger)
	}

	fmt.Fprintf(stdout, "aisquare-emulator listening on %s\n", srv.URL)
	if len(userNames) == 0 {
		fmt.Fprintln(stdout, "users: none; add one with -api-key NAME=KEY or POST /_emulator/users")
	} else {
		fmt.Fprintf(stdout, "users: %s\n", strings.Join(userNames, ", "))
	}

	<-ctx.Done()
	logger.Print("stopping on signal")
	srv.Close()
	logger.Print("stopped")
	return nil
}

// writeFileAtomically writes content to path through a temporary file in
// the same folder, so that a script polling path never reads it half
// written.
func writeFileAtomically(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".aisquare-emulator-addr-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename

	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// removeAddrFile removes the -addr-file at exit, so that scripts do not read
// the URL of a stopped emulator.
func removeAddrFile(path string, logger *log.Logger) {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		logger.Printf("failed to remove -addr-file: %v", err)
	}
}
