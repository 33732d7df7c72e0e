package aisquare

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// testRefreshBuffer is the refresh buffer of test static roles: their
// one-hour access tokens are due 45 minutes after each login or refresh.
const testRefreshBuffer = 15 * time.Minute

// createStaticRole configures the mount and creates static role team-a
// with its own key and testRefreshBuffer, then resets the counters.
func (e *testEnv) createStaticRole(t *testing.T) {
	t.Helper()

	e.configure(t, nil)
	e.mustRequest(t, logical.CreateOperation, "static-roles/team-a", map[string]any{
		"api_key":        teamAKey,
		"refresh_buffer": "15m",
		"description":    "shared team-a session",
	})
	e.srv.ResetCounters()
}

func TestStaticRoleLifecycle(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)
	env.srv.ResetCounters()

	resp := env.mustRequest(t, logical.CreateOperation, "static-roles/team-a", map[string]any{
		"api_key":        teamAKey,
		"refresh_buffer": "15m",
		"description":    "shared team-a session",
	})
	if resp != nil {
		t.Errorf("create response = %v; want none", resp)
	}

	if got := env.srv.CountersFor("team-a"); got.Logins != 1 || got.Revocations != 0 {
		t.Errorf("team-a logins = %d, revocations = %d; want 1 and 0", got.Logins, got.Revocations)
	}

	resp = env.mustRequest(t, logical.ReadOperation, "static-roles/team-a", nil)
	want := map[string]any{
		"refresh_buffer":      int64(900),
		"description":         "shared team-a session",
		"api_key_configured":  true,
		"api_key_fingerprint": keyFingerprint(teamAKey),
		"session_active":      true,
		"last_error":          "",
		"last_rotated":        testStart.Format(time.RFC3339),
		"access_expires_at":   testStart.Add(testAccessTTL).Format(time.RFC3339),
		"refresh_expires_at":  testStart.Add(testRefreshTTL).Format(time.RFC3339),
		"next_rotation":       testStart.Add(testAccessTTL - testRefreshBuffer).Format(time.RFC3339),
	}

	if !reflect.DeepEqual(resp.Data, want) {
		t.Errorf("read = %v; want %v", resp.Data, want)
	}

	env.mustRequest(t, logical.UpdateOperation, "static-roles/team-a", map[string]any{"description": "renamed"})

	if got := env.srv.CountersFor("team-a").Logins; got != 1 {
		t.Errorf("team-a logins after a description change = %d; want 1", got)
	}

	env.mustRequest(t, logical.UpdateOperation, "static-roles/team-a", map[string]any{"api_key": teamBKey})

	if got := env.srv.CountersFor("team-b").Logins; got != 1 {
		t.Errorf("team-b logins after a key change = %d; want 1", got)
	}

	if got := env.srv.CountersFor("team-a").Revocations; got != 1 {
		t.Errorf("team-a revocations after a key change = %d; want 1, so the old session is closed", got)
	}

	creds := env.mustRequest(t, logical.ReadOperation, "static-creds/team-a", nil)
	if user, ok := env.srv.AccessTokenValid(creds.Data["access_token"].(string)); !ok || user != "team-b" {
		t.Errorf("token user after a key change = %q, %v; want team-b", user, ok)
	}

	resp = env.mustRequest(t, logical.ListOperation, "static-roles/", nil)
	if got := resp.Data["keys"]; !reflect.DeepEqual(got, []string{"team-a"}) {
		t.Errorf("list = %v; want [team-a]", got)
	}

	resp = env.mustRequest(t, logical.DeleteOperation, "static-roles/team-a", nil)
	if resp != nil {
		t.Errorf("delete response = %v; want none", resp)
	}

	if got := env.srv.CountersFor("team-b").Revocations; got != 1 {
		t.Errorf("team-b revocations after delete = %d; want 1", got)
	}

	if keys := env.storedKeys(t); len(keys) != 1 {
		t.Errorf("storage after delete = %v; want only the config", keys)
	}

	resp, err := env.request(t, logical.ReadOperation, "static-creds/team-a", nil)
	if err != nil || resp == nil || resp.Error().Error() != `static role "team-a" not found: create it with a write to aisquare/static-roles/team-a` {
		t.Errorf("static-creds after delete = %v, %v; want a not found error response", resp, err)
	}
}

func TestStaticRoleDeleteWithUpstreamDown(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, map[string]any{"max_retries": 0})
	env.mustRequest(t, logical.CreateOperation, "static-roles/team-a", map[string]any{"refresh_buffer": "15m"})
	env.srv.InjectFault(aisquaretest.Fault{Endpoint: aisquaretest.EndpointBlacklist, Status: 503})

	resp := env.mustRequest(t, logical.DeleteOperation, "static-roles/team-a", nil)

	want := "The role was deleted, but its refresh token could not be blacklisted (AISquare revoke returned HTTP 503 (emulator_fault): " +
		"injected fault: status 503); the AISquare session stays open until " + testStart.Add(testRefreshTTL).Format(time.RFC3339) + "."
	if resp == nil || len(resp.Warnings) != 1 || resp.Warnings[0] != want {
		t.Errorf("delete response = %v; want warning %q", resp, want)
	}

	if keys := env.storedKeys(t); len(keys) != 1 {
		t.Errorf("storage after delete = %v; want only the config", keys)
	}
}

