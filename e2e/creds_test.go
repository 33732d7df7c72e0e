package e2e

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// expirySkew is how long before the access token's exp the plugin ends a
// lease.
const expirySkew = 10 * time.Second

func TestCredsReadCLI(t *testing.T) {
	t.Parallel()

	const (
		accessTTL = time.Hour
		teamATTL  = 10 * time.Minute
	)

	env := newEnv(t, envOptions{
		emulator: aisquaretest.Options{AccessTTL: accessTTL},
		teamATTL: teamATTL,
	})

	// Each of the three key writes (config, team-a, team-b) logs in once and
	// blacklists that session.
	if got := env.setupCounters.Logins; got != 3 {
		t.Errorf("logins during setup = %d; want 3", got)
	}

	if got := env.setupCounters.Revocations; got != 3 {
		t.Errorf("revocations during setup = %d; want 3", got)
	}

	before := time.Now()
	secret := env.readCreds(t, env.rootToken, teamA)
	after := time.Now()

	token, _ := secret.Data["access_token"].(string)
	if user, status := env.whoAmI(t, token); status != http.StatusOK || user != teamA {
		t.Errorf("emulator /me with the access token = %q, status %d; want %q, 200", user, status, teamA)
	}

	exp := tokenExpiry(t, token)
	if earliest, latest := before.Add(accessTTL).Truncate(time.Second), after.Add(accessTTL); exp.Before(earliest) || exp.After(latest) {
		t.Errorf("access token exp = %s; want %s after issue, from %s to %s", exp, accessTTL, earliest, latest)
	}

	if got, want := secret.Data["expires_at"], exp.UTC().Format(time.RFC3339); got != want {
		t.Errorf("expires_at = %v; want the token's exp %s", got, want)
	}

	if got := secret.Data["token_type"]; got != "Bearer" {
		t.Errorf("token_type = %v; want Bearer", got)
	}

	if len(secret.Data) != 3 {
		t.Errorf("data has fields %v; want only access_token, token_type and expires_at", mapKeys(secret.Data))
	}

	if prefix := mount + "/creds/" + teamA + "/"; !strings.HasPrefix(secret.LeaseID, prefix) {
		t.Errorf("lease_id = %q; want prefix %q", secret.LeaseID, prefix)
	}

	if secret.LeaseDuration != int(teamATTL.Seconds()) {
		t.Errorf("lease_duration = %d; want the role's ttl %d", secret.LeaseDuration, int(teamATTL.Seconds()))
	}

	if !secret.Renewable {
		t.Errorf("renewable = false; want true")
	}

	if len(secret.Warnings) != 0 {
		t.Errorf("warnings = %q; want none", secret.Warnings)
	}

	// Role team-b has no ttl, so the mount's default of 768h is cut where
	// the token stops being handed out: 10s before its exp.
	before = time.Now()
	secretB := env.readCreds(t, env.rootToken, teamB)
	after = time.Now()

	tokenB, _ := secretB.Data["access_token"].(string)
	if user, status := env.whoAmI(t, tokenB); status != http.StatusOK || user != teamB {
		t.Errorf("emulator /me with team-b's access token = %q, status %d; want %q, 200", user, status, teamB)
	}

	end := tokenExpiry(t, tokenB).Add(-expirySkew)
	shortest := int(end.Sub(after).Truncate(time.Second).Seconds())
	longest := int(end.Sub(before).Truncate(time.Second).Seconds())

	if secretB.LeaseDuration < shortest || secretB.LeaseDuration > longest {
		t.Errorf("team-b lease_duration = %d; want exp - 10s - now, from %d to %d", secretB.LeaseDuration, shortest, longest)
	}

	counters := env.srv.Counters()
	if counters.Logins != 2 {
		t.Errorf("logins for two creds reads = %d; want 2", counters.Logins)
	}

	if counters.Revocations != 0 || counters.Refreshes != 0 {
		t.Errorf("revocations, refreshes = %d, %d; want 0, 0", counters.Revocations, counters.Refreshes)
	}
}

