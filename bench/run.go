package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"
)

// runner runs the scenarios against one Vault.
type runner struct {
	vault     *api.Client
	emulator  *emulatorClient // nil without -emulator
	opts      options
	progress  io.Writer
	scenarios []scenario
}

// roundResult is the timed part of one scenario in one round.
type roundResult struct {
	requests int
	elapsed  time.Duration
}

// result is the measurement of one scenario over all rounds.
type result struct {
	scenario  scenario
	rounds    []roundResult
	latencies []time.Duration // of every timed request, in no order
	// upstream counts the emulator's API requests during the timed parts,
	// by endpoint, or is nil without -emulator.
	upstream map[string]int
}

// newVaultClient returns a Vault API client configured from VAULT_ADDR and
// VAULT_TOKEN. It keeps one idle connection per concurrent client, so that
// the run measures requests and not TCP handshakes, and it does not retry,
// so that every failure shows.
func newVaultClient(concurrency int) (*api.Client, error) {
	config := api.DefaultConfig()
	if config.Error != nil {
		return nil, fmt.Errorf("read the Vault configuration from the environment: %w", config.Error)
	}

	config.MaxRetries = 0

	transport, ok := config.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("unexpected HTTP transport %T in the Vault API client's default config", config.HttpClient.Transport)
	}

	transport.MaxIdleConns = concurrency
	transport.MaxIdleConnsPerHost = concurrency

	client, err := api.NewClient(config)
	if err != nil {
		return nil, fmt.Errorf("create the Vault API client: %w", err)
	}

	if client.Token() == "" {
		return nil, errors.New("VAULT_TOKEN is not set: set it to a token that may read the benchmarked paths")
	}

	return client, nil
}

// runAll runs the warmup and then every round, and returns the results in
// scenario order.
func (r *runner) runAll(ctx context.Context) ([]*result, error) {
	results := make([]*result, len(r.scenarios))
	for i, sc := range r.scenarios {
		results[i] = &result{scenario: sc}
		if r.emulator != nil {
			results[i].upstream = make(map[string]int)
		}
	}

	if r.opts.warmup > 0 {
		for _, sc := range r.scenarios {
			fmt.Fprintf(r.progress, "bench: warmup: %s, %d requests\n", sc.name, r.opts.warmup)

			if _, _, err := r.runScenario(ctx, sc, r.opts.warmup); err != nil {
				return nil, fmt.Errorf("warmup of %s: %w", sc.name, err)
			}
		}
	}

	perRound := r.opts.requests / r.opts.rounds

	for round := range r.opts.rounds {
		for k := range r.scenarios {
			// Each round starts one scenario later than the previous one.
			i := (round + k) % len(r.scenarios)
			sc := r.scenarios[i]

			timed, upstream, err := r.runScenario(ctx, sc, perRound)
			if err != nil {
				return nil, fmt.Errorf("round %d of %s: %w", round+1, sc.name, err)
			}

			results[i].rounds = append(results[i].rounds, roundResult{requests: perRound, elapsed: timed.elapsed})
			results[i].latencies = append(results[i].latencies, timed.latencies...)

			for endpoint, count := range upstream {
				results[i].upstream[endpoint] += count
			}

			fmt.Fprintf(r.progress, "bench: round %d/%d: %-14s %6.0f requests/s\n",
				round+1, r.opts.rounds, sc.name, float64(perRound)/timed.elapsed.Seconds())
		}
	}

	return results, nil
}

// timedRun is the outcome of one timed window.
type timedRun struct {
	elapsed   time.Duration
	latencies []time.Duration
}

