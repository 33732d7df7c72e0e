package aisquare

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// renew sends a renewal of the lease in issued, asking for increment.
func (e *testEnv) renew(t *testing.T, issued *logical.Response, increment time.Duration) (*logical.Response, error) {
	t.Helper()

	secret := *issued.Secret
	secret.Increment = increment

	return e.b.HandleRequest(context.Background(), &logical.Request{
		Operation:  logical.RenewOperation,
		Storage:    e.storage,
		Secret:     &secret,
		MountPoint: "aisquare/",
	})
}

// revoke sends a revocation of the lease in issued.
func (e *testEnv) revoke(t *testing.T, issued *logical.Response) error {
	t.Helper()

	_, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation:  logical.RevokeOperation,
		Storage:    e.storage,
		Secret:     issued.Secret,
		MountPoint: "aisquare/",
	})

	return err
}

// refreshTokenOf returns the refresh token kept in a lease's internal data.
func refreshTokenOf(t *testing.T, secret *logical.Secret) string {
	t.Helper()

	lease, err := parseLeaseState(secret.InternalData)
	if err != nil {
		t.Fatalf("parseLeaseState() error = %v", err)
	}

	return lease.RefreshToken
}

func TestRenewWithinTokenLife(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		role       map[string]any
		elapsed    time.Duration
		increment  time.Duration
		wantTTL    time.Duration
		wantMaxTTL time.Duration
	}{
		{"IncrementFits", nil, 5 * time.Minute, 10 * time.Minute, 10 * time.Minute, testAccessTTL - expirySkew - time.Second},
		{"IncrementCutAtToken", nil, 55 * time.Minute, 10 * time.Minute, 4*time.Minute + 50*time.Second, testAccessTTL - expirySkew - time.Second},
		{"RoleTTLWithoutIncrement", map[string]any{"ttl": "15m"}, 5 * time.Minute, 0, 15 * time.Minute, testAccessTTL - expirySkew - time.Second},
		{"OneSecondBeforeEnd", nil, testAccessTTL - expirySkew - time.Second, time.Hour, time.Second, testAccessTTL - expirySkew - time.Second},
		{"ShortMaxTTL", map[string]any{"max_ttl": "20m"}, 5 * time.Minute, time.Hour, 15 * time.Minute, 20*time.Minute - time.Second},
		{"LongMaxTTLButFits", map[string]any{"max_ttl": "3h"}, 5 * time.Minute, 10 * time.Minute, 10 * time.Minute, testAccessTTL - expirySkew - time.Second},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			env := newTestEnv(t, aisquaretest.Options{RotateRefresh: true})
			env.configure(t, nil)
			issued := env.issueLease(t, "team-a", tc.role)
			env.srv.ResetCounters()
			env.clock.Advance(tc.elapsed)

			resp, err := env.renew(t, issued, tc.increment)
			if err != nil || resp.IsError() {
				t.Fatalf("renew = %v, %v; want success", resp, err)
			}

			if resp.Secret.TTL != tc.wantTTL {
				t.Errorf("TTL = %s; want %s", resp.Secret.TTL, tc.wantTTL)
			}

			if resp.Secret.MaxTTL != tc.wantMaxTTL {
				t.Errorf("MaxTTL = %s; want %s", resp.Secret.MaxTTL, tc.wantMaxTTL)
			}

			if resp.Data != nil {
				t.Errorf("data = %v; want none, because the token was not refreshed", resp.Data)
			}

			if got := env.counters(); len(got.Requests) != 0 {
				t.Errorf("upstream requests = %v; want none", got.Requests)
			}
		})
	}
}

