package aisquare

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

func TestRoleLifecycle(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)

	resp := env.mustRequest(t, logical.CreateOperation, "roles/team-a", map[string]any{
		"ttl":         "10m",
		"description": "Team A chatbot",
		"api_key":     teamAKey,
	})
	if resp != nil {
		t.Errorf("create response = %v; want none", resp)
	}

	resp = env.mustRequest(t, logical.ReadOperation, "roles/team-a", nil)
	want := map[string]any{
		"ttl":                 int64(600),
		"max_ttl":             int64(0),
		"description":         "Team A chatbot",
		"api_key_configured":  true,
		"api_key_fingerprint": keyFingerprint(teamAKey),
	}

	if !reflect.DeepEqual(resp.Data, want) {
		t.Errorf("read = %v; want %v", resp.Data, want)
	}

	env.mustRequest(t, logical.UpdateOperation, "roles/team-a", map[string]any{"max_ttl": "50m"})

	resp = env.mustRequest(t, logical.ReadOperation, "roles/team-a", nil)
	if resp.Data["ttl"] != int64(600) || resp.Data["max_ttl"] != int64(3000) || resp.Data["description"] != "Team A chatbot" {
		t.Errorf("read after update = %v; want ttl 600, max_ttl 3000 and the old description", resp.Data)
	}

	env.mustRequest(t, logical.UpdateOperation, "roles/team-a", map[string]any{"api_key": ""})

	resp = env.mustRequest(t, logical.ReadOperation, "roles/team-a", nil)
	if resp.Data["api_key_configured"] != false {
		t.Errorf("api_key_configured after clearing = %v; want false", resp.Data["api_key_configured"])
	}

	if _, ok := resp.Data["api_key_fingerprint"]; ok {
		t.Error("api_key_fingerprint shown for a role without a key")
	}

	env.mustRequest(t, logical.CreateOperation, "roles/team-b", nil)

	resp = env.mustRequest(t, logical.ListOperation, "roles/", nil)
	if got := resp.Data["keys"]; !reflect.DeepEqual(got, []string{"team-a", "team-b"}) {
		t.Errorf("list = %v; want [team-a team-b]", got)
	}

	env.mustRequest(t, logical.DeleteOperation, "roles/team-a", nil)

	resp, err := env.request(t, logical.ReadOperation, "roles/team-a", nil)
	if err != nil || resp != nil {
		t.Errorf("read after delete = %v, %v; want nil, nil", resp, err)
	}

	resp = env.mustRequest(t, logical.ListOperation, "roles/", nil)
	if got := resp.Data["keys"]; !reflect.DeepEqual(got, []string{"team-b"}) {
		t.Errorf("list after delete = %v; want [team-b]", got)
	}
}

func TestRoleKeyVerification(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)
	env.srv.ResetCounters()

	env.mustRequest(t, logical.CreateOperation, "roles/team-a", map[string]any{"api_key": teamAKey})

	if got := env.srv.CountersFor("team-a"); got.Logins != 1 || got.Revocations != 1 {
		t.Errorf("team-a logins = %d, revocations = %d; want 1 and 1", got.Logins, got.Revocations)
	}

	env.mustRequest(t, logical.UpdateOperation, "roles/team-a", map[string]any{"description": "x"})

	if got := env.srv.CountersFor("team-a").Logins; got != 1 {
		t.Errorf("team-a logins after a write that kept the key = %d; want 1", got)
	}

	before := env.storedKeys(t)

	resp, err := env.request(t, logical.UpdateOperation, "roles/team-a", map[string]any{"api_key": "key-unknown-0123456789"})
	if err != nil {
		t.Fatalf("write error = %v", err)
	}

	want := "AISquare rejected api_key: AISquare login returned HTTP 401 (authentication_failed): " +
		"No active account found with the given API key; check the key, or set skip_verification=true to save it without logging in"
	if resp == nil || !resp.IsError() || resp.Error().Error() != want {
		t.Errorf("write response = %v; want error %q", resp, want)
	}

	if after := env.storedKeys(t); !reflect.DeepEqual(after, before) {
		t.Error("storage changed after a rejected role key")
	}

	env.mustRequest(t, logical.UpdateOperation, "roles/team-a", map[string]any{"api_key": "key-unknown-0123456789", "skip_verification": true})

	resp = env.mustRequest(t, logical.ReadOperation, "roles/team-a", nil)
	if got := resp.Data["api_key_fingerprint"]; got != keyFingerprint("key-unknown-0123456789") {
		t.Errorf("api_key_fingerprint = %v; want the skipped key's", got)
	}
}

func TestRoleKeyNeedsConfig(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})

	resp, err := env.request(t, logical.CreateOperation, "roles/team-a", map[string]any{"api_key": teamAKey})
	if err != nil {
		t.Fatalf("write error = %v", err)
	}

	want := "cannot verify api_key: the mount has no config; write aisquare/config first, or set skip_verification=true"
	if resp == nil || !resp.IsError() || resp.Error().Error() != want {
		t.Errorf("write response = %v; want error %q", resp, want)
	}

	env.mustRequest(t, logical.CreateOperation, "roles/team-b", map[string]any{"ttl": "5m"})
}

