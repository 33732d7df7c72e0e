package aisquare

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// runPeriodic calls the backend's periodic function as Vault would.
func (e *testEnv) runPeriodic(t *testing.T) {
	t.Helper()

	err := e.b.PeriodicFunc(context.Background(), &logical.Request{Storage: e.storage})
	if err != nil {
		t.Fatalf("periodic function error = %v", err)
	}
}

// staticToken reads static-creds/team-a and returns its access token.
func (e *testEnv) staticToken(t *testing.T) string {
	t.Helper()

	resp := e.mustRequest(t, logical.ReadOperation, "static-creds/team-a", nil)

	return resp.Data["access_token"].(string)
}

// staticState loads the stored session state of static role team-a.
func (e *testEnv) staticState(t *testing.T) *staticSession {
	t.Helper()

	state, err := getStaticSession(context.Background(), e.storage, "team-a")
	if err != nil {
		t.Fatalf("getStaticSession() error = %v", err)
	}

	return state
}

func TestStaticCredsRead(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.createStaticRole(t)
	env.clock.Advance(10 * time.Minute)

	resp := env.mustRequest(t, logical.ReadOperation, "static-creds/team-a", nil)

	if user, ok := env.srv.AccessTokenValid(resp.Data["access_token"].(string)); !ok || user != "team-a" {
		t.Errorf("token user = %q, %v; want team-a", user, ok)
	}

	// The token lives 1h and is replaced 15m before its expiry, which is
	// 35m after this read.
	checks := map[string]any{
		"token_type":      "Bearer",
		"expires_at":      testStart.Add(testAccessTTL).Format(time.RFC3339),
		"ttl":             int64(35 * 60),
		"rotation_period": int64(45 * 60),
	}
	for field, want := range checks {
		if got := resp.Data[field]; got != want {
			t.Errorf("%s = %v (%T); want %v (%T)", field, got, got, want, want)
		}
	}

	if len(resp.Data) != 5 {
		t.Errorf("data = %v; want 5 fields", resp.Data)
	}

	if resp.Secret != nil {
		t.Errorf("static-creds read created a lease: %+v", resp.Secret)
	}
}

func TestStaticCredsReadsMakeNoUpstreamCalls(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.createStaticRole(t)

	first := env.staticToken(t)

	for i := range 1000 {
		if got := env.staticToken(t); got != first {
			t.Fatalf("read %d returned another token", i)
		}
	}

	if got := env.counters(); len(got.Requests) != 0 {
		t.Errorf("upstream requests after 1000 reads = %v; want none", got.Requests)
	}
}

func TestStaticRefreshBufferBoundary(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.createStaticRole(t)
	due := testStart.Add(testAccessTTL - testRefreshBuffer)

	env.clock.Advance(due.Sub(testStart) - time.Nanosecond)
	env.runPeriodic(t)

	if got := env.counters(); len(got.Requests) != 0 {
		t.Errorf("upstream requests one nanosecond before the buffer = %v; want none", got.Requests)
	}

	env.clock.Advance(time.Nanosecond)
	env.runPeriodic(t)

	if got := env.counters(); got.Refreshes != 1 || got.Logins != 0 {
		t.Errorf("at the buffer: refreshes = %d, logins = %d; want 1 and 0", got.Refreshes, got.Logins)
	}
}

func TestStaticPeriodicRefresh(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{RotateRefresh: true})
	env.createStaticRole(t)

	oldToken := env.staticToken(t)
	oldState := env.staticState(t)

	env.clock.Advance(46 * time.Minute)
	env.runPeriodic(t)

	if got := env.counters(); got.Refreshes != 1 || got.Logins != 0 {
		t.Errorf("refreshes = %d, logins = %d; want 1 and 0", got.Refreshes, got.Logins)
	}

	state := env.staticState(t)
	if state.Generation != oldState.Generation+1 {
		t.Errorf("generation = %d; want %d", state.Generation, oldState.Generation+1)
	}

	if state.Session.RefreshToken == oldState.Session.RefreshToken {
		t.Error("stored refresh token unchanged after a rotating refresh; want the new one")
	}

	newToken := env.staticToken(t)
	if newToken == oldToken {
		t.Fatal("static-creds returns the old token after the refresh")
	}

	if _, ok := env.srv.AccessTokenValid(oldToken); !ok {
		t.Error("old token rejected right after the refresh; want it valid until its own expiry")
	}

	// The new token came 46m after the start, so it expires at 1h46m.
	resp := env.mustRequest(t, logical.ReadOperation, "static-creds/team-a", nil)
	if got := resp.Data["expires_at"]; got != testStart.Add(106*time.Minute).Format(time.RFC3339) {
		t.Errorf("expires_at = %v; want %s", got, testStart.Add(106*time.Minute).Format(time.RFC3339))
	}

	env.runPeriodic(t)

	if got := env.counters().Refreshes; got != 1 {
		t.Errorf("refreshes after a second periodic run = %d; want 1, because the new token is not due", got)
	}
}

