package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// Operations that a scenario measures.
const (
	// opRead reads a path, as `vault read` does.
	opRead = "read"
	// opRenew renews leases that reads of a path issue, through
	// sys/leases/renew.
	opRenew = "renew"
)

// scenario is one measured operation on one Vault path.
type scenario struct {
	name string
	op   string // opRead or opRenew
	path string // the path read, or whose leases are renewed
}

// options are the parsed command-line flags.
type options struct {
	scenarios   []scenario // in flag order; the first is the baseline
	requests    int        // timed requests per scenario, over all rounds
	concurrency int
	rounds      int
	warmup      int           // untimed requests per scenario before the first round
	increment   time.Duration // increment that renewals request
	emulatorURL string        // base URL of the AISquare emulator, or ""
}

// scenarioFlag collects repeated -read and -renew flags into one ordered
// list.
type scenarioFlag struct {
	op        string
	scenarios *[]scenario
}

func (f scenarioFlag) String() string { return "" }

func (f scenarioFlag) Set(value string) error {
	name, path, found := strings.Cut(value, "=")
	name, path = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(path), "/")

	if !found || name == "" || path == "" {
		return fmt.Errorf("invalid value %q: use NAME=PATH, such as kv-v2=secret/data/bench", value)
	}

	for _, existing := range *f.scenarios {
		if existing.name == name {
			return fmt.Errorf("scenario name %q is given twice", name)
		}
	}

	*f.scenarios = append(*f.scenarios, scenario{name: name, op: f.op, path: path})

	return nil
}

// parseOptions parses the command line. It writes the usage to output for
// -h and returns flag.ErrHelp then.
func parseOptions(args []string, output io.Writer) (options, error) {
	var opts options

	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Var(scenarioFlag{op: opRead, scenarios: &opts.scenarios}, "read",
		"add a scenario that reads a path, as `NAME=PATH`; repeatable. The first scenario is the baseline of the ratios")
	fs.Var(scenarioFlag{op: opRenew, scenarios: &opts.scenarios}, "renew",
		"add a scenario that renews leases issued by reads of a path, as `NAME=PATH`; repeatable")
	fs.IntVar(&opts.requests, "requests", 2000, "timed requests per scenario, split evenly over the rounds")
	fs.IntVar(&opts.concurrency, "concurrency", 8, "concurrent clients, each sending one request at a time")
	fs.IntVar(&opts.rounds, "rounds", 5, "rounds; each runs every scenario once")
	fs.IntVar(&opts.warmup, "warmup", 100, "untimed requests per scenario before the first round")
	fs.DurationVar(&opts.increment, "increment", time.Hour, "lease increment that renewals request")
	fs.StringVar(&opts.emulatorURL, "emulator", "",
		"base `URL` of the AISquare emulator, such as http://127.0.0.1:41234; when set, the table shows the upstream calls per request")

	if err := fs.Parse(args); err != nil {
		return options{}, err
	}

	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected argument %q; scenarios are given with -read and -renew", fs.Arg(0))
	}

	if err := opts.validate(); err != nil {
		return options{}, err
	}

	return opts, nil
}

// validate checks the values that flag parsing accepts but the run cannot
// use.
func (o options) validate() error {
	switch {
	case len(o.scenarios) == 0:
		return errors.New("no scenario: add at least one -read")
	case o.scenarios[0].op != opRead:
		return errors.New("the first scenario, the baseline, must be a -read")
	case o.concurrency < 1:
		return fmt.Errorf("invalid -concurrency %d: it must be at least 1", o.concurrency)
	case o.rounds < 1:
		return fmt.Errorf("invalid -rounds %d: it must be at least 1", o.rounds)
	case o.requests < o.rounds*o.concurrency:
		return fmt.Errorf("invalid -requests %d: it must be at least -rounds times -concurrency (%d), so that every client of every round sends a request",
			o.requests, o.rounds*o.concurrency)
	case o.requests%o.rounds != 0:
		return fmt.Errorf("invalid -requests %d: it must be a multiple of -rounds (%d)", o.requests, o.rounds)
	case o.warmup < 0:
		return fmt.Errorf("invalid -warmup %d: it must be 0 or more", o.warmup)
	case o.increment < time.Second:
		return fmt.Errorf("invalid -increment %s: it must be at least 1s", o.increment)
	}

	if o.emulatorURL != "" {
		u, err := url.Parse(o.emulatorURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("invalid -emulator %q: use a base URL such as http://127.0.0.1:41234", o.emulatorURL)
		}
	}

	return nil
}