// runScenario runs n timed requests of sc with the configured concurrency
// and returns their timing and the emulator's API requests meanwhile. It
// issues the leases that a renew scenario needs before the timed part, and
// revokes every lease that the scenario caused after it.
func (r *runner) runScenario(ctx context.Context, sc scenario, n int) (timedRun, map[string]int, error) {
	var (
		leases  []string // issued for a renew scenario, one per client
		request func(ctx context.Context, client, index int) (string, error)
	)

	switch sc.op {
	case opRead:
		request = func(ctx context.Context, _, _ int) (string, error) {
			return r.read(ctx, sc.path)
		}
	case opRenew:
		var err error

		leases, err = r.issueLeases(ctx, sc.path, r.opts.concurrency)
		if err != nil {
			return timedRun{}, nil, errors.Join(err, r.revokeLeases(ctx, leases))
		}

		increment := int(r.opts.increment.Seconds())
		request = func(ctx context.Context, client, _ int) (string, error) {
			// Each client renews its own lease, so that no two renewals
			// of one lease overlap.
			_, err := r.vault.Sys().RenewWithContext(ctx, leases[client], increment)
			if err != nil {
				return "", fmt.Errorf("renew lease %s: %w", leases[client], err)
			}

			return "", nil
		}
	default:
		return timedRun{}, nil, fmt.Errorf("unknown operation %q", sc.op)
	}

	before, err := r.emulator.requestCounts(ctx)
	if err != nil {
		return timedRun{}, nil, err
	}

	timed, issued, runErr := measure(ctx, n, r.opts.concurrency, request)

	after, err := r.emulator.requestCounts(ctx)
	if err != nil {
		return timedRun{}, nil, err
	}

	// Revoke even after a failed run, so that no lease of this tool
	// outlives it by accident.
	revokeErr := r.revokeLeases(ctx, append(leases, issued...))
	if runErr != nil {
		return timedRun{}, nil, runErr
	}

	if revokeErr != nil {
		return timedRun{}, nil, revokeErr
	}

	return timed, subtractCounts(after, before), nil
}

// read reads path and returns the lease ID of the response, or "".
func (r *runner) read(ctx context.Context, path string) (string, error) {
	secret, err := r.vault.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}

	if secret == nil {
		return "", fmt.Errorf("read %s: Vault returned no data (404); check the path", path)
	}

	return secret.LeaseID, nil
}

// issueLeases reads path count times and returns the lease IDs of the
// responses.
func (r *runner) issueLeases(ctx context.Context, path string, count int) ([]string, error) {
	leases := make([]string, 0, count)

	for range count {
		leaseID, err := r.read(ctx, path)
		if leaseID != "" {
			leases = append(leases, leaseID)
		}

		if err != nil {
			return leases, err
		}

		if leaseID == "" {
			return leases, fmt.Errorf("read %s returned no lease, so it cannot serve a renew scenario", path)
		}
	}

	return leases, nil
}

// revokeLeases revokes the leases through sys/leases/revoke with the
// configured concurrency. Vault revokes each lease before it responds.
func (r *runner) revokeLeases(ctx context.Context, leases []string) error {
	if len(leases) == 0 {
		return nil
	}

	var (
		next     atomic.Int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)

	for range min(r.opts.concurrency, len(leases)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(leases) {
					return
				}

				if err := r.vault.Sys().RevokeWithContext(ctx, leases[i]); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("revoke lease %s: %w", leases[i], err)
					}
					mu.Unlock()
				}
			}
		})
	}

	wg.Wait()

	return firstErr
}

// measure sends n requests from concurrency clients, each sending its next
// request when the previous one completes. It returns the wall time from
// the first request to the last response, the latency of each request and
// the lease IDs that the requests returned. It stops at the first error.
func measure(ctx context.Context, n, concurrency int,
	request func(ctx context.Context, client, index int) (string, error),
) (timedRun, []string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	latencies := make([]time.Duration, n)
	leaseIDs := make([]string, n)

	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)

	start := time.Now()

	for client := range min(concurrency, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}

				sent := time.Now()
				leaseID, err := request(ctx, client, i)
				latencies[i] = time.Since(sent)
				leaseIDs[i] = leaseID

				if err != nil {
					cancel(err)

					return
				}
			}
		})
	}

	wg.Wait()

	elapsed := time.Since(start)

	var issued []string

	for _, id := range leaseIDs {
		if id != "" {
			issued = append(issued, id)
		}
	}

	if err := context.Cause(ctx); err != nil {
		return timedRun{}, issued, err
	}

	return timedRun{elapsed: elapsed, latencies: latencies}, issued, nil
}
