// Command bench measures the request rate and latency of Vault paths with a
// fixed number of concurrent clients, and prints a Markdown table that
// compares every scenario with the first one.
//
// scripts/bench.sh runs it against a dev Vault with the plugin mounted.
// Each scenario runs -requests requests, split into -rounds rounds. A round
// runs every scenario once, and the starting scenario moves by one each
// round, so that slow phases of a shared machine fall on all scenarios
// alike. Ratios to the first scenario are therefore steadier than absolute
// numbers.
//
// Vault's address and token come from VAULT_ADDR and VAULT_TOKEN, as for
// the vault CLI. The token needs read on the paths, update on
// sys/leases/renew for renew scenarios, and update on sys/leases/revoke
// when a read issues leases, because the tool revokes the leases it
// caused after each round, outside the timed part.
//
// Usage:
//
//	bench -read kv-v2=secret/data/bench -read creds=aisquare/creds/bench \
//	  -renew renew=aisquare/creds/bench -emulator http://127.0.0.1:41234
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
		os.Exit(2)
	}
}

// run parses args, runs the scenarios and writes the table to stdout and
// progress to stderr.
func run(args []string, stdout, stderr io.Writer) error {
	opts, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}

	client, err := newVaultClient(opts.concurrency)
	if err != nil {
		return err
	}

	runner := &runner{
		vault:     client,
		emulator:  newEmulatorClient(opts.emulatorURL),
		opts:      opts,
		progress:  stderr,
		scenarios: opts.scenarios,
	}

	ctx := context.Background()
	start := time.Now()

	results, err := runner.runAll(ctx)
	if err != nil {
		return err
	}

	fmt.Fprintf(stderr, "bench: finished in %s\n", time.Since(start).Round(time.Millisecond))

	return writeTable(stdout, results)
}
