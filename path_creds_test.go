package aisquare

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// issueLease writes role name with data, reads its creds and returns the
// response, with the lease's internal data passed through JSON as Vault
// stores it.
func (e *testEnv) issueLease(t *testing.T, name string, data map[string]any) *logical.Response {
	t.Helper()

	e.mustRequest(t, logical.UpdateOperation, "roles/"+name, data)

	resp := e.mustRequest(t, logical.ReadOperation, "creds/"+name, nil)
	if resp.Secret == nil {
		t.Fatalf("creds read returned no lease")
	}

	raw, err := json.Marshal(resp.Secret.InternalData)
	if err != nil {
		t.Fatalf("encode internal data: %v", err)
	}

	resp.Secret.InternalData = nil
	if err := json.Unmarshal(raw, &resp.Secret.InternalData); err != nil {
		t.Fatalf("decode internal data: %v", err)
	}

	resp.Secret.IssueTime = e.clock.Now()

	return resp
}

func TestCredsRead(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)
	env.mustRequest(t, logical.CreateOperation, "roles/team-a", map[string]any{"api_key": teamAKey})
	env.srv.ResetCounters()

	resp := env.issueLease(t, "team-a", nil)

	wantExpiry := testStart.Add(testAccessTTL)

	token, _ := resp.Data["access_token"].(string)
	if exp, err := jwtExpiry(token); err != nil || !exp.Equal(wantExpiry) {
		t.Errorf("access_token exp = %s, %v; want %s", exp, err, wantExpiry)
	}

	if got := resp.Data["expires_at"]; got != wantExpiry.Format(time.RFC3339) {
		t.Errorf("expires_at = %v; want %s", got, wantExpiry.Format(time.RFC3339))
	}

	if got := resp.Data["token_type"]; got != "Bearer" {
		t.Errorf("token_type = %v; want Bearer", got)
	}

	if len(resp.Data) != 3 {
		t.Errorf("data = %v; want only access_token, token_type and expires_at", resp.Data)
	}

	if user, ok := env.srv.AccessTokenValid(token); !ok || user != "team-a" {
		t.Errorf("emulator accepts the token as %q, %v; want team-a, true", user, ok)
	}

	wantTTL := testAccessTTL - expirySkew
	if resp.Secret.TTL != wantTTL || resp.Secret.MaxTTL != wantTTL {
		t.Errorf("lease TTL = %s, max TTL = %s; want both %s", resp.Secret.TTL, resp.Secret.MaxTTL, wantTTL)
	}

	if !resp.Secret.Renewable {
		t.Error("lease is not renewable")
	}

	internal := resp.Secret.InternalData
	if _, ok := internal["access_token"]; ok {
		t.Error("internal data holds the access token; want only the refresh token")
	}

	if internal["secret_type"] != secretTypeToken || internal["role"] != "team-a" {
		t.Errorf("internal data = %v; want secret_type %s and role team-a", internal, secretTypeToken)
	}

	if got := env.srv.CountersFor("team-a"); got.Logins != 1 {
		t.Errorf("team-a logins = %d; want 1", got.Logins)
	}

	if got := env.srv.CountersFor("mount"); got.Logins != 0 {
		t.Errorf("mount logins = %d; want 0, because the role has its own key", got.Logins)
	}
}

func TestCredsUseRoleKey(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)

	tests := []struct {
		role     string
		data     map[string]any
		wantUser string
	}{
		{"team-a", map[string]any{"api_key": teamAKey}, "team-a"},
		{"team-b", map[string]any{"api_key": teamBKey}, "team-b"},
		{"shared", nil, "mount"},
	}

	for _, tc := range tests {
		resp := env.issueLease(t, tc.role, tc.data)
		token, _ := resp.Data["access_token"].(string)

		if user, ok := env.srv.AccessTokenValid(token); !ok || user != tc.wantUser {
			t.Errorf("role %s: token user = %q, %v; want %s", tc.role, user, ok, tc.wantUser)
		}
	}
}

