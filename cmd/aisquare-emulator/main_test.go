package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func envWith(values map[string]string) func(string) string {
	return func(name string) string { return values[name] }
}

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()

	cfg, err := parseConfig(nil, envWith(nil), io.Discard)
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	want := config{listen: "127.0.0.1:8585", accessTTL: 7 * 24 * time.Hour, refreshTTL: 30 * 24 * time.Hour}
	if !configsEqual(cfg, want) {
		t.Errorf("config = %+v, want %+v", cfg, want)
	}
}

func configsEqual(a, b config) bool {
	return a.listen == b.listen && slices.Equal(a.users, b.users) && a.accessTTL == b.accessTTL &&
		a.refreshTTL == b.refreshTTL && a.rotateRefresh == b.rotateRefresh && a.addrFile == b.addrFile &&
		a.quiet == b.quiet
}

func TestParseConfigFlags(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want config
	}{
		{
			name: "all flags",
			args: []string{
				"-listen", "localhost:0", "-api-key", "team-a=key-a", "-api-key", "team-b=key=with=equals",
				"-access-ttl", "30s", "-refresh-ttl", "3600", "-rotate-refresh", "-addr-file", "/tmp/x", "-quiet",
			},
			want: config{
				listen:        "localhost:0",
				users:         []userSeed{{"team-a", "key-a"}, {"team-b", "key=with=equals"}},
				accessTTL:     30 * time.Second,
				refreshTTL:    time.Hour,
				rotateRefresh: true,
				addrFile:      "/tmp/x",
				quiet:         true,
			},
		},
		{
			name: "users from environment",
			env:  map[string]string{apiKeysEnv: " env-a=key-1, env-b=key-2 ,"},
			want: config{
				listen:     "127.0.0.1:8585",
				users:      []userSeed{{"env-a", "key-1"}, {"env-b", "key-2"}},
				accessTTL:  7 * 24 * time.Hour,
				refreshTTL: 30 * 24 * time.Hour,
			},
		},
		{
			name: "flag overrides environment user",
			args: []string{"-api-key", "env-a=flag-key", "-api-key", "flag-c=key-3"},
			env:  map[string]string{apiKeysEnv: "env-a=key-1,env-b=key-2"},
			want: config{
				listen:     "127.0.0.1:8585",
				users:      []userSeed{{"env-b", "key-2"}, {"env-a", "flag-key"}, {"flag-c", "key-3"}},
				accessTTL:  7 * 24 * time.Hour,
				refreshTTL: 30 * 24 * time.Hour,
			},
		},
		{
			name: "IPv6 loopback and hour durations",
			args: []string{"-listen", "[::1]:9000", "-access-ttl", "1h30m", "-refresh-ttl", "168h"},
			want: config{listen: "[::1]:9000", accessTTL: 90 * time.Minute, refreshTTL: 168 * time.Hour},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := parseConfig(tt.args, envWith(tt.env), io.Discard)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			if !configsEqual(cfg, tt.want) {
				t.Errorf("config = %+v, want %+v", cfg, tt.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		args    []string
		env     string
		wantErr string
	}{
		{"listen on all interfaces", []string{"-listen", "0.0.0.0:8585"}, "", "not a loopback address"},
		{"listen without host", []string{"-listen", ":8585"}, "", "not a loopback address"},
		{"listen on other host", []string{"-listen", "10.1.2.3:8585"}, "", "not a loopback address"},
		{"listen without port", []string{"-listen", "127.0.0.1"}, "", "host:port"},
		{"api key without equals", []string{"-api-key", "secret-value"}, "", "missing '='"},
		{"api key without name", []string{"-api-key", "=secret-value"}, "", "name is required"},
		{"api key empty key", []string{"-api-key", "team-a="}, "", "empty API key"},
		{"invalid user name", []string{"-api-key", "team a=secret-value"}, "", "contains ' '"},
		{"same name twice in flags", []string{"-api-key", "a=secret-value", "-api-key", "a=k2"}, "", "more than once"},
		{"same name twice in env", nil, "a=secret-value,a=k2", "more than once"},
		{"invalid env item", nil, "a=k1,secret-value", "item 2: missing '='"},
		{"same key for two users", []string{"-api-key", "b=secret-value"}, "a=secret-value", "same API key"},
		{"ttl not a duration", []string{"-access-ttl", "soon"}, "", "neither a Go duration"},
		{"ttl zero", []string{"-refresh-ttl", "0"}, "", "shorter than one second"},
		{"ttl negative", []string{"-access-ttl", "-5s"}, "", "shorter than one second"},
		{"ttl fraction of a second", []string{"-access-ttl", "1500ms"}, "", "not a whole number of seconds"},
		{"unknown flag", []string{"-port", "80"}, "", "flag provided but not defined"},
		{"positional argument", []string{"serve"}, "", "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseConfig(tt.args, envWith(map[string]string{apiKeysEnv: tt.env}), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("parseConfig error = %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "secret-value") {
				t.Errorf("error %q contains the API key", err)
			}
		})
	}
}