func TestRenewRefreshesPastTokenLife(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{RotateRefresh: true})
	env.configure(t, nil)
	issued := env.issueLease(t, "team-a", map[string]any{"max_ttl": "3h"})
	oldToken := issued.Data["access_token"].(string)
	oldRefresh := refreshTokenOf(t, issued.Secret)
	env.srv.ResetCounters()
	env.clock.Advance(55 * time.Minute)

	resp, err := env.renew(t, issued, 10*time.Minute)
	if err != nil || resp.IsError() {
		t.Fatalf("renew = %v, %v; want success", resp, err)
	}

	if got := env.counters(); got.Refreshes != 1 || got.Requests[aisquaretest.EndpointRefresh] != 1 || got.Logins != 0 {
		t.Errorf("refreshes = %d, refresh requests = %d, logins = %d; want 1, 1, 0", got.Refreshes, got.Requests[aisquaretest.EndpointRefresh], got.Logins)
	}

	newToken, _ := resp.Data["access_token"].(string)
	if newToken == "" || newToken == oldToken {
		t.Fatalf("renewal data = %v; want a new access_token", resp.Data)
	}

	newExpiry := testStart.Add(55*time.Minute + testAccessTTL)
	if got := resp.Data["expires_at"]; got != newExpiry.Format(time.RFC3339) {
		t.Errorf("expires_at = %v; want %s", got, newExpiry.Format(time.RFC3339))
	}

	if user, ok := env.srv.AccessTokenValid(newToken); !ok || user != "mount" {
		t.Errorf("emulator accepts the new token as %q, %v; want mount, true", user, ok)
	}

	newRefresh := refreshTokenOf(t, resp.Secret)
	if newRefresh == oldRefresh {
		t.Error("internal data keeps the spent refresh token; want the rotated one")
	}

	if resp.Secret.TTL != 10*time.Minute {
		t.Errorf("TTL = %s; want 10m", resp.Secret.TTL)
	}

	// The new token lives until start+115m, so the lease may reach
	// start+115m-10s, minus the second kept for Vault's rounding.
	if want := 115*time.Minute - expirySkew - time.Second; resp.Secret.MaxTTL != want {
		t.Errorf("MaxTTL = %s; want %s", resp.Secret.MaxTTL, want)
	}

	// A renewal of the updated lease within the new token's life makes no
	// upstream call.
	env.srv.ResetCounters()
	env.clock.Advance(5 * time.Minute)

	renewed := &logical.Response{Secret: resp.Secret}

	again, err := env.renew(t, renewed, 10*time.Minute)
	if err != nil || again.IsError() || again.Data != nil {
		t.Fatalf("second renew = %v, %v; want success without data", again, err)
	}

	if got := env.counters(); len(got.Requests) != 0 {
		t.Errorf("upstream requests = %v; want none", got.Requests)
	}

	// Revoking now blacklists the rotated refresh token.
	if err := env.revoke(t, renewed); err != nil {
		t.Fatalf("revoke error = %v", err)
	}

	if got := env.counters().Revocations; got != 1 {
		t.Errorf("revocations = %d; want 1", got)
	}
}

func TestRenewConcurrentRefreshOnce(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{RotateRefresh: true})
	env.configure(t, nil)
	issued := env.issueLease(t, "team-a", map[string]any{"max_ttl": "3h"})
	env.srv.ResetCounters()
	env.clock.Advance(55 * time.Minute)

	// Slow refreshes make every renewal arrive while the first is in
	// flight.
	env.srv.InjectFault(aisquaretest.Fault{Endpoint: aisquaretest.EndpointRefresh, Latency: 200 * time.Millisecond, Count: 1})

	const renewals = 20

	var wg sync.WaitGroup

	tokens := make([]string, renewals)

	for i := range renewals {
		wg.Add(1)

		go func() {
			defer wg.Done()

			resp, err := env.renew(t, issued, 10*time.Minute)
			if err != nil || resp.IsError() {
				t.Errorf("renew %d = %v, %v; want success", i, resp, err)
				return
			}

			tokens[i], _ = resp.Data["access_token"].(string)
		}()
	}

	wg.Wait()

	if got := env.counters(); got.Requests[aisquaretest.EndpointRefresh] != 1 || got.Refreshes != 1 {
		t.Errorf("refresh requests = %d, refreshes = %d; want 1 and 1", got.Requests[aisquaretest.EndpointRefresh], got.Refreshes)
	}

	for i, token := range tokens {
		if token == "" || token != tokens[0] {
			t.Errorf("renewal %d returned token %q; want the one shared token", i, token)
		}
	}
}