func TestLeaseRenewAndRevoke(t *testing.T) {
	t.Parallel()

	const teamATTL = 10 * time.Minute

	env := newEnv(t, envOptions{
		emulator: aisquaretest.Options{AccessTTL: time.Hour},
		teamATTL: teamATTL,
	})

	secret, err := env.client.Logical().Read(mount + "/creds/" + teamA)
	if err != nil {
		t.Fatalf("read creds: %v", err)
	}

	token, _ := secret.Data["access_token"].(string)
	end := tokenExpiry(t, token).Add(-expirySkew)

	env.srv.ResetCounters()

	renewed, err := env.client.Sys().Renew(secret.LeaseID, 300)
	if err != nil {
		t.Fatalf("renew with increment 300: %v", err)
	}

	if renewed.LeaseID != secret.LeaseID || renewed.LeaseDuration != 300 || !renewed.Renewable {
		t.Errorf("renewal = lease %q, %ds, renewable %v; want %q, 300s, true",
			renewed.LeaseID, renewed.LeaseDuration, renewed.Renewable, secret.LeaseID)
	}

	// An increment past the token's end gets only what is left of it.
	before := time.Now()

	capped, err := env.client.Sys().Renew(secret.LeaseID, 7200)
	if err != nil {
		t.Fatalf("renew with increment 7200: %v", err)
	}

	after := time.Now()

	// Vault truncates issue time and max TTL to whole seconds, and the
	// plugin leaves one second out of the max TTL to stay before the end.
	shortest := int(end.Sub(after).Truncate(time.Second).Seconds()) - 2
	longest := int(end.Sub(before).Truncate(time.Second).Seconds())

	if capped.LeaseDuration < shortest || capped.LeaseDuration > longest {
		t.Errorf("renewal past the token's end: lease_duration = %d; want exp - 10s - now, from %d to %d",
			capped.LeaseDuration, shortest, longest)
	}

	if capped.Data != nil {
		t.Errorf("renewal data = %v; want none, because renewals within the token's life keep the token", capped.Data)
	}

	if got := totalRequests(env.srv.Counters()); got != 0 {
		t.Errorf("upstream requests during two renewals = %d; want 0", got)
	}

	if err := env.client.Sys().Revoke(secret.LeaseID); err != nil {
		t.Fatalf("revoke: %v", err)
	}

	counters := env.srv.Counters()
	if counters.Revocations != 1 {
		t.Errorf("revocations after one revoke = %d; want 1", counters.Revocations)
	}

	if got := env.srv.CountersFor(teamA).Revocations; got != 1 {
		t.Errorf("team-a revocations = %d; want 1", got)
	}

	if counters.Logins != 0 || counters.Refreshes != 0 {
		t.Errorf("logins, refreshes during renew and revoke = %d, %d; want 0, 0", counters.Logins, counters.Refreshes)
	}

	if leases := env.listLeases(t, mount+"/creds/"+teamA); len(leases) != 0 {
		t.Errorf("leases after revoke = %q; want none", leases)
	}

	// Blacklisting ends the session but cannot recall an access token that
	// was already handed out.
	if user, status := env.whoAmI(t, token); status != http.StatusOK || user != teamA {
		t.Errorf("emulator /me with the revoked lease's token = %q, status %d; want %q, 200 until exp", user, status, teamA)
	}
}

func TestLeaseRevokePrefix(t *testing.T) {
	t.Parallel()

	const teamALeases = 4

	env := newEnv(t, envOptions{emulator: aisquaretest.Options{AccessTTL: time.Hour}})

	ids := env.issueLeases(t, teamA, teamALeases)
	env.issueLeases(t, teamB, 1)

	listed := env.listLeases(t, mount+"/creds/"+teamA)
	if len(listed) != teamALeases {
		t.Fatalf("team-a leases before revoke = %q; want %d", listed, teamALeases)
	}

	for _, id := range ids {
		if !slices.Contains(listed, strings.TrimPrefix(id, mount+"/creds/"+teamA+"/")) {
			t.Errorf("lease %s is not listed in %q", id, listed)
		}
	}

	env.srv.ResetCounters()

	// Without -sync, Vault queues the revocations and returns.
	env.mustCLI(t, "lease", "revoke", "-prefix", mount+"/creds/"+teamA)

	waitFor(30*time.Second, func() bool { return env.srv.Counters().Revocations >= teamALeases })

	if got := env.srv.Counters().Revocations; got != teamALeases {
		t.Errorf("revocations after revoke -prefix = %d; want %d", got, teamALeases)
	}

	if got := env.srv.CountersFor(teamB).Revocations; got != 0 {
		t.Errorf("team-b revocations = %d; want 0", got)
	}

	var leases []string

	waitFor(10*time.Second, func() bool {
		leases = env.listLeases(t, mount+"/creds/"+teamA)
		return len(leases) == 0
	})

	if len(leases) != 0 {
		t.Errorf("team-a leases after revoke -prefix = %q; want none", leases)
	}

	if leasesB := env.listLeases(t, mount+"/creds/"+teamB); len(leasesB) != 1 {
		t.Errorf("team-b leases after revoking team-a's = %q; want 1", leasesB)
	}
}

