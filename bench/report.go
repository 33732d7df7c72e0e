package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// rate returns the requests per second over all rounds of r.
func (r *result) rate() float64 {
	var (
		requests int
		elapsed  time.Duration
	)

	for _, round := range r.rounds {
		requests += round.requests
		elapsed += round.elapsed
	}

	return float64(requests) / elapsed.Seconds()
}

// roundRate returns the requests per second of round i.
func (r *result) roundRate(i int) float64 {
	return float64(r.rounds[i].requests) / r.rounds[i].elapsed.Seconds()
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method, or 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}

	rank := int(math.Ceil(p / 100 * float64(len(sorted))))

	return sorted[min(max(rank, 1), len(sorted))-1]
}

// roundRatios returns the ratio of r's request rate to the baseline's in
// each round, sorted.
func roundRatios(r, baseline *result) []float64 {
	ratios := make([]float64, 0, len(r.rounds))

	for i := range min(len(r.rounds), len(baseline.rounds)) {
		ratios = append(ratios, r.roundRate(i)/baseline.roundRate(i))
	}

	slices.Sort(ratios)

	return ratios
}

// describeSpread formats sorted ratios as "median (min–max)", with the
// median of an even count being the mean of the middle two.
func describeSpread(sorted []float64) string {
	if len(sorted) == 0 {
		return "none"
	}

	n := len(sorted)
	median := (sorted[(n-1)/2] + sorted[n/2]) / 2

	return fmt.Sprintf("%.2f (%.2f–%.2f)", median, sorted[0], sorted[n-1])
}

// describeOperation returns the operation column of sc.
func describeOperation(sc scenario) string {
	if sc.op == opRenew {
		return fmt.Sprintf("renew a lease of `%s`", sc.path)
	}

	return fmt.Sprintf("read `%s`", sc.path)
}

// describeUpstream returns the upstream column: the emulator's API requests
// per timed request, by endpoint.
func describeUpstream(upstream map[string]int, requests int) string {
	if upstream == nil {
		return "not measured"
	}

	if len(upstream) == 0 {
		return "0"
	}

	parts := make([]string, 0, len(upstream))
	for _, endpoint := range slices.Sorted(maps.Keys(upstream)) {
		parts = append(parts, fmt.Sprintf("%s %.2f", endpoint, float64(upstream[endpoint])/float64(requests)))
	}

	return strings.Join(parts, ", ")
}

// milliseconds formats d in milliseconds with two decimals.
func milliseconds(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

// writeTable writes a Markdown table of the results, with the ratios of
// every scenario to the first one.
func writeTable(w io.Writer, results []*result) error {
	baseline := results[0]
	baselineP50 := percentile(slices.Sorted(slices.Values(baseline.latencies)), 50)
	name := baseline.scenario.name

	var b strings.Builder

	fmt.Fprintf(&b, "| Scenario | Operation | Requests | Requests/s | p50 ms | p95 ms | p99 ms "+
		"| Rate vs %[1]s | p50 vs %[1]s | Rate vs %[1]s per round, median (min–max) | Upstream calls per request |\n", name)
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")

	for _, r := range results {
		sorted := slices.Sorted(slices.Values(r.latencies))
		p50 := percentile(sorted, 50)

		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %s | %s | %s | %.2f | %.2f | %s | %s |\n",
			r.scenario.name,
			describeOperation(r.scenario),
			len(r.latencies),
			r.rate(),
			milliseconds(p50),
			milliseconds(percentile(sorted, 95)),
			milliseconds(percentile(sorted, 99)),
			r.rate()/baseline.rate(),
			float64(p50)/float64(baselineP50),
			describeSpread(roundRatios(r, baseline)),
			describeUpstream(r.upstream, len(r.latencies)),
		)
	}

	_, err := io.WriteString(w, b.String())

	return err
}