func TestRenewRefreshFailureKeepsCurrentToken(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{RotateRefresh: true})
	env.configure(t, nil)
	issued := env.issueLease(t, "team-a", map[string]any{"max_ttl": "3h"})
	env.srv.RevokeSessions("mount")
	env.clock.Advance(55 * time.Minute)

	resp, err := env.renew(t, issued, 10*time.Minute)
	if err != nil || resp.IsError() {
		t.Fatalf("renew = %v, %v; want success up to the current token", resp, err)
	}

	if resp.Data != nil {
		t.Errorf("data = %v; want none", resp.Data)
	}

	if want := 4*time.Minute + 50*time.Second; resp.Secret.TTL != want {
		t.Errorf("TTL = %s; want %s", resp.Secret.TTL, want)
	}

	want := "The access token could not be refreshed (AISquare refresh returned HTTP 401 (token_not_valid): Token is invalid or expired), " +
		"so the lease was renewed only up to the current token's expiry."
	if len(resp.Warnings) != 1 || resp.Warnings[0] != want {
		t.Errorf("warnings = %q; want [%q]", resp.Warnings, want)
	}
}

func TestRenewErrors(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)
	issued := env.issueLease(t, "team-a", nil)

	env.clock.Advance(testAccessTTL - expirySkew)

	resp, err := env.renew(t, issued, time.Minute)
	if err != nil || !resp.IsError() {
		t.Fatalf("renew at the token's end = %v, %v; want an error response", resp, err)
	}

	want := "the lease cannot be renewed: its access token expires at " + testStart.Add(testAccessTTL).Format(time.RFC3339) +
		"; read new credentials from aisquare/creds/team-a"
	if got := resp.Error().Error(); got != want {
		t.Errorf("error = %q; want %q", got, want)
	}

	env.mustRequest(t, logical.DeleteOperation, "roles/team-a", nil)

	resp, err = env.renew(t, issued, time.Minute)
	if err != nil || !resp.IsError() {
		t.Fatalf("renew after role delete = %v, %v; want an error response", resp, err)
	}

	want = `role "team-a" no longer exists, so its leases cannot be renewed; read new credentials from another role`
	if got := resp.Error().Error(); got != want {
		t.Errorf("error = %q; want %q", got, want)
	}

	broken := &logical.Response{Secret: &logical.Secret{InternalData: map[string]any{"secret_type": secretTypeToken, "role": "team-a"}}}

	_, err = env.renew(t, broken, time.Minute)
	if err == nil || err.Error() != "renew: lease internal data lacks the refresh token" {
		t.Errorf("renew of a broken lease error = %v; want lacks the refresh token", err)
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name            string
		fault           *aisquaretest.Fault
		wantErr         string
		wantRevocations int
	}{
		{"Blacklisted", nil, "", 1},
		{"Unauthorized", &aisquaretest.Fault{Endpoint: aisquaretest.EndpointBlacklist, Status: 401}, "", 0},
		{"NotFound", &aisquaretest.Fault{Endpoint: aisquaretest.EndpointBlacklist, Status: 404}, "", 0},
		{
			"Unavailable", &aisquaretest.Fault{Endpoint: aisquaretest.EndpointBlacklist, Status: 503},
			`blacklist the refresh token of role "team-a": AISquare revoke returned HTTP 503 (emulator_fault): injected fault: status 503`, 0,
		},
		{
			"Forbidden", &aisquaretest.Fault{Endpoint: aisquaretest.EndpointBlacklist, Status: 403},
			`blacklist the refresh token of role "team-a": AISquare revoke returned HTTP 403 (emulator_fault): injected fault: status 403`, 0,
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			env := newTestEnv(t, aisquaretest.Options{})
			env.configure(t, map[string]any{"max_retries": 1})
			issued := env.issueLease(t, "team-a", nil)
			env.srv.ResetCounters()

			if tc.fault != nil {
				env.srv.InjectFault(*tc.fault)
			}

			err := env.revoke(t, issued)
			if tc.wantErr == "" && err != nil {
				t.Errorf("revoke error = %v; want none", err)
			}

			if tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr) {
				t.Errorf("revoke error = %v; want %q", err, tc.wantErr)
			}

			if got := env.counters().Revocations; got != tc.wantRevocations {
				t.Errorf("revocations = %d; want %d", got, tc.wantRevocations)
			}
		})
	}
}