func TestCredsLeaseDurations(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		role       map[string]any
		wantTTL    time.Duration
		wantMaxTTL time.Duration
		wantMaxEnd time.Time
	}{
		{"MountDefaultCutAtToken", nil, testAccessTTL - expirySkew, testAccessTTL - expirySkew, testStart.Add(testAccessTTL - expirySkew)},
		{"RoleTTL", map[string]any{"ttl": "10m"}, 10 * time.Minute, testAccessTTL - expirySkew, testStart.Add(testAccessTTL - expirySkew)},
		{"ShortMaxTTL", map[string]any{"max_ttl": "30m"}, 30 * time.Minute, 30 * time.Minute, testStart.Add(30 * time.Minute)},
		{"LongMaxTTL", map[string]any{"max_ttl": "3h"}, testAccessTTL - expirySkew, testAccessTTL - expirySkew, testStart.Add(3 * time.Hour)},
		{"MaxTTLPastRefresh", map[string]any{"max_ttl": "48h"}, testAccessTTL - expirySkew, testAccessTTL - expirySkew, testStart.Add(testRefreshTTL - expirySkew)},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			env := newTestEnv(t, aisquaretest.Options{})
			env.configure(t, nil)

			resp := env.issueLease(t, "team-a", tc.role)

			if resp.Secret.TTL != tc.wantTTL {
				t.Errorf("TTL = %s; want %s", resp.Secret.TTL, tc.wantTTL)
			}

			if resp.Secret.MaxTTL != tc.wantMaxTTL {
				t.Errorf("MaxTTL = %s; want %s", resp.Secret.MaxTTL, tc.wantMaxTTL)
			}

			lease, err := parseLeaseState(resp.Secret.InternalData)
			if err != nil {
				t.Fatalf("parseLeaseState() error = %v", err)
			}

			if !lease.MaxExpiresAt.Equal(tc.wantMaxEnd) {
				t.Errorf("max_expires_at = %s; want %s", lease.MaxExpiresAt, tc.wantMaxEnd)
			}
		})
	}
}

func TestCredsErrors(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})

	resp, err := env.request(t, logical.ReadOperation, "creds/nope", nil)
	if err != nil || resp == nil || resp.Error().Error() != `role "nope" not found: create it with a write to aisquare/roles/nope` {
		t.Errorf("unknown role = %v, %v; want a not found error response", resp, err)
	}

	env.mustRequest(t, logical.CreateOperation, "roles/team-a", nil)

	resp, err = env.request(t, logical.ReadOperation, "creds/team-a", nil)
	if err != nil || resp == nil || resp.Error().Error() != "the mount has no config: an operator must write aisquare/config first" {
		t.Errorf("no config = %v, %v; want a no config error response", resp, err)
	}

	if got := env.counters().Requests[aisquaretest.EndpointLogin]; got != 0 {
		t.Errorf("login requests = %d; want 0", got)
	}
}

func TestCredsRejectedKey(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)
	env.mustRequest(t, logical.CreateOperation, "roles/team-a", map[string]any{"api_key": teamAKey})
	env.srv.RemoveUser("team-a")
	env.srv.ResetCounters()

	resp, err := env.request(t, logical.ReadOperation, "creds/team-a", nil)
	if err != nil {
		t.Fatalf("creds read error = %v; want a 400 response", err)
	}

	want := `AISquare rejected the login of role "team-a" with the role's api_key: AISquare login returned HTTP 401 (authentication_failed): ` +
		"No active account found with the given API key; an operator must write a valid api_key to aisquare/roles/team-a"
	if resp == nil || !resp.IsError() || resp.Error().Error() != want {
		t.Errorf("creds read = %v; want error %q", resp, want)
	}

	if got := env.counters().Requests[aisquaretest.EndpointLogin]; got != 1 {
		t.Errorf("login requests = %d; want 1, because a 401 is not retried", got)
	}
}

