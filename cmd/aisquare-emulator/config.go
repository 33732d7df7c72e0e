package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// apiKeysEnv is the environment variable with users to seed, as
// "name=key,name2=key2".
const apiKeysEnv = "AISQUARE_EMULATOR_API_KEYS"

// config is the parsed command line of aisquare-emulator.
type config struct {
	listen        string
	users         []userSeed // in the order given, environment first
	accessTTL     time.Duration
	refreshTTL    time.Duration
	rotateRefresh bool
	addrFile      string
	quiet         bool
}

// userSeed is a user to add at start.
type userSeed struct {
	name   string
	apiKey string
}

// parseConfig parses the command-line arguments and the environment, read
// through getenv. It writes the usage to output for -h and returns
// flag.ErrHelp then. Other errors name the invalid flag or variable.
func parseConfig(args []string, getenv func(string) string, output io.Writer) (config, error) {
	cfg := config{
		accessTTL:  aisquaretest.DefaultAccessTTL,
		refreshTTL: aisquaretest.DefaultRefreshTTL,
	}
	// The -api-key values are parsed after fs.Parse, because the flag
	// package quotes an invalid value, key included, in its error.
	var apiKeyValues []string

	fs := flag.NewFlagSet("aisquare-emulator", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:8585",
		"`host:port` to listen on; the host must be a loopback IP address or localhost, and port 0 picks a free port")
	fs.Func("api-key", "add a user that logs in with an API key, as `NAME=KEY`; repeatable, and each NAME is its own user. "+
		"Also read from "+apiKeysEnv+" as NAME=KEY,NAME2=KEY2, which a flag with the same NAME overrides",
		func(value string) error {
			apiKeyValues = append(apiKeyValues, value)
			return nil
		})
	fs.Func("access-ttl", "lifetime of access tokens, as a Go `duration` such as 30s or 168h, or a whole number of seconds (default 168h)",
		func(value string) error { return parseTTL(value, &cfg.accessTTL) })
	fs.Func("refresh-ttl", "lifetime of refresh tokens, as a Go `duration` or a whole number of seconds (default 720h)",
		func(value string) error { return parseTTL(value, &cfg.refreshTTL) })
	fs.BoolVar(&cfg.rotateRefresh, "rotate-refresh", false,
		"make refresh return a new refresh token and blacklist the old one")
	fs.StringVar(&cfg.addrFile, "addr-file", "",
		"after listening, write the server URL, such as http://127.0.0.1:41234, with no newline, to this `file`, which is removed at exit")
	fs.BoolVar(&cfg.quiet, "quiet", false, "do not log requests to stderr")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, output)
		}
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q; all settings are flags", fs.Arg(0))
	}
	if err := aisquaretest.ValidateListenAddress(cfg.listen); err != nil {
		return config{}, fmt.Errorf("-listen: %w", err)
	}

	var flagUsers []userSeed
	for i, value := range apiKeyValues {
		seed, err := parseUserSeed(value)
		if err != nil {
			return config{}, fmt.Errorf("invalid -api-key number %d: %w", i+1, err)
		}
		flagUsers = append(flagUsers, seed)
	}

	envUsers, err := parseUserList(getenv(apiKeysEnv))
	if err != nil {
		return config{}, fmt.Errorf("invalid %s: %w", apiKeysEnv, err)
	}
	cfg.users, err = mergeUsers(envUsers, flagUsers)
	if err != nil {
		return config{}, err
	}
	return cfg, nil
}

func printUsage(fs *flag.FlagSet, output io.Writer) {
	fmt.Fprintf(output, "Usage: aisquare-emulator [flags]\n\n")
	fmt.Fprintf(output, "Serves an emulator of the AISquare token API on a loopback address.\n\nFlags:\n")
	fs.SetOutput(output)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parseTTL parses a token lifetime into ttl: a Go duration or a bare number
// of seconds, at least one second and whole seconds only, because token
// times are Unix seconds.
func parseTTL(value string, ttl *time.Duration) error {
	var parsed time.Duration
	if seconds, err := strconv.ParseInt(value, 10, 64); err == nil {
		if seconds > int64(1<<63-1)/int64(time.Second) {
			return fmt.Errorf("%d seconds is too long", seconds)
		}
		parsed = time.Duration(seconds) * time.Second
	} else {
		parsed, err = time.ParseDuration(value)
		if err != nil {
			return fmt.Errorf("%q is neither a Go duration such as 30s or 168h nor a whole number of seconds", value)
		}
	}

	if parsed < time.Second {
		return fmt.Errorf("%q is shorter than one second", value)
	}
	if parsed%time.Second != 0 {
		return fmt.Errorf("%q is not a whole number of seconds", value)
	}
	*ttl = parsed
	return nil
}

// parseUserSeed parses NAME=KEY. The key is everything after the first "=",
// so it may contain "=". Errors never quote the key.
func parseUserSeed(value string) (userSeed, error) {
	name, apiKey, found := strings.Cut(value, "=")
	if !found {
		return userSeed{}, errors.New("missing '='; use NAME=KEY")
	}
	if err := aisquaretest.ValidateUserName(name); err != nil {
		return userSeed{}, err
	}
	if apiKey == "" {
		return userSeed{}, fmt.Errorf("empty API key for user %q; use NAME=KEY", name)
	}
	return userSeed{name: name, apiKey: apiKey}, nil
}

// parseUserList parses a comma-separated list of NAME=KEY. Spaces around
// items and empty items are ignored.
func parseUserList(list string) ([]userSeed, error) {
	var seeds []userSeed
	for i, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		seed, err := parseUserSeed(item)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i+1, err)
		}
		seeds = append(seeds, seed)
	}
	return seeds, nil
}

// mergeUsers returns the environment's users followed by the flags' users,
// where a flag replaces an environment user of the same name. It rejects a
// name given twice in the same source, and an API key given to two users,
// because a login could not tell them apart.
func mergeUsers(envUsers, flagUsers []userSeed) ([]userSeed, error) {
	if err := checkUniqueNames(envUsers); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", apiKeysEnv, err)
	}
	if err := checkUniqueNames(flagUsers); err != nil {
		return nil, fmt.Errorf("invalid -api-key: %w", err)
	}

	overridden := make(map[string]bool)
	for _, seed := range flagUsers {
		overridden[seed.name] = true
	}
	var merged []userSeed
	for _, seed := range envUsers {
		if !overridden[seed.name] {
			merged = append(merged, seed)
		}
	}
	merged = append(merged, flagUsers...)

	holders := make(map[string]string) // API key to user name
	for _, seed := range merged {
		if holder, inUse := holders[seed.apiKey]; inUse {
			return nil, fmt.Errorf("users %q and %q have the same API key; give each user its own key", holder, seed.name)
		}
		holders[seed.apiKey] = seed.name
	}
	return merged, nil
}

func checkUniqueNames(seeds []userSeed) error {
	seen := make(map[string]bool)
	for _, seed := range seeds {
		if seen[seed.name] {
			return fmt.Errorf("user %q is given more than once", seed.name)
		}
		seen[seed.name] = true
	}
	return nil
}
