// Command aisquare-emulator serves an emulator of the AISquare token API on
// a loopback address, for developing and testing the Vault plugin without
// AISquare. See package aisquaretest for the endpoints and the /_emulator/
// controls. Run it with -h for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run serves the emulator until ctx is done and returns the exit status:
// 0 after a clean stop or -h, 1 when serving fails, 2 for invalid flags.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "aisquare-emulator: %v\nRun aisquare-emulator -h for usage.\n", err)
		return 2
	}

	logger := log.New(stderr, "aisquare-emulator: ", log.LstdFlags)
	if err := serve(ctx, cfg, logger, stdout); err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}
