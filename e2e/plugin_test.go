package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// pluginStartedPattern matches the debug line that Vault 1.21 logs when it
// starts a plugin process, and captures the binary's path and the PID.
var pluginStartedPattern = regexp.MustCompile(`plugin started: path=(\S+) pid=(\d+)`)

func TestPluginReloadKeepsLeases(t *testing.T) {
	t.Parallel()

	const increment = 120

	env := newEnv(t, envOptions{
		emulator: aisquaretest.Options{AccessTTL: time.Hour},
		teamATTL: 10 * time.Minute,
	})

	leases := append(env.issueLeases(t, teamA, 2), env.issueLeases(t, teamB, 1)...)

	reloads := []struct {
		name   string
		reload func(t *testing.T)
	}{
		{"CLIByPlugin", func(t *testing.T) {
			env.mustCLI(t, "plugin", "reload", "-plugin="+pluginName)
		}},
		// NOTE: `vault plugin reload -mounts=aisquare/` of Vault 1.21.4 sends
		// PUT sys/plugins/reload/unknown/ in the root namespace and gets 404,
		// so the reload by mount goes through the API client.
		{"APIByMount", func(t *testing.T) {
			if _, err := env.client.Sys().ReloadPlugin(&api.ReloadPluginInput{Mounts: []string{mount + "/"}}); err != nil {
				t.Fatalf("reload mount %s/: %v", mount, err)
			}
		}},
	}

	for _, tc := range reloads {
		t.Run(tc.name, func(t *testing.T) {
			before := env.pluginPIDs(t)

			tc.reload(t)

			env.srv.ResetCounters()

			for _, id := range leases {
				renewed, err := env.client.Sys().Renew(id, increment)
				if err != nil {
					t.Errorf("renew %s after the reload: %v", id, err)
					continue
				}

				if renewed.LeaseDuration != increment {
					t.Errorf("renew %s after the reload: lease_duration = %d; want %d", id, renewed.LeaseDuration, increment)
				}
			}

			if got := totalRequests(env.srv.Counters()); got != 0 {
				t.Errorf("upstream requests during the renewals = %d; want 0", got)
			}

			// A reload stops the plugin process, and the next request
			// starts a new one.
			if after := env.pluginPIDs(t); len(after) <= len(before) || slices.Contains(before, after[len(after)-1]) {
				t.Errorf("plugin PIDs started = %v before the reload, %v after; want a new PID", before, after)
			}
		})
	}

	env.srv.ResetCounters()

	for _, id := range leases {
		if err := env.client.Sys().Revoke(id); err != nil {
			t.Errorf("revoke %s after the reloads: %v", id, err)
		}
	}

	if got := env.srv.Counters().Revocations; got != len(leases) {
		t.Errorf("revocations after the reloads = %d; want %d", got, len(leases))
	}
}

func TestSecretsDisableRevokesLeases(t *testing.T) {
	t.Parallel()

	env := newEnv(t, envOptions{emulator: aisquaretest.Options{AccessTTL: time.Hour}})

	env.issueLeases(t, teamA, 2)
	env.issueLeases(t, teamB, 2)

	env.srv.ResetCounters()

	env.mustCLI(t, "secrets", "disable", mount)

	if got := env.srv.Counters().Revocations; got != 4 {
		t.Errorf("revocations after disabling the mount = %d; want 4", got)
	}

	for _, user := range []string{teamA, teamB} {
		if got := env.srv.CountersFor(user).Revocations; got != 2 {
			t.Errorf("%s revocations = %d; want 2", user, got)
		}
	}

	if leases := env.listLeases(t, mount+"/creds/"+teamA); len(leases) != 0 {
		t.Errorf("team-a leases after disabling the mount = %q; want none", leases)
	}

	mounts, err := env.client.Sys().ListMounts()
	if err != nil {
		t.Fatalf("list mounts: %v", err)
	}

	if _, ok := mounts[mount+"/"]; ok {
		t.Errorf("mount %s/ still exists after vault secrets disable", mount)
	}
}

// pluginPIDs returns the PIDs of the plugin processes that the Vault log
// records as started, oldest first.
func (e *testEnv) pluginPIDs(t *testing.T) []string {
	t.Helper()

	text, err := os.ReadFile(e.vaultLog)
	if err != nil {
		t.Fatalf("read the Vault server log: %v", err)
	}

	var pids []string

	for _, match := range pluginStartedPattern.FindAllSubmatch(text, -1) {
		if string(match[1]) == filepath.Join(suite.pluginDir, pluginName) {
			pids = append(pids, string(match[2]))
		}
	}

	return pids
}