func TestStaticReloginAfterRefreshExpiry(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.createStaticRole(t)

	env.clock.Advance(testRefreshTTL)
	env.runPeriodic(t)

	if got := env.srv.CountersFor("team-a"); got.Logins != 1 || got.Requests[aisquaretest.EndpointRefresh] != 0 {
		t.Errorf("logins = %d, refresh requests = %d; want 1 and 0", got.Logins, got.Requests[aisquaretest.EndpointRefresh])
	}

	if !strings.Contains(env.logs.String(), `the static role's refresh token has expired; logging in again: role=team-a`) {
		t.Errorf("log lacks the re-login line:\n%s", env.logs.String())
	}

	resp := env.mustRequest(t, logical.ReadOperation, "static-creds/team-a", nil)
	if got := resp.Data["expires_at"]; got != testStart.Add(testRefreshTTL+testAccessTTL).Format(time.RFC3339) {
		t.Errorf("expires_at = %v; want the new login's expiry", got)
	}
}

func TestStaticClearsRejectedSession(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.createStaticRole(t)
	oldState := env.staticState(t)
	env.srv.RevokeSessions("team-a")

	env.clock.Advance(46 * time.Minute)
	env.runPeriodic(t)

	got := env.srv.CountersFor("team-a")
	if got.Requests[aisquaretest.EndpointRefresh] != 1 || got.Refreshes != 0 || got.Logins != 1 {
		t.Errorf("refresh requests = %d, refreshes = %d, logins = %d; want 1, 0, 1",
			got.Requests[aisquaretest.EndpointRefresh], got.Refreshes, got.Logins)
	}

	state := env.staticState(t)
	if !state.active() || state.Session.RefreshToken == oldState.Session.RefreshToken {
		t.Fatal("session not replaced after AISquare rejected it")
	}

	// One generation for the cleared session, one for the new login.
	if state.Generation != oldState.Generation+2 {
		t.Errorf("generation = %d; want %d", state.Generation, oldState.Generation+2)
	}

	if state.LastError != "" || state.Failures != 0 {
		t.Errorf("last_error = %q, failures = %d; want both cleared after the new login", state.LastError, state.Failures)
	}

	if !strings.Contains(env.logs.String(), "AISquare rejected the static role's session; clearing it and logging in again: role=team-a") {
		t.Errorf("log lacks the clear-and-restart line:\n%s", env.logs.String())
	}
}

func TestStaticRejectedSessionAndKey(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.createStaticRole(t)
	env.srv.RemoveUser("team-a")

	env.clock.Advance(46 * time.Minute)
	env.runPeriodic(t)

	state := env.staticState(t)
	if state.active() {
		t.Error("session kept after AISquare rejected it; want it cleared")
	}

	if state.Failures != 1 {
		t.Errorf("failures = %d; want 1", state.Failures)
	}

	_, err := env.request(t, logical.ReadOperation, "static-creds/team-a", nil)

	want := `static role "team-a" has no AISquare session (log in for static role "team-a": AISquare login returned HTTP 401 ` +
		"(authentication_failed): No active account found with the given API key); the background refresh retries, " +
		"or write aisquare/static-roles/team-a/rotate to retry now"
	if err == nil || err.Error() != want {
		t.Errorf("static-creds error = %v; want %q", err, want)
	}

	var coded logical.HTTPCodedError
	if !asCoded(err, &coded) || coded.Code() != 503 {
		t.Errorf("static-creds error = %#v; want an HTTP 503", err)
	}
}