func TestCredsRetriesRateLimit(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)
	env.mustRequest(t, logical.CreateOperation, "roles/team-a", nil)
	env.srv.ResetCounters()
	env.srv.InjectFault(aisquaretest.Fault{Endpoint: aisquaretest.EndpointLogin, Status: 429, RetryAfter: 1, Count: 1})

	start := time.Now()
	resp := env.mustRequest(t, logical.ReadOperation, "creds/team-a", nil)
	elapsed := time.Since(start)

	if resp.Data["access_token"] == "" {
		t.Error("no access token after the retry")
	}

	if got := env.counters(); got.Requests[aisquaretest.EndpointLogin] != 2 || got.Logins != 1 {
		t.Errorf("login requests = %d, logins = %d; want 2 and 1", got.Requests[aisquaretest.EndpointLogin], got.Logins)
	}

	if elapsed < time.Second {
		t.Errorf("creds read took %s; want at least the 1s of Retry-After", elapsed)
	}
}

func TestCredsUpstreamDown(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, map[string]any{"max_retries": 2})
	env.mustRequest(t, logical.CreateOperation, "roles/team-a", nil)
	env.srv.ResetCounters()
	env.srv.InjectFault(aisquaretest.Fault{Endpoint: aisquaretest.EndpointLogin, Status: 503})

	_, err := env.request(t, logical.ReadOperation, "creds/team-a", nil)

	want := `log in to AISquare for role "team-a": AISquare login returned HTTP 503 (emulator_fault): injected fault: status 503; ` +
		"try again later, or check base_url and the network"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v; want %q", err, want)
	}

	if got := env.counters().Requests[aisquaretest.EndpointLogin]; got != 3 {
		t.Errorf("login requests = %d; want 3 (1 try and 2 retries)", got)
	}
}

func TestCredsDeadUpstreamTimeout(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, map[string]any{"request_timeout": 1})
	env.mustRequest(t, logical.CreateOperation, "roles/team-a", nil)
	env.srv.InjectFault(aisquaretest.Fault{Endpoint: aisquaretest.EndpointLogin, Latency: time.Minute})

	start := time.Now()
	_, err := env.request(t, logical.ReadOperation, "creds/team-a", nil)
	elapsed := time.Since(start)

	wantPrefix := `log in to AISquare for role "team-a": AISquare login timed out after 1s (request_timeout); check that base_url ` + env.srv.URL + " is reachable"
	if err == nil || !strings.HasPrefix(err.Error(), wantPrefix) {
		t.Errorf("error = %v; want prefix %q", err, wantPrefix)
	}

	if elapsed < time.Second || elapsed > 3*time.Second {
		t.Errorf("creds read took %s; want about the 1s request_timeout", elapsed)
	}
}

func TestCredsTokenShorterThanSkew(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{AccessTTL: 5 * time.Second})
	env.configure(t, nil)
	env.mustRequest(t, logical.CreateOperation, "roles/team-a", nil)
	env.srv.ResetCounters()

	_, err := env.request(t, logical.ReadOperation, "creds/team-a", nil)

	want := `issue a lease for role "team-a": AISquare returned an access token that expires within the 10s expiry skew; check the clocks of Vault and AISquare`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v; want %q", err, want)
	}

	if got := env.counters(); got.Logins != 1 || got.Revocations != 1 {
		t.Errorf("logins = %d, revocations = %d; want 1 and 1, so the unused session is closed", got.Logins, got.Revocations)
	}
}

func TestCredsResponseMatchesSchema(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)

	resp := env.issueLease(t, "team-a", nil)

	var fields []string
	for name := range tokenResponseFields {
		fields = append(fields, name)
	}

	var got []string
	for name := range resp.Data {
		got = append(got, name)
	}

	slices.Sort(fields)
	slices.Sort(got)

	if !slices.Equal(got, fields) {
		t.Errorf("response fields = %v; want %v", got, fields)
	}
}
