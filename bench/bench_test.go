package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	sorted := make([]time.Duration, 100)
	for i := range sorted {
		sorted[i] = time.Duration(i+1) * time.Millisecond
	}

	cases := []struct {
		p    float64
		want time.Duration
	}{
		{50, 50 * time.Millisecond},
		{95, 95 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{100, 100 * time.Millisecond},
		{0.1, 1 * time.Millisecond},
	}
	for _, c := range cases {
		if got := percentile(sorted, c.p); got != c.want {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
}

func TestPercentileSmallInputs(t *testing.T) {
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil, 50) = %v, want 0", got)
	}

	single := []time.Duration{7 * time.Millisecond}
	if got := percentile(single, 99); got != 7*time.Millisecond {
		t.Errorf("percentile([7ms], 99) = %v, want 7ms", got)
	}

	two := []time.Duration{1 * time.Millisecond, 2 * time.Millisecond}
	if got := percentile(two, 50); got != 1*time.Millisecond {
		t.Errorf("percentile([1ms 2ms], 50) = %v, want 1ms", got)
	}
}

func TestDescribeSpread(t *testing.T) {
	cases := []struct {
		sorted []float64
		want   string
	}{
		{nil, "none"},
		{[]float64{0.5}, "0.50 (0.50–0.50)"},
		{[]float64{0.4, 0.5, 0.9}, "0.50 (0.40–0.90)"},
		{[]float64{0.4, 0.5, 0.7, 0.9}, "0.60 (0.40–0.90)"},
	}
	for _, c := range cases {
		if got := describeSpread(c.sorted); got != c.want {
			t.Errorf("describeSpread(%v) = %q, want %q", c.sorted, got, c.want)
		}
	}
}

func TestDescribeUpstream(t *testing.T) {
	if got := describeUpstream(nil, 10); got != "not measured" {
		t.Errorf("nil counts: got %q, want %q", got, "not measured")
	}

	if got := describeUpstream(map[string]int{}, 10); got != "0" {
		t.Errorf("no calls: got %q, want %q", got, "0")
	}

	got := describeUpstream(map[string]int{"refresh": 5, "login": 10}, 10)
	if want := "login 1.00, refresh 0.50"; got != want {
		t.Errorf("two endpoints: got %q, want %q", got, want)
	}
}

func TestSubtractCounts(t *testing.T) {
	before := map[string]int{"login": 3, "blacklist": 2}
	after := map[string]int{"login": 13, "blacklist": 2, "refresh": 1}

	got := subtractCounts(after, before)
	if len(got) != 2 || got["login"] != 10 || got["refresh"] != 1 {
		t.Errorf("subtractCounts = %v, want map[login:10 refresh:1]", got)
	}

	if got := subtractCounts(nil, nil); got != nil {
		t.Errorf("subtractCounts(nil, nil) = %v, want nil", got)
	}
}

func TestParseOptionsScenarioOrder(t *testing.T) {
	opts, err := parseOptions([]string{
		"-read", "kv-v2=secret/data/bench",
		"-renew", "renew=aisquare/creds/bench/",
		"-read", "creds=aisquare/creds/bench",
		"-requests", "100", "-rounds", "5", "-concurrency", "4",
	}, io.Discard)
	if err != nil {
		t.Fatalf("parseOptions: %v", err)
	}

	want := []scenario{
		{name: "kv-v2", op: opRead, path: "secret/data/bench"},
		{name: "renew", op: opRenew, path: "aisquare/creds/bench"},
		{name: "creds", op: opRead, path: "aisquare/creds/bench"},
	}
	if len(opts.scenarios) != len(want) {
		t.Fatalf("got %d scenarios, want %d: %+v", len(opts.scenarios), len(want), opts.scenarios)
	}

	for i := range want {
		if opts.scenarios[i] != want[i] {
			t.Errorf("scenario %d = %+v, want %+v", i, opts.scenarios[i], want[i])
		}
	}
}

func TestParseOptionsRejects(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		message string
	}{
		{"no scenario", []string{}, "no scenario"},
		{"renew as baseline", []string{"-renew", "r=aisquare/creds/x"}, "baseline"},
		{"missing path", []string{"-read", "kv"}, "NAME=PATH"},
		{"duplicate name", []string{"-read", "a=x", "-read", "a=y"}, "given twice"},
		{"requests not a multiple", []string{"-read", "a=x", "-requests", "101", "-rounds", "5", "-concurrency", "1"}, "multiple of -rounds"},
		{"too few requests", []string{"-read", "a=x", "-requests", "10", "-rounds", "5", "-concurrency", "8"}, "at least -rounds times -concurrency"},
		{"zero concurrency", []string{"-read", "a=x", "-concurrency", "0"}, "-concurrency"},
		{"emulator without scheme", []string{"-read", "a=x", "-emulator", "127.0.0.1:8585"}, "-emulator"},
		{"stray argument", []string{"-read", "a=x", "extra"}, "unexpected argument"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseOptions(c.args, io.Discard)
			if err == nil {
				t.Fatalf("parseOptions(%q) succeeded, want an error containing %q", c.args, c.message)
			}

			if !strings.Contains(err.Error(), c.message) {
				t.Errorf("parseOptions(%q) error = %q, want it to contain %q", c.args, err, c.message)
			}
		})
	}
}