func TestStaticRoleInvalidInput(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name            string
		path            string
		data            map[string]any
		wantErr         string
		wantRevocations int
	}{
		{"ShortBuffer", "static-roles/team-a", map[string]any{"refresh_buffer": "30s"}, "invalid refresh_buffer 30s: it must be at least 1m0s, because Vault runs the background refresh about once a minute", 0},
		{"NegativeBuffer", "static-roles/team-a", map[string]any{"refresh_buffer": "-5m"}, `error converting input for field "refresh_buffer": cannot provide negative value '-300'`, 0},
		{"BufferPastTokenLife", "static-roles/team-a", map[string]any{"refresh_buffer": "1h"}, "invalid refresh_buffer 1h0m0s: it must be shorter than the access token's life of 1h0m0s", 1},
		{"DefaultBufferPastTokenLife", "static-roles/team-a", nil, "invalid refresh_buffer 24h0m0s: it must be shorter than the access token's life of 1h0m0s", 1},
		{"UnknownField", "static-roles/team-a", map[string]any{"ttl": "1h"}, "unknown fields ttl: this path accepts api_key, description, refresh_buffer", 0},
		{"LongName", "static-roles/" + strings.Repeat("s", maxNameLength+1), map[string]any{"refresh_buffer": "15m"}, "invalid static role name: name is 129 characters long, more than the limit of 128", 0},
		{"KeyWithSpace", "static-roles/team-a", map[string]any{"api_key": "a b", "refresh_buffer": "15m"}, "invalid api_key: it contains whitespace or control characters; paste the key without quotes or line breaks", 0},
		{"LongDescription", "static-roles/team-a", map[string]any{"refresh_buffer": "15m", "description": strings.Repeat("d", maxDescriptionLength+1)}, "invalid description: description is 1025 bytes long, more than the limit of 1024", 0},
		{
			"RejectedKey", "static-roles/team-a", map[string]any{"api_key": "key-unknown-0123456789", "refresh_buffer": "15m"},
			`AISquare rejected the login of static role "team-a": AISquare login returned HTTP 401 (authentication_failed): No active account found with the given API key; check the api_key`, 0,
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			env := newTestEnv(t, aisquaretest.Options{})
			env.configure(t, nil)
			before := env.storedKeys(t)
			env.srv.ResetCounters()

			resp, err := env.request(t, logical.UpdateOperation, tc.path, tc.data)
			if err != nil {
				t.Fatalf("write error = %v; want a 400 response", err)
			}

			if resp == nil || !resp.IsError() || resp.Error().Error() != tc.wantErr {
				t.Errorf("write response = %v; want error %q", resp, tc.wantErr)
			}

			if after := env.storedKeys(t); !reflect.DeepEqual(after, before) {
				t.Errorf("storage changed on invalid input: %v", after)
			}

			if got := env.counters().Revocations; got != tc.wantRevocations {
				t.Errorf("revocations = %d; want %d", got, tc.wantRevocations)
			}
		})
	}
}

func TestStaticRoleNeedsConfig(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})

	resp, err := env.request(t, logical.CreateOperation, "static-roles/team-a", map[string]any{"refresh_buffer": "15m"})
	if err != nil || resp == nil || resp.Error().Error() != "the mount has no config: an operator must write aisquare/config first" {
		t.Errorf("create without config = %v, %v; want a no config error response", resp, err)
	}

	if keys := env.storedKeys(t); len(keys) != 0 {
		t.Errorf("storage = %v; want empty", keys)
	}
}

func TestStaticRoleShortBufferWarning(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)

	resp := env.mustRequest(t, logical.CreateOperation, "static-roles/team-a", map[string]any{"refresh_buffer": "90s"})

	want := "refresh_buffer 1m30s is short: Vault runs the background refresh about once a minute, so readers may get a token with less than a minute left"
	if resp == nil || len(resp.Warnings) != 1 || resp.Warnings[0] != want {
		t.Errorf("warnings = %v; want [%q]", resp, want)
	}
}

func TestStaticRoleRotateErrors(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})

	resp, err := env.request(t, logical.UpdateOperation, "static-roles/nope/rotate", nil)
	if err != nil || resp == nil || resp.Error().Error() != `static role "nope" not found: create it with a write to aisquare/static-roles/nope` {
		t.Errorf("rotate unknown role = %v, %v; want a not found error response", resp, err)
	}

	env.createStaticRole(t)
	env.srv.RemoveUser("team-a")

	resp, err = env.request(t, logical.UpdateOperation, "static-roles/team-a/rotate", nil)
	if err != nil || resp == nil || !resp.IsError() {
		t.Fatalf("rotate with a removed user = %v, %v; want an error response", resp, err)
	}

	want := `AISquare rejected the rotation of static role "team-a": log in for static role "team-a": ` +
		"AISquare login returned HTTP 401 (authentication_failed): No active account found with the given API key; check the api_key"
	if got := resp.Error().Error(); got != want {
		t.Errorf("error = %q; want %q", got, want)
	}
}