func TestRoleWarnings(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)

	resp := env.mustRequest(t, logical.CreateOperation, "roles/long", map[string]any{"max_ttl": "2h"})

	want := "max_ttl 2h0m0s is longer than the AISquare access token's life (1h0m0s): a renewal past the token's expiry " +
		"returns a new access_token in the renewal's data, which Vault Agent templates do not re-render; " +
		"for Agent consumers leave max_ttl unset or at most the access token's life"
	if resp == nil || len(resp.Warnings) != 1 || resp.Warnings[0] != want {
		t.Errorf("warnings = %v; want [%q]", resp, want)
	}

	resp = env.mustRequest(t, logical.CreateOperation, "roles/short", map[string]any{"max_ttl": "1h"})
	if resp != nil {
		t.Errorf("response for max_ttl equal to the token's life = %v; want none", resp)
	}

	resp = env.mustRequest(t, logical.CreateOperation, "roles/huge", map[string]any{"ttl": "800h"})
	wantMount := "ttl 800h0m0s is longer than the mount's max lease TTL 768h0m0s, so leases get at most 768h0m0s"

	if resp == nil || len(resp.Warnings) != 1 || resp.Warnings[0] != wantMount {
		t.Errorf("warnings = %v; want [%q]", resp, wantMount)
	}
}

func TestRoleInvalidInput(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		path    string
		data    map[string]any
		wantErr string
	}{
		{"NegativeTTL", "roles/team-a", map[string]any{"ttl": -5}, `error converting input for field "ttl": cannot provide negative value '-5'`},
		{"NegativeMaxTTL", "roles/team-a", map[string]any{"max_ttl": "-1h"}, `error converting input for field "max_ttl": cannot provide negative value '-3600'`},
		{"InvertedTTLs", "roles/team-a", map[string]any{"ttl": "2h", "max_ttl": "1h"}, "ttl 2h0m0s must not be longer than max_ttl 1h0m0s"},
		{"InvertedByUpdate", "roles/team-a", map[string]any{"ttl": "40m"}, "ttl 40m0s must not be longer than max_ttl 30m0s"},
		{"UnknownField", "roles/team-a", map[string]any{"max_tll": "1h"}, "unknown fields max_tll: this path accepts api_key, description, max_ttl, skip_verification, ttl"},
		{"LongName", "roles/" + strings.Repeat("a", maxNameLength+1), nil, "invalid role name: name is 129 characters long, more than the limit of 128"},
		{"LongDescription", "roles/team-a", map[string]any{"description": strings.Repeat("d", maxDescriptionLength+1)}, "invalid description: description is 1025 bytes long, more than the limit of 1024"},
		{"KeyWithNewline", "roles/team-a", map[string]any{"api_key": "ab\ncd"}, "invalid api_key: it contains whitespace or control characters; paste the key without quotes or line breaks"},
		{"OversizedKey", "roles/team-a", map[string]any{"api_key": strings.Repeat("k", maxAPIKeyLength+1)}, "invalid api_key: it is 4097 bytes long, more than the limit of 4096"},
		{"BadDuration", "roles/team-a", map[string]any{"ttl": "soon"}, `error converting input for field "ttl": time: invalid duration "soon"`},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			env := newTestEnv(t, aisquaretest.Options{})
			env.configure(t, nil)
			env.mustRequest(t, logical.CreateOperation, "roles/team-a", map[string]any{"ttl": "10m", "max_ttl": "30m"})
			before := env.storedKeys(t)

			resp, err := env.request(t, logical.UpdateOperation, tc.path, tc.data)
			if err != nil {
				t.Fatalf("write error = %v; want a 400 response", err)
			}

			if resp == nil || !resp.IsError() {
				t.Fatalf("write response = %v; want an error response", resp)
			}

			if got := resp.Error().Error(); got != tc.wantErr {
				t.Errorf("error = %q; want %q", got, tc.wantErr)
			}

			if after := env.storedKeys(t); !reflect.DeepEqual(after, before) {
				t.Errorf("storage changed on invalid input")
			}
		})
	}
}

func TestRoleBadNamesNotRouted(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})

	for _, path := range []string{"roles/-team", "roles/team a", "roles/team/a", "creds/te$m"} {
		_, err := env.request(t, logical.UpdateOperation, path, nil)
		if err != logical.ErrUnsupportedPath {
			t.Errorf("write %s error = %v; want %v", path, err, logical.ErrUnsupportedPath)
		}
	}
}

func TestRoleStorageFailure(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		op   logical.Operation
		path string
		fail string
	}{
		{"ReadGet", logical.ReadOperation, "roles/team-a", "get"},
		{"WritePut", logical.UpdateOperation, "roles/team-a", "put"},
		{"DeleteDelete", logical.DeleteOperation, "roles/team-a", "delete"},
		{"ListList", logical.ListOperation, "roles/", "list"},
		{"CredsGet", logical.ReadOperation, "creds/team-a", "get"},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			env := newTestEnv(t, aisquaretest.Options{})
			env.mustRequest(t, logical.CreateOperation, "roles/team-a", nil)
			env.storage.failOn(tc.fail)

			req := &logical.Request{Operation: tc.op, Path: tc.path, Storage: env.storage, MountPoint: "aisquare/"}

			_, err := env.b.HandleRequest(t.Context(), req)
			if err == nil || !strings.Contains(err.Error(), errStorageFailed.Error()) {
				t.Errorf("error = %v; want one that wraps %q", err, errStorageFailed)
			}
		})
	}
}