func TestStaticUpstreamDownKeepsToken(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, map[string]any{"max_retries": 0})
	env.mustRequest(t, logical.CreateOperation, "static-roles/team-a", map[string]any{"refresh_buffer": "15m"})
	env.srv.ResetCounters()

	token := env.staticToken(t)
	env.srv.InjectFault(aisquaretest.Fault{Status: 503})

	env.clock.Advance(46 * time.Minute)
	env.runPeriodic(t)

	if got := env.staticToken(t); got != token {
		t.Error("static-creds changed its token while AISquare is down; want the old, still valid one")
	}

	state := env.staticState(t)
	if state.Failures != 1 || !state.NextAttempt.Equal(env.clock.Now().Add(time.Minute)) {
		t.Errorf("failures = %d, next attempt = %s; want 1 and a minute from now", state.Failures, state.NextAttempt)
	}

	wantLog := "could not replace the static role's access token; keeping the current one: role=team-a failures=1"
	if !strings.Contains(env.logs.String(), wantLog) {
		t.Errorf("log lacks %q:\n%s", wantLog, env.logs.String())
	}

	resp := env.mustRequest(t, logical.ReadOperation, "static-roles/team-a", nil)

	wantErr := `refresh the access token of static role "team-a": AISquare refresh returned HTTP 503 (emulator_fault): injected fault: status 503`
	if got := resp.Data["last_error"]; got != wantErr {
		t.Errorf("last_error = %v; want %q", got, wantErr)
	}

	// Within the backoff the periodic function does not call AISquare.
	env.clock.Advance(30 * time.Second)
	env.runPeriodic(t)

	if got := env.counters().Requests[aisquaretest.EndpointRefresh]; got != 1 {
		t.Errorf("refresh requests within the backoff = %d; want 1", got)
	}

	env.srv.ClearFaults()
	env.clock.Advance(30 * time.Second)
	env.runPeriodic(t)

	if got := env.counters().Refreshes; got != 1 {
		t.Errorf("refreshes after AISquare recovered = %d; want 1", got)
	}

	if state := env.staticState(t); state.Failures != 0 || state.LastError != "" {
		t.Errorf("failures = %d, last_error = %q; want both cleared", state.Failures, state.LastError)
	}
}

func TestStaticExpiredTokenNotServed(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, map[string]any{"max_retries": 0})
	env.mustRequest(t, logical.CreateOperation, "static-roles/team-a", map[string]any{"refresh_buffer": "15m"})
	env.srv.InjectFault(aisquaretest.Fault{Status: 503})

	env.clock.Advance(testAccessTTL - expirySkew)
	env.runPeriodic(t)

	_, err := env.request(t, logical.ReadOperation, "static-creds/team-a", nil)
	if err == nil || !strings.HasPrefix(err.Error(), `the access token of static role "team-a" expired at `+testStart.Add(testAccessTTL).Format(time.RFC3339)) {
		t.Errorf("static-creds error = %v; want an expired token error", err)
	}
}

func TestStaticConcurrentRotationsRefreshOnce(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{RotateRefresh: true})
	env.createStaticRole(t)
	env.srv.InjectFault(aisquaretest.Fault{Endpoint: aisquaretest.EndpointRefresh, Latency: 200 * time.Millisecond, Count: 1})

	var wg sync.WaitGroup

	for range 20 {
		wg.Add(1)

		go func() {
			defer wg.Done()

			resp, err := env.request(t, logical.UpdateOperation, "static-roles/team-a/rotate", nil)
			if err != nil || resp != nil {
				t.Errorf("rotate = %v, %v; want no response and no error", resp, err)
			}
		}()
	}

	wg.Wait()

	if got := env.counters(); got.Requests[aisquaretest.EndpointRefresh] != 1 || got.Refreshes != 1 {
		t.Errorf("refresh requests = %d, refreshes = %d; want 1 and 1", got.Requests[aisquaretest.EndpointRefresh], got.Refreshes)
	}

	// A rotation that starts after the others finished refreshes again.
	env.mustRequest(t, logical.UpdateOperation, "static-roles/team-a/rotate", nil)

	if got := env.counters().Refreshes; got != 2 {
		t.Errorf("refreshes after a later rotation = %d; want 2", got)
	}
}