func TestRevokeEndsSession(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)
	issued := env.issueLease(t, "team-a", nil)
	token := issued.Data["access_token"].(string)

	if err := env.revoke(t, issued); err != nil {
		t.Fatalf("revoke error = %v", err)
	}

	c, _, err := env.b.getClient(context.Background(), env.storage)
	if err != nil {
		t.Fatalf("getClient() error = %v", err)
	}

	_, err = c.Refresh(context.Background(), refreshTokenOf(t, issued.Secret))
	if !hasStatus(err, 401) {
		t.Errorf("refresh after revoke error = %v; want a 401", err)
	}

	// Access tokens are stateless JWTs: the revoked lease's token stays
	// valid until its exp.
	if _, ok := env.srv.AccessTokenValid(token); !ok {
		t.Error("access token rejected right after revoke; want it valid until exp")
	}

	// Vault may retry a revocation, and AISquare then responds with a 401.
	if err := env.revoke(t, issued); err != nil {
		t.Errorf("second revoke error = %v; want none", err)
	}
}

func TestRevokeSkipsExpiredSession(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)
	issued := env.issueLease(t, "team-a", nil)
	env.srv.ResetCounters()
	env.clock.Advance(testRefreshTTL)

	if err := env.revoke(t, issued); err != nil {
		t.Errorf("revoke error = %v; want none", err)
	}

	if got := env.counters(); len(got.Requests) != 0 {
		t.Errorf("upstream requests = %v; want none, because the refresh token has expired", got.Requests)
	}
}

func TestRevokeWithoutConfig(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)
	issued := env.issueLease(t, "team-a", nil)
	env.mustRequest(t, logical.DeleteOperation, "config", nil)

	err := env.revoke(t, issued)

	want := `cannot blacklist the refresh token of role "team-a": the mount has no config; write aisquare/config again, ` +
		"or revoke with -force to drop the lease and leave the AISquare session open"
	if err == nil || err.Error() != want {
		t.Errorf("revoke error = %v; want %q", err, want)
	}
}

func TestLeaseStateRoundTrip(t *testing.T) {
	t.Parallel()

	lease := &leaseState{
		Role:             "team-a",
		RefreshToken:     "r",
		AccessExpiresAt:  testStart.Add(time.Hour),
		RefreshExpiresAt: testStart.Add(24 * time.Hour),
		MaxExpiresAt:     testStart.Add(3*time.Hour + 500*time.Millisecond),
	}

	got, err := parseLeaseState(lease.internalData())
	if err != nil {
		t.Fatalf("parseLeaseState() error = %v", err)
	}

	if *got != *lease {
		t.Errorf("round trip = %+v; want %+v", got, lease)
	}

	data := lease.internalData()
	data["max_expires_at"] = "tomorrow"

	if _, err := parseLeaseState(data); err == nil || !strings.Contains(err.Error(), "invalid max_expires_at") {
		t.Errorf("parseLeaseState() error = %v; want invalid max_expires_at", err)
	}
}

func TestSecretsDetector(t *testing.T) {
	t.Parallel()

	token := signedToken(t, jwt.MapClaims{"exp": testStart.Unix()})

	tests := []struct {
		logs string
		want bool
	}{
		{`[DEBUG] issued credentials: role=team-a ttl=59m50s`, false},
		{`[DEBUG] something: token=` + token, true},
		{`[DEBUG] something: key=` + teamAKey, true},
	}

	for _, tc := range tests {
		if got := len(secretsIn(tc.logs)) > 0; got != tc.want {
			t.Errorf("secretsIn(%q) found = %v; want %v", tc.logs, got, tc.want)
		}
	}
}