func TestMeasureCountsEveryRequest(t *testing.T) {
	var (
		calls   atomic.Int64
		mu      sync.Mutex
		clients = make(map[int]bool)
	)

	timed, leases, err := measure(context.Background(), 50, 4, func(_ context.Context, client, index int) (string, error) {
		calls.Add(1)

		mu.Lock()
		clients[client] = true
		mu.Unlock()

		if index%10 == 0 {
			return fmt.Sprintf("lease-%d", index), nil
		}

		return "", nil
	})
	if err != nil {
		t.Fatalf("measure: %v", err)
	}

	if calls.Load() != 50 {
		t.Errorf("request ran %d times, want 50", calls.Load())
	}

	if len(timed.latencies) != 50 {
		t.Errorf("got %d latencies, want 50", len(timed.latencies))
	}

	if len(leases) != 5 {
		t.Errorf("got lease IDs %v, want 5", leases)
	}

	if len(clients) > 4 {
		t.Errorf("requests came from %d clients, want at most 4", len(clients))
	}

	if timed.elapsed <= 0 {
		t.Errorf("elapsed = %v, want more than 0", timed.elapsed)
	}
}

func TestMeasureStopsAtFirstError(t *testing.T) {
	failure := errors.New("read x: 403 permission denied")

	var calls atomic.Int64

	_, leases, err := measure(context.Background(), 1000, 2, func(_ context.Context, _, index int) (string, error) {
		calls.Add(1)
		if index == 3 {
			return "", failure
		}

		return "lease", nil
	})
	if !errors.Is(err, failure) {
		t.Fatalf("measure error = %v, want %v", err, failure)
	}

	if calls.Load() >= 1000 {
		t.Errorf("request ran %d times after the error, want the run to stop early", calls.Load())
	}

	if len(leases) == 0 {
		t.Error("measure dropped the lease IDs issued before the error, so they would not be revoked")
	}
}

func TestWriteTableRatios(t *testing.T) {
	rounds := func(elapsed ...time.Duration) []roundResult {
		var out []roundResult
		for _, e := range elapsed {
			out = append(out, roundResult{requests: 100, elapsed: e})
		}

		return out
	}
	latencies := func(d time.Duration) []time.Duration {
		out := make([]time.Duration, 200)
		for i := range out {
			out[i] = d
		}

		return out
	}

	results := []*result{
		{
			scenario:  scenario{name: "kv-v2", op: opRead, path: "secret/data/bench"},
			rounds:    rounds(100*time.Millisecond, 100*time.Millisecond),
			latencies: latencies(2 * time.Millisecond),
			upstream:  map[string]int{},
		},
		{
			scenario:  scenario{name: "creds", op: opRead, path: "aisquare/creds/bench"},
			rounds:    rounds(200*time.Millisecond, 400*time.Millisecond),
			latencies: latencies(6 * time.Millisecond),
			upstream:  map[string]int{"login": 200},
		},
	}

	var b strings.Builder
	if err := writeTable(&b, results); err != nil {
		t.Fatalf("writeTable: %v", err)
	}

	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want a header, a separator and 2 rows:\n%s", len(lines), b.String())
	}

	if !strings.Contains(lines[0], "Rate vs kv-v2") {
		t.Errorf("header does not name the baseline: %s", lines[0])
	}

	wantBaseline := "| kv-v2 | read `secret/data/bench` | 200 | 1000 | 2.00 | 2.00 | 2.00 | 1.00 | 1.00 | 1.00 (1.00–1.00) | 0 |"
	if lines[2] != wantBaseline {
		t.Errorf("baseline row:\ngot  %s\nwant %s", lines[2], wantBaseline)
	}

	// 200 requests in 600ms against 200 in 200ms: a rate ratio of 0.33.
	// Per round the ratios are 0.50 and 0.25.
	wantCreds := "| creds | read `aisquare/creds/bench` | 200 | 333 | 6.00 | 6.00 | 6.00 | 0.33 | 3.00 | 0.38 (0.25–0.50) | login 1.00 |"
	if lines[3] != wantCreds {
		t.Errorf("creds row:\ngot  %s\nwant %s", lines[3], wantCreds)
	}
}