func TestStaticTTLWhenDue(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.createStaticRole(t)
	env.srv.InjectFault(aisquaretest.Fault{Status: 503})

	// Periodic runs at 44m and at 45m, when the token is due and the
	// refresh fails, teach the backend the one-minute interval.
	env.clock.Advance(44 * time.Minute)
	env.runPeriodic(t)
	env.clock.Advance(time.Minute)
	env.runPeriodic(t)
	env.clock.Advance(20 * time.Second)

	// The token is due, and the next periodic run is 40s away at 46m.
	resp := env.mustRequest(t, logical.ReadOperation, "static-creds/team-a", nil)
	if got := resp.Data["ttl"]; got != int64(40) {
		t.Errorf("ttl = %v; want 40", got)
	}
}

func TestStaticPeriodicSkipsPerformanceStandby(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.createStaticRole(t)
	env.clock.Advance(46 * time.Minute)

	standby := *env.b.System().(*logical.StaticSystemView)
	standby.ReplicationStateVal = consts.ReplicationPerformanceStandby

	if err := env.b.Setup(context.Background(), &logical.BackendConfig{
		Logger:      env.b.Logger(),
		StorageView: env.storage,
		System:      standby,
	}); err != nil {
		t.Fatalf("Setup() error = %v", err)
	}

	env.runPeriodic(t)

	if got := env.counters(); len(got.Requests) != 0 {
		t.Errorf("upstream requests on a performance standby = %v; want none", got.Requests)
	}
}

func TestRotationBackoff(t *testing.T) {
	t.Parallel()

	want := []time.Duration{time.Minute, time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for failures, w := range want {
		if got := rotationBackoff(failures); got != w {
			t.Errorf("rotationBackoff(%d) = %s; want %s", failures, got, w)
		}
	}
}

// asCoded reports whether err is an HTTP coded error and stores it.
func asCoded(err error, target *logical.HTTPCodedError) bool {
	return errors.As(err, target)
}

func TestStaticMountKeyChange(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)
	env.mustRequest(t, logical.CreateOperation, "static-roles/team-a", map[string]any{"refresh_buffer": "15m"})

	if user, _ := env.srv.AccessTokenValid(env.staticToken(t)); user != "mount" {
		t.Fatalf("token user before the key change = %q; want mount", user)
	}

	env.mustRequest(t, logical.UpdateOperation, "config", map[string]any{"api_key": teamBKey})
	env.srv.ResetCounters()

	// The token is not due, but the key that the role logs in with changed.
	env.runPeriodic(t)

	if got := env.srv.CountersFor("team-b"); got.Logins != 1 {
		t.Errorf("team-b logins = %d; want 1", got.Logins)
	}

	if got := env.srv.CountersFor("mount"); got.Revocations != 1 || got.Refreshes != 0 {
		t.Errorf("mount revocations = %d, refreshes = %d; want 1 and 0, so the old session is closed", got.Revocations, got.Refreshes)
	}

	if user, _ := env.srv.AccessTokenValid(env.staticToken(t)); user != "team-b" {
		t.Errorf("token user after the key change = %q; want team-b", user)
	}

	wantLog := "the static role's API key changed; logging in with the new key: role=team-a"
	if !strings.Contains(env.logs.String(), wantLog) {
		t.Errorf("log lacks %q", wantLog)
	}

	env.runPeriodic(t)

	if got := env.counters().Logins; got != 1 {
		t.Errorf("logins after a second periodic run = %d; want 1", got)
	}
}

func TestStaticRoleWriteAfterKeyChange(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)
	env.mustRequest(t, logical.CreateOperation, "static-roles/team-a", map[string]any{"refresh_buffer": "15m"})
	env.mustRequest(t, logical.UpdateOperation, "config", map[string]any{"api_key": teamBKey})
	env.srv.ResetCounters()

	env.mustRequest(t, logical.UpdateOperation, "static-roles/team-a", map[string]any{"description": "now team-b"})

	if got := env.srv.CountersFor("team-b").Logins; got != 1 {
		t.Errorf("team-b logins = %d; want 1", got)
	}

	if got := env.srv.CountersFor("mount").Revocations; got != 1 {
		t.Errorf("mount revocations = %d; want 1", got)
	}

	if user, _ := env.srv.AccessTokenValid(env.staticToken(t)); user != "team-b" {
		t.Errorf("token user = %q; want team-b", user)
	}
}