// teamAPolicy lets a token read team-a's creds and nothing else of the
// mount.
const teamAPolicy = `
path "aisquare/creds/team-a" {
  capabilities = ["read"]
}
`

func TestPolicyLimitsTeamToOwnCreds(t *testing.T) {
	t.Parallel()

	env := newEnv(t, envOptions{})

	env.mustCLIWithKey(t, teamAPolicy, "policy", "write", "team-a-creds", "-")
	teamToken := env.createToken(t, "team-a-creds")

	secret := env.readCreds(t, teamToken, teamA)

	token, _ := secret.Data["access_token"].(string)
	if user, status := env.whoAmI(t, token); status != http.StatusOK || user != teamA {
		t.Errorf("emulator /me with the access token = %q, status %d; want %q, 200", user, status, teamA)
	}

	res := env.runCLI(t, teamToken, "", "read", "-format=json", mount+"/creds/"+teamB)
	if res.exitCode != 2 || !strings.Contains(res.stderr, "Code: 403") {
		t.Errorf("vault read %s/creds/%s with the team-a token: exit status %d, stderr %q; want 2 and Code: 403",
			mount, teamB, res.exitCode, res.stderr)
	}

	client := env.newClient(t, teamToken)

	denied := []struct {
		name    string
		request func() error
	}{
		{"ReadTeamBCreds", func() error {
			_, err := client.Logical().Read(mount + "/creds/" + teamB)
			return err
		}},
		{"ReadConfig", func() error {
			_, err := client.Logical().Read(mount + "/config")
			return err
		}},
		{"WriteConfig", func() error {
			_, err := client.Logical().Write(mount+"/config", map[string]any{"api_key": env.keys[teamA], "base_url": env.srv.URL})
			return err
		}},
		{"ReadTeamARole", func() error {
			_, err := client.Logical().Read(mount + "/roles/" + teamA)
			return err
		}},
	}

	for _, tc := range denied {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.request()

			var respErr *api.ResponseError
			if !errors.As(err, &respErr) || respErr.StatusCode != http.StatusForbidden {
				t.Errorf("error = %v; want a 403 response", err)
			}
		})
	}

	// Vault denies before the plugin runs, so only the allowed read logged
	// in.
	if got := env.srv.Counters().Logins; got != 1 {
		t.Errorf("logins = %d; want 1, for the allowed read", got)
	}

	if got := env.srv.CountersFor(teamB).Logins; got != 0 {
		t.Errorf("team-b logins = %d; want 0", got)
	}
}

// createToken creates a token with the given policy, plus default, that
// lives an hour.
func (e *testEnv) createToken(t *testing.T, policy string) string {
	t.Helper()

	out := e.mustCLI(t, "token", "create", "-policy="+policy, "-ttl=1h", "-format=json")

	secret, err := api.ParseSecret(strings.NewReader(out))
	if err != nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		t.Fatalf("parse the output of vault token create: %+v, %v\noutput: %s", secret, err, out)
	}

	if !slices.Contains(secret.Auth.Policies, policy) {
		t.Fatalf("token policies = %q; want %q among them", secret.Auth.Policies, policy)
	}

	return secret.Auth.ClientToken
}

// totalRequests returns the number of requests that reached any emulator
// endpoint.
func totalRequests(c aisquaretest.Counters) int {
	total := 0
	for _, n := range c.Requests {
		total += n
	}

	return total
}

// mapKeys returns the sorted keys of m.
func mapKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}

	slices.Sort(keys)

	return keys
}