func TestParseConfigHelp(t *testing.T) {
	t.Parallel()

	var output bytes.Buffer
	_, err := parseConfig([]string{"-h"}, envWith(nil), &output)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("parseConfig(-h) error = %v, want flag.ErrHelp", err)
	}
	for _, flagName := range []string{"-listen", "-api-key", "-access-ttl", "-refresh-ttl", "-rotate-refresh", "-addr-file", "-quiet", apiKeysEnv} {
		if !strings.Contains(output.String(), flagName) {
			t.Errorf("usage has no %s:\n%s", flagName, output.String())
		}
	}
}

func TestRunRejectsNonLoopbackListen(t *testing.T) {
	t.Parallel()

	var stdout, stderr bytes.Buffer
	status := run(context.Background(), []string{"-listen", "0.0.0.0:8585"}, envWith(nil), &stdout, &stderr)
	if status != 2 {
		t.Errorf("exit status = %d, want 2", status)
	}
	if !strings.Contains(stderr.String(), `host "0.0.0.0" is not a loopback address`) {
		t.Errorf("stderr = %q, want the loopback error", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", stdout.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader in
// different goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRunServesUntilCanceled(t *testing.T) {
	t.Parallel()
	addrFile := filepath.Join(t.TempDir(), "addr")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	args := []string{"-listen", "127.0.0.1:0", "-addr-file", addrFile, "-api-key", "team-a=secret-key-a"}
	env := envWith(map[string]string{apiKeysEnv: "team-b=secret-key-b"})
	exitStatus := make(chan int, 1)
	go func() { exitStatus <- run(ctx, args, env, stdout, stderr) }()

	var url string
	deadline := time.Now().Add(10 * time.Second)
	for url == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no -addr-file after 10s; stderr:\n%s", stderr.String())
		}
		content, err := os.ReadFile(addrFile)
		if err == nil {
			url = string(content)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[0-9]+$`).MatchString(url) {
		t.Errorf("-addr-file contains %q, want http://127.0.0.1:PORT", url)
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Post(url+"/api/v1/token/api-key/", "application/json", strings.NewReader(`{"api_key": "secret-key-b"}`))
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("login status = %d, want 200", resp.StatusCode)
	}

	wantStdout := "aisquare-emulator listening on " + url + "\nusers: team-b (user_id 1), team-a (user_id 2)\n"
	if got := stdout.String(); got != wantStdout {
		t.Errorf("stdout = %q, want %q", got, wantStdout)
	}

	cancel()
	select {
	case status := <-exitStatus:
		if status != 0 {
			t.Errorf("exit status = %d, want 0; stderr:\n%s", status, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of cancellation")
	}

	if _, err := os.Stat(addrFile); !os.IsNotExist(err) {
		t.Errorf("-addr-file still exists after stop (stat error %v)", err)
	}
	logs := stderr.String()
	if !strings.Contains(logs, "POST /api/v1/token/api-key/ 200 user=team-b") {
		t.Errorf("stderr has no request log line:\n%s", logs)
	}
	if !strings.Contains(logs, "stopped") {
		t.Errorf("stderr has no stop message:\n%s", logs)
	}
	if strings.Contains(logs+stdout.String(), "secret-key") {
		t.Errorf("output contains an API key:\nstdout:\n%s\nstderr:\n%s", stdout.String(), logs)
	}
}
