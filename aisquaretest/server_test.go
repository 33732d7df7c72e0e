package aisquaretest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

const (
	keyA = "key-team-a-0123456789"
	keyB = "key-team-b-9876543210"
)

// testClient never uses a proxy, so requests stay on 127.0.0.1.
var testClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{Proxy: nil},
}

// fakeClock is a clock for Options.Now that moves only when Advance is
// called.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// syncBuffer is a bytes.Buffer that a log.Logger and a test can share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newServer(t *testing.T, opts aisquaretest.Options) *aisquaretest.Server {
	t.Helper()
	srv := aisquaretest.NewServer(opts)
	t.Cleanup(srv.Close)
	return srv
}

// newServerWithUsers returns a server with team-a (keyA) and team-b (keyB).
func newServerWithUsers(t *testing.T, opts aisquaretest.Options) *aisquaretest.Server {
	t.Helper()
	srv := newServer(t, opts)
	srv.AddUser("team-a", keyA)
	srv.AddUser("team-b", keyB)
	return srv
}

type response struct {
	status int
	header http.Header
	raw    string
	body   map[string]any // nil when the body is empty or not a JSON object
}

// send makes a request with an optional JSON body and headers given as
// name, value pairs.
func send(t *testing.T, method, url, body string, headerPairs ...string) response {
	t.Helper()

	var bodyReader io.Reader
	if body != "" {
		bodyReader = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, bodyReader)
	if err != nil {
		t.Fatalf("creating request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headerPairs); i += 2 {
		req.Header.Set(headerPairs[i], headerPairs[i+1])
	}

	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()

	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response of %s %s: %v", method, url, err)
	}
	res := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.UseNumber()
	_ = decoder.Decode(&res.body)
	return res
}

func post(t *testing.T, url, body string) response {
	t.Helper()
	return send(t, http.MethodPost, url, body)
}

func getMe(t *testing.T, srv *aisquaretest.Server, authorization string) response {
	t.Helper()
	if authorization == "" {
		return send(t, http.MethodGet, srv.URL+aisquaretest.PathMe, "")
	}
	return send(t, http.MethodGet, srv.URL+aisquaretest.PathMe, "", "Authorization", authorization)
}

func jsonBody(t *testing.T, fields map[string]any) string {
	t.Helper()
	encoded, err := json.Marshal(fields)
	if err != nil {
		t.Fatalf("encoding request body: %v", err)
	}
	return string(encoded)
}

// login logs in with apiKey and returns the access and refresh tokens.
func login(t *testing.T, srv *aisquaretest.Server, apiKey string) (access, refresh string) {
	t.Helper()
	res := post(t, srv.URL+aisquaretest.PathLogin, jsonBody(t, map[string]any{"api_key": apiKey}))
	if res.status != http.StatusOK {
		t.Fatalf("login status = %d, want 200; body %s", res.status, res.raw)
	}
	access, _ = res.body["access"].(string)
	refresh, _ = res.body["refresh"].(string)
	if access == "" || refresh == "" {
		t.Fatalf("login body = %s, want access and refresh tokens", res.raw)
	}
	return access, refresh
}

func refreshToken(t *testing.T, srv *aisquaretest.Server, refresh string) response {
	t.Helper()
	return post(t, srv.URL+aisquaretest.PathRefresh, jsonBody(t, map[string]any{"refresh": refresh}))
}

func blacklistToken(t *testing.T, srv *aisquaretest.Server, refresh string) response {
	t.Helper()
	return post(t, srv.URL+aisquaretest.PathBlacklist, jsonBody(t, map[string]any{"refresh": refresh}))
}

func verifyToken(t *testing.T, srv *aisquaretest.Server, token string) response {
	t.Helper()
	return post(t, srv.URL+aisquaretest.PathVerify, jsonBody(t, map[string]any{"token": token}))
}

// checkResponse checks the status and that the body is a JSON object with
// exactly the wanted string fields.
func checkResponse(t *testing.T, res response, wantStatus int, wantBody map[string]string) {
	t.Helper()
	if res.status != wantStatus {
		t.Errorf("status = %d, want %d; body %s", res.status, wantStatus, res.raw)
	}
	if res.body == nil {
		t.Errorf("body %q is not a JSON object", res.raw)
		return
	}
	if len(res.body) != len(wantBody) {
		t.Errorf("body = %s, want exactly the fields %v", res.raw, wantBody)
	}
	for field, want := range wantBody {
		if got := res.body[field]; got != want {
			t.Errorf("body field %q = %#v, want %q", field, got, want)
		}
	}
}

func checkStatus(t *testing.T, res response, want int) {
	t.Helper()
	if res.status != want {
		t.Errorf("status = %d, want %d; body %s", res.status, want, res.raw)
	}
}

var (
	tokenNotValid    = map[string]string{"detail": "Token is invalid or expired", "code": "token_not_valid"}
	tokenBlacklisted = map[string]string{"detail": "Token is blacklisted", "code": "token_not_valid"}
	meTokenNotValid  = map[string]string{"detail": "Given token not valid for any token type", "code": "token_not_valid"}
)

// claimsOf decodes the claims of a JWT without checking its signature.
func claimsOf(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}

	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatalf("decoding token header: %v", err)
	}
	if !strings.Contains(string(header), `"alg":"HS256"`) {
		t.Errorf("token header = %s, want alg HS256", header)
	}

	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decoding token payload: %v", err)
	}
	var claims map[string]any
	decoder := json.NewDecoder(bytes.NewReader(payload))
	decoder.UseNumber()
	if err := decoder.Decode(&claims); err != nil {
		t.Fatalf("decoding token claims: %v", err)
	}
	return claims
}

// intClaim returns a claim that must be a JSON integer.
func intClaim(t *testing.T, claims map[string]any, name string) int64 {
	t.Helper()
	number, ok := claims[name].(json.Number)
	if !ok {
		t.Fatalf("claim %q = %#v, want a number", name, claims[name])
	}
	value, err := number.Int64()
	if err != nil {
		t.Fatalf("claim %q = %s, want an integer", name, number)
	}
	return value
}

var jtiPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestLoginIssuesTokenPair(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name        string
		accessTTL   time.Duration
		refreshTTL  time.Duration
		wantAccess  int64 // seconds
		wantRefresh int64
	}{
		{name: "default lifetimes", wantAccess: 7 * 24 * 3600, wantRefresh: 30 * 24 * 3600},
		{name: "custom lifetimes", accessTTL: 90 * time.Second, refreshTTL: 2 * time.Hour, wantAccess: 90, wantRefresh: 7200},
		{name: "sub-second truncated", accessTTL: 1500 * time.Millisecond, refreshTTL: 300 * time.Millisecond, wantAccess: 1, wantRefresh: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			srv := newServer(t, aisquaretest.Options{AccessTTL: tt.accessTTL, RefreshTTL: tt.refreshTTL, Now: clock.Now})
			srv.AddUser("first", "key-first")
			wantUserID := int64(srv.AddUser("team-a", keyA))

			access, refresh := login(t, srv, keyA)

			for _, token := range []struct {
				value    string
				kind     string
				lifetime int64
			}{
				{access, "access", tt.wantAccess},
				{refresh, "refresh", tt.wantRefresh},
			} {
				claims := claimsOf(t, token.value)
				wantNames := []string{"exp", "iat", "jti", "token_type", "user_id"}
				gotNames := slices.Sorted(func(yield func(string) bool) {
					for name := range claims {
						if !yield(name) {
							return
						}
					}
				})
				if !slices.Equal(gotNames, wantNames) {
					t.Errorf("%s claims = %v, want exactly %v", token.kind, gotNames, wantNames)
				}
				if claims["token_type"] != token.kind {
					t.Errorf("%s token_type = %v, want %q", token.kind, claims["token_type"], token.kind)
				}
				if got := intClaim(t, claims, "user_id"); got != wantUserID {
					t.Errorf("%s user_id = %d, want %d", token.kind, got, wantUserID)
				}
				iat := intClaim(t, claims, "iat")
				if iat != clock.Now().Unix() {
					t.Errorf("%s iat = %d, want the clock's %d", token.kind, iat, clock.Now().Unix())
				}
				if got := intClaim(t, claims, "exp") - iat; got != token.lifetime {
					t.Errorf("%s exp - iat = %d, want %d", token.kind, got, token.lifetime)
				}
				if jti, _ := claims["jti"].(string); !jtiPattern.MatchString(jti) {
					t.Errorf("%s jti = %q, want 32 lowercase hex digits", token.kind, jti)
				}
			}

			if claimsOf(t, access)["jti"] == claimsOf(t, refresh)["jti"] {
				t.Error("access and refresh tokens have the same jti")
			}
		})
	}
}

func TestLoginJTIsUnique(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})

	seen := make(map[any]bool)
	for range 5 {
		access, refresh := login(t, srv, keyA)
		for _, token := range []string{access, refresh} {
			jti := claimsOf(t, token)["jti"]
			if seen[jti] {
				t.Errorf("jti %v issued twice", jti)
			}
			seen[jti] = true
		}
	}
}

func TestLoginErrors(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	missingKey := map[string]string{"error": "api_key is required", "code": "invalid_request"}

	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantBody   map[string]string
	}{
		{"unknown key", `{"api_key": "no-such-key"}`, 401,
			map[string]string{"detail": "No active account found with the given API key", "code": "authentication_failed"}},
		{"missing key", `{}`, 400, missingKey},
		{"empty key", `{"api_key": ""}`, 400, missingKey},
		{"key not a string", `{"api_key": 42}`, 400, missingKey},
		{"body not JSON", `api_key=` + keyA, 400, missingKey},
		{"body a JSON array", `["` + keyA + `"]`, 400, missingKey},
		{"empty body", ``, 400, missingKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := post(t, srv.URL+aisquaretest.PathLogin, tt.body)
			checkResponse(t, res, tt.wantStatus, tt.wantBody)
			if tt.wantStatus == 401 && res.header.Get("WWW-Authenticate") != `Bearer realm="api"` {
				t.Errorf("WWW-Authenticate = %q, want %q", res.header.Get("WWW-Authenticate"), `Bearer realm="api"`)
			}
		})
	}
}

func TestRefreshWithoutRotation(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := newServerWithUsers(t, aisquaretest.Options{AccessTTL: time.Hour, Now: clock.Now})
	_, refresh := login(t, srv, keyA)
	clock.Advance(10 * time.Minute)

	for attempt := 1; attempt <= 2; attempt++ {
		res := refreshToken(t, srv, refresh)
		checkStatus(t, res, 200)
		if _, ok := res.body["refresh"]; ok {
			t.Errorf("attempt %d: body has a refresh token without rotation: %s", attempt, res.raw)
		}
		access, _ := res.body["access"].(string)
		if name, ok := srv.AccessTokenValid(access); !ok || name != "team-a" {
			t.Errorf("attempt %d: AccessTokenValid = %q, %v; want team-a, true", attempt, name, ok)
		}
		claims := claimsOf(t, access)
		if got := intClaim(t, claims, "iat"); got != clock.Now().Unix() {
			t.Errorf("attempt %d: new access iat = %d, want %d", attempt, got, clock.Now().Unix())
		}
		if got := intClaim(t, claims, "exp") - intClaim(t, claims, "iat"); got != 3600 {
			t.Errorf("attempt %d: new access exp - iat = %d, want 3600", attempt, got)
		}
	}
}

func TestRefreshWithRotation(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := newServerWithUsers(t, aisquaretest.Options{RefreshTTL: 24 * time.Hour, RotateRefresh: true, Now: clock.Now})
	_, oldRefresh := login(t, srv, keyA)
	clock.Advance(time.Hour)

	res := refreshToken(t, srv, oldRefresh)
	checkStatus(t, res, 200)
	newRefresh, _ := res.body["refresh"].(string)
	if newRefresh == "" || newRefresh == oldRefresh {
		t.Fatalf("rotated body = %s, want a new refresh token", res.raw)
	}
	if _, ok := res.body["access"].(string); !ok {
		t.Errorf("rotated body = %s, want an access token", res.raw)
	}
	claims := claimsOf(t, newRefresh)
	if got := intClaim(t, claims, "exp"); got != clock.Now().Add(24*time.Hour).Unix() {
		t.Errorf("rotated refresh exp = %d, want now + 24h = %d", got, clock.Now().Add(24*time.Hour).Unix())
	}
	if claims["token_type"] != "refresh" {
		t.Errorf("rotated token_type = %v, want refresh", claims["token_type"])
	}

	checkResponse(t, refreshToken(t, srv, oldRefresh), 401, tokenNotValid)
	checkResponse(t, verifyToken(t, srv, oldRefresh), 401, tokenBlacklisted)
	checkStatus(t, refreshToken(t, srv, newRefresh), 200)
}

func TestRotationSpendsRefreshOnce(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{RotateRefresh: true})
	_, refresh := login(t, srv, keyA)

	const attempts = 20
	statuses := make(chan int, attempts)
	var wg sync.WaitGroup
	for range attempts {
		wg.Go(func() {
			body := `{"refresh": "` + refresh + `"}`
			req, _ := http.NewRequest(http.MethodPost, srv.URL+aisquaretest.PathRefresh, strings.NewReader(body))
			resp, err := testClient.Do(req)
			if err != nil {
				t.Errorf("refresh: %v", err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	wg.Wait()
	close(statuses)

	counts := make(map[int]int)
	for status := range statuses {
		counts[status]++
	}
	if counts[200] != 1 || counts[401] != attempts-1 {
		t.Errorf("statuses = %v, want one 200 and %d 401", counts, attempts-1)
	}
	if got := srv.Counters().Refreshes; got != 1 {
		t.Errorf("Refreshes = %d, want 1", got)
	}
}

func TestSetRotateRefresh(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	_, refresh := login(t, srv, keyA)

	srv.SetRotateRefresh(true)
	res := refreshToken(t, srv, refresh)
	checkStatus(t, res, 200)
	if _, ok := res.body["refresh"].(string); !ok {
		t.Errorf("body after SetRotateRefresh(true) = %s, want a refresh token", res.raw)
	}
	checkResponse(t, refreshToken(t, srv, refresh), 401, tokenNotValid)
}

func TestRefreshErrors(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := newServerWithUsers(t, aisquaretest.Options{RefreshTTL: time.Hour, Now: clock.Now})
	access, refresh := login(t, srv, keyA)
	_, expiredRefresh := login(t, srv, keyB)
	other := newServerWithUsers(t, aisquaretest.Options{})
	_, foreignRefresh := login(t, other, keyA)
	clock.Advance(30 * time.Minute)
	_, freshRefresh := login(t, srv, keyA)
	// expiredRefresh was issued 30 minutes before freshRefresh, so 30 more
	// minutes expire it exactly at its exp and leave freshRefresh valid.
	clock.Advance(30 * time.Minute)

	refreshRequired := map[string]string{"error": "refresh is required", "code": "invalid_request"}
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantBody   map[string]string
	}{
		{"missing field", `{}`, 400, refreshRequired},
		{"empty field", `{"refresh": ""}`, 400, refreshRequired},
		{"body not JSON", `refresh`, 400, refreshRequired},
		{"garbage token", `{"refresh": "not.a.jwt"}`, 401, tokenNotValid},
		{"access token", `{"refresh": "` + access + `"}`, 401, tokenNotValid},
		{"expired refresh", `{"refresh": "` + expiredRefresh + `"}`, 401, tokenNotValid},
		{"expired first refresh", `{"refresh": "` + refresh + `"}`, 401, tokenNotValid},
		{"other server's token", `{"refresh": "` + foreignRefresh + `"}`, 401, tokenNotValid},
		{"tampered signature", `{"refresh": "` + freshRefresh[:len(freshRefresh)-4] + `AAAA"}`, 401, tokenNotValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := post(t, srv.URL+aisquaretest.PathRefresh, tt.body)
			checkResponse(t, res, tt.wantStatus, tt.wantBody)
		})
	}

	t.Run("valid refresh", func(t *testing.T) {
		t.Parallel()
		checkStatus(t, refreshToken(t, srv, freshRefresh), 200)
	})
}

func TestBlacklistThenRefreshFails(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	access, refresh := login(t, srv, keyA)

	res := blacklistToken(t, srv, refresh)
	checkStatus(t, res, 200)
	if res.body == nil || len(res.body) != 0 {
		t.Errorf("blacklist body = %q, want {}", res.raw)
	}

	checkResponse(t, refreshToken(t, srv, refresh), 401, tokenNotValid)
	checkResponse(t, blacklistToken(t, srv, refresh), 401, tokenBlacklisted)
	checkResponse(t, verifyToken(t, srv, refresh), 401, tokenBlacklisted)

	// Access tokens are stateless, so the session's access token still works.
	checkStatus(t, getMe(t, srv, "Bearer "+access), 200)
	checkStatus(t, verifyToken(t, srv, access), 200)
}

func TestBlacklistErrors(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := newServerWithUsers(t, aisquaretest.Options{RefreshTTL: time.Hour, Now: clock.Now})
	access, refresh := login(t, srv, keyA)
	clock.Advance(time.Hour)

	checkResponse(t, post(t, srv.URL+aisquaretest.PathBlacklist, `{}`), 400,
		map[string]string{"error": "refresh is required", "code": "invalid_request"})
	checkResponse(t, blacklistToken(t, srv, "garbage"), 401, tokenNotValid)
	checkResponse(t, blacklistToken(t, srv, access), 401, tokenNotValid)
	checkResponse(t, blacklistToken(t, srv, refresh), 401, tokenNotValid)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := newServerWithUsers(t, aisquaretest.Options{AccessTTL: time.Minute, Now: clock.Now})
	expiredAccess, _ := login(t, srv, keyB)
	clock.Advance(time.Minute)
	access, refresh := login(t, srv, keyA)
	srv.RemoveUser("team-b")
	_, removedUserRefresh := func() (string, string) {
		srv.AddUser("team-c", "key-team-c")
		defer srv.RemoveUser("team-c")
		return login(t, srv, "key-team-c")
	}()

	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantBody   map[string]string
	}{
		{"access token", `{"token": "` + access + `"}`, 200, map[string]string{}},
		{"refresh token", `{"token": "` + refresh + `"}`, 200, map[string]string{}},
		{"removed user's token", `{"token": "` + removedUserRefresh + `"}`, 200, map[string]string{}},
		{"expired access", `{"token": "` + expiredAccess + `"}`, 401, tokenNotValid},
		{"garbage token", `{"token": "abc"}`, 401, tokenNotValid},
		{"missing field", `{}`, 400, map[string]string{"error": "token is required", "code": "invalid_request"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkResponse(t, post(t, srv.URL+aisquaretest.PathVerify, tt.body), tt.wantStatus, tt.wantBody)
		})
	}
}

func TestMe(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := newServerWithUsers(t, aisquaretest.Options{AccessTTL: time.Hour, Now: clock.Now})
	access, refresh := login(t, srv, keyB)

	res := getMe(t, srv, "Bearer "+access)
	checkStatus(t, res, 200)
	if got := res.body["id"]; got != json.Number("2") {
		t.Errorf("id = %#v, want 2", got)
	}
	if got := res.body["username"]; got != "team-b" {
		t.Errorf("username = %#v, want team-b", got)
	}
	if got := res.body["email"]; got != "team-b@emulator.invalid" {
		t.Errorf("email = %#v, want team-b@emulator.invalid", got)
	}
	if len(res.body) != 3 {
		t.Errorf("body = %s, want exactly id, username and email", res.raw)
	}

	notProvided := map[string]string{"detail": "Authentication credentials were not provided.", "code": "not_authenticated"}
	tests := []struct {
		name          string
		authorization string
		wantBody      map[string]string
	}{
		{"missing header", "", notProvided},
		{"other scheme", "Basic " + access, notProvided},
		{"lowercase bearer", "bearer " + access, notProvided},
		{"bearer without token", "Bearer", map[string]string{
			"detail": "Authorization header must contain two space-delimited values", "code": "bad_authorization_header"}},
		{"refresh token", "Bearer " + refresh, meTokenNotValid},
		{"garbage token", "Bearer abc.def.ghi", meTokenNotValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := getMe(t, srv, tt.authorization)
			checkResponse(t, res, 401, tt.wantBody)
			if got := res.header.Get("WWW-Authenticate"); got != `Bearer realm="api"` {
				t.Errorf("WWW-Authenticate = %q, want %q", got, `Bearer realm="api"`)
			}
		})
	}
}

func TestMeAccessTokenExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := newServerWithUsers(t, aisquaretest.Options{AccessTTL: time.Hour, Now: clock.Now})
	access, _ := login(t, srv, keyA)

	clock.Advance(time.Hour - time.Second)
	checkStatus(t, getMe(t, srv, "Bearer "+access), 200)
	if _, ok := srv.AccessTokenValid(access); !ok {
		t.Error("AccessTokenValid = false one second before exp, want true")
	}

	clock.Advance(time.Second)
	checkResponse(t, getMe(t, srv, "Bearer "+access), 401, meTokenNotValid)
	if _, ok := srv.AccessTokenValid(access); ok {
		t.Error("AccessTokenValid = true at exp, want false")
	}
}

func TestMeRemovedUser(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	access, _ := login(t, srv, keyA)
	srv.RemoveUser("team-a")

	checkResponse(t, getMe(t, srv, "Bearer "+access), 401,
		map[string]string{"detail": "User not found", "code": "user_not_found"})
	if _, ok := srv.AccessTokenValid(access); ok {
		t.Error("AccessTokenValid = true for a removed user, want false")
	}
}

func TestAccessTokenValid(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	access, refresh := login(t, srv, keyB)

	if name, ok := srv.AccessTokenValid(access); !ok || name != "team-b" {
		t.Errorf("AccessTokenValid(access) = %q, %v; want team-b, true", name, ok)
	}
	if name, ok := srv.AccessTokenValid(refresh); ok || name != "" {
		t.Errorf("AccessTokenValid(refresh) = %q, %v; want \"\", false", name, ok)
	}
	if _, ok := srv.AccessTokenValid("garbage"); ok {
		t.Error("AccessTokenValid(garbage) = true, want false")
	}
	if got := srv.Counters().Requests[aisquaretest.EndpointMe]; got != 0 {
		t.Errorf("me requests after AccessTokenValid = %d, want 0", got)
	}
}

func TestRevokeSessions(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	access1, refresh1 := login(t, srv, keyA)
	_, refresh2 := login(t, srv, keyA)
	_, otherUserRefresh := login(t, srv, keyB)

	srv.RevokeSessions("team-a")
	srv.RevokeSessions("no-such-user")

	checkResponse(t, refreshToken(t, srv, refresh1), 401, tokenNotValid)
	checkResponse(t, refreshToken(t, srv, refresh2), 401, tokenNotValid)
	checkResponse(t, verifyToken(t, srv, refresh1), 401, tokenBlacklisted)
	checkStatus(t, refreshToken(t, srv, otherUserRefresh), 200)
	if _, ok := srv.AccessTokenValid(access1); !ok {
		t.Error("access token invalid after RevokeSessions, want valid until exp")
	}

	_, refresh3 := login(t, srv, keyA)
	checkStatus(t, refreshToken(t, srv, refresh3), 200)
}

func TestRevokeSessionsCoversRotatedTokens(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{RotateRefresh: true})
	_, refresh := login(t, srv, keyA)
	res := refreshToken(t, srv, refresh)
	rotated, _ := res.body["refresh"].(string)

	srv.RevokeSessions("team-a")

	checkResponse(t, refreshToken(t, srv, rotated), 401, tokenNotValid)
}

func TestRemoveUser(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	_, refresh := login(t, srv, keyA)

	srv.RemoveUser("team-a")
	srv.RemoveUser("no-such-user")

	checkResponse(t, post(t, srv.URL+aisquaretest.PathLogin, `{"api_key": "`+keyA+`"}`), 401,
		map[string]string{"detail": "No active account found with the given API key", "code": "authentication_failed"})
	checkResponse(t, refreshToken(t, srv, refresh), 401, tokenNotValid)
	if got := srv.UserID("team-a"); got != 0 {
		t.Errorf("UserID after RemoveUser = %d, want 0", got)
	}
	if got := srv.CountersFor("team-a"); got.Logins != 0 || got.Requests != nil {
		t.Errorf("CountersFor after RemoveUser = %+v, want the zero value", got)
	}
	login(t, srv, keyB)

	// Adding the name again creates a new user, so old tokens stay invalid.
	if got := srv.AddUser("team-a", keyA); got != 3 {
		t.Errorf("user_id of re-added team-a = %d, want 3", got)
	}
	checkResponse(t, refreshToken(t, srv, refresh), 401, tokenNotValid)
	login(t, srv, keyA)
}

func TestAddUser(t *testing.T) {
	t.Parallel()
	srv := newServer(t, aisquaretest.Options{})

	for i, name := range []string{"team-a", "team-b", "team.c_d+e"} {
		if got := srv.AddUser(name, "key-"+name); got != i+1 {
			t.Errorf("AddUser(%q) = %d, want %d", name, got, i+1)
		}
	}
	if got := srv.UserID("team-b"); got != 2 {
		t.Errorf("UserID(team-b) = %d, want 2", got)
	}
	if got := srv.UserID("unknown"); got != 0 {
		t.Errorf("UserID(unknown) = %d, want 0", got)
	}

	// Adding an existing name replaces its key and keeps its user_id.
	if got := srv.AddUser("team-a", "new-key-a"); got != 1 {
		t.Errorf("AddUser(team-a) again = %d, want 1", got)
	}
	checkStatus(t, post(t, srv.URL+aisquaretest.PathLogin, `{"api_key": "key-team-a"}`), 401)
	access, _ := login(t, srv, "new-key-a")
	if got := intClaim(t, claimsOf(t, access), "user_id"); got != 1 {
		t.Errorf("user_id after key replacement = %d, want 1", got)
	}
}

func TestAddUserPanics(t *testing.T) {
	t.Parallel()
	srv := newServer(t, aisquaretest.Options{})
	srv.AddUser("team-a", keyA)

	tests := []struct {
		name     string
		userName string
		apiKey   string
	}{
		{"empty name", "", "key"},
		{"empty key", "team-x", ""},
		{"name with slash", "team/x", "key"},
		{"name with space", "team x", "key"},
		{"name too long", strings.Repeat("a", 151), "key"},
		{"key of another user", "team-x", keyA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Errorf("AddUser(%q, %q) did not panic", tt.userName, tt.apiKey)
				}
			}()
			srv.AddUser(tt.userName, tt.apiKey)
		})
	}
}

func TestCountersExactUnderConcurrency(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})

	const perUser = 10
	var wg sync.WaitGroup
	for _, apiKey := range []string{keyA, keyB, "unknown-key"} {
		for range perUser {
			wg.Go(func() {
				body := `{"api_key": "` + apiKey + `"}`
				resp, err := testClient.Post(srv.URL+aisquaretest.PathLogin, "application/json", strings.NewReader(body))
				if err != nil {
					t.Errorf("login: %v", err)
					return
				}
				resp.Body.Close()
			})
		}
	}
	wg.Wait()

	total := srv.Counters()
	if total.Logins != 2*perUser {
		t.Errorf("total Logins = %d, want %d", total.Logins, 2*perUser)
	}
	if got := total.Requests[aisquaretest.EndpointLogin]; got != 3*perUser {
		t.Errorf("total login requests = %d, want %d", got, 3*perUser)
	}
	for _, name := range []string{"team-a", "team-b"} {
		counters := srv.CountersFor(name)
		if counters.Logins != perUser {
			t.Errorf("%s Logins = %d, want %d", name, counters.Logins, perUser)
		}
		if got := counters.Requests[aisquaretest.EndpointLogin]; got != perUser {
			t.Errorf("%s login requests = %d, want %d", name, got, perUser)
		}
	}
}

func TestCountersAttribution(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	access, refresh := login(t, srv, keyA)

	checkStatus(t, refreshToken(t, srv, refresh), 200)
	checkStatus(t, verifyToken(t, srv, access), 200)
	checkStatus(t, getMe(t, srv, "Bearer "+access), 200)
	checkStatus(t, getMe(t, srv, "Bearer "+refresh), 401) // failed, but names team-a
	checkStatus(t, getMe(t, srv, ""), 401)                // names no user
	checkStatus(t, blacklistToken(t, srv, refresh), 200)
	checkStatus(t, blacklistToken(t, srv, refresh), 401) // failed, but names team-a
	srv.InjectFault(aisquaretest.Fault{Endpoint: aisquaretest.EndpointMe, Status: 503, Count: 1})
	checkStatus(t, getMe(t, srv, "Bearer "+access), 503) // faulted: totals only

	want := aisquaretest.Counters{
		Logins: 1, Refreshes: 1, Revocations: 1, Verifications: 1, Me: 1,
		Requests: map[string]int{"login": 1, "refresh": 1, "verify": 1, "me": 2, "blacklist": 2},
	}
	checkCounters(t, "team-a", srv.CountersFor("team-a"), want)

	want.Requests = map[string]int{"login": 1, "refresh": 1, "verify": 1, "me": 4, "blacklist": 2}
	checkCounters(t, "total", srv.Counters(), want)

	checkCounters(t, "team-b", srv.CountersFor("team-b"), aisquaretest.Counters{Requests: map[string]int{}})
	if got := srv.CountersFor("unknown"); got.Requests != nil || got.Logins != 0 {
		t.Errorf("CountersFor(unknown) = %+v, want the zero value", got)
	}

	srv.ResetCounters()
	checkCounters(t, "total after reset", srv.Counters(), aisquaretest.Counters{Requests: map[string]int{}})
	checkCounters(t, "team-a after reset", srv.CountersFor("team-a"), aisquaretest.Counters{Requests: map[string]int{}})
}

func checkCounters(t *testing.T, label string, got, want aisquaretest.Counters) {
	t.Helper()
	if got.Logins != want.Logins || got.Refreshes != want.Refreshes || got.Revocations != want.Revocations ||
		got.Verifications != want.Verifications || got.Me != want.Me {
		t.Errorf("%s counters = %+v, want %+v", label, got, want)
	}
	for _, endpoint := range []string{"login", "refresh", "blacklist", "verify", "me"} {
		if got.Requests[endpoint] != want.Requests[endpoint] {
			t.Errorf("%s %s requests = %d, want %d", label, endpoint, got.Requests[endpoint], want.Requests[endpoint])
		}
	}
}

func TestFaultStatusWithCount(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	srv.InjectFault(aisquaretest.Fault{Endpoint: aisquaretest.EndpointLogin, Status: 503, Count: 2})
	body := `{"api_key": "` + keyA + `"}`

	for attempt := 1; attempt <= 2; attempt++ {
		res := post(t, srv.URL+aisquaretest.PathLogin, body)
		checkResponse(t, res, 503, map[string]string{"detail": "injected fault: status 503", "code": "emulator_fault"})
		if got := res.header.Get("Retry-After"); got != "" {
			t.Errorf("attempt %d: Retry-After = %q, want none", attempt, got)
		}
	}
	checkStatus(t, post(t, srv.URL+aisquaretest.PathLogin, body), 200)

	if got := srv.Counters().Requests[aisquaretest.EndpointLogin]; got != 3 {
		t.Errorf("login requests = %d, want 3 including the faulted ones", got)
	}
	if got := srv.Counters().Logins; got != 1 {
		t.Errorf("Logins = %d, want 1", got)
	}
}

func TestFaultRateLimitRetryAfter(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	srv.InjectFault(aisquaretest.Fault{Endpoint: aisquaretest.EndpointRefresh, Status: 429, RetryAfter: 7, Count: 1})
	_, refresh := login(t, srv, keyA)

	res := refreshToken(t, srv, refresh)
	checkResponse(t, res, 429, map[string]string{"detail": "injected fault: status 429", "code": "emulator_fault"})
	if got := res.header.Get("Retry-After"); got != "7" {
		t.Errorf("Retry-After = %q, want 7", got)
	}
	checkStatus(t, refreshToken(t, srv, refresh), 200)
}

func TestFaultLatency(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	const latency = 150 * time.Millisecond

	tests := []struct {
		name       string
		fault      aisquaretest.Fault
		wantStatus int
	}{
		{"latency then normal handling", aisquaretest.Fault{Endpoint: "verify", Latency: latency, Count: 1}, 200},
		{"latency then status", aisquaretest.Fault{Endpoint: "verify", Latency: latency, Status: 502, Count: 1}, 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the subtests share the server's fault queue.
			access, _ := login(t, srv, keyA)
			srv.InjectFault(tt.fault)

			start := time.Now()
			res := verifyToken(t, srv, access)
			elapsed := time.Since(start)

			checkStatus(t, res, tt.wantStatus)
			if elapsed < latency {
				t.Errorf("request took %s, want at least %s", elapsed, latency)
			}
		})
	}
}

func TestFaultLatencyStopsOnCancel(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	srv := newServerWithUsers(t, aisquaretest.Options{Logger: log.New(logs, "", 0)})
	srv.InjectFault(aisquaretest.Fault{Endpoint: "login", Latency: time.Minute, Count: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+aisquaretest.PathLogin,
		strings.NewReader(`{"api_key": "`+keyA+`"}`))
	if resp, err := testClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("request during a one-minute latency returned %d, want a timeout", resp.StatusCode)
	}

	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "request canceled during latency") {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not stop waiting after the client left; log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := srv.Counters().Logins; got != 0 {
		t.Errorf("Logins = %d, want 0 because the canceled request was not handled", got)
	}
	login(t, srv, keyA)
}

func TestCloseDuringLatency(t *testing.T) {
	t.Parallel()
	srv := aisquaretest.NewServer(aisquaretest.Options{})
	srv.InjectFault(aisquaretest.Fault{Latency: time.Minute})

	done := make(chan error, 1)
	go func() {
		resp, err := testClient.Get(srv.URL + aisquaretest.PathMe)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for srv.Counters().Requests[aisquaretest.EndpointMe] == 0 {
		time.Sleep(5 * time.Millisecond)
	}

	start := time.Now()
	srv.Close()
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Close took %s during an injected latency, want under 3s", elapsed)
	}
	<-done
	srv.Close() // a second Close does nothing
}

func TestFaultEndpointMatching(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	access, refresh := login(t, srv, keyA)

	srv.InjectFault(aisquaretest.Fault{Endpoint: aisquaretest.EndpointVerify, Status: 500})
	checkStatus(t, verifyToken(t, srv, access), 500)
	checkStatus(t, verifyToken(t, srv, access), 500) // Count 0 lasts until ClearFaults
	checkStatus(t, refreshToken(t, srv, refresh), 200)
	checkStatus(t, getMe(t, srv, "Bearer "+access), 200)

	srv.ClearFaults()
	checkStatus(t, verifyToken(t, srv, access), 200)

	srv.InjectFault(aisquaretest.Fault{Status: 503, Count: 3})
	checkStatus(t, verifyToken(t, srv, access), 503)
	checkStatus(t, getMe(t, srv, "Bearer "+access), 503)
	checkStatus(t, post(t, srv.URL+aisquaretest.PathLogin, `{"api_key": "`+keyA+`"}`), 503)
	checkStatus(t, getMe(t, srv, "Bearer "+access), 200)
}

func TestFaultQueueOrder(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	srv.InjectFault(aisquaretest.Fault{Endpoint: "login", Status: 500, Count: 1})
	srv.InjectFault(aisquaretest.Fault{Endpoint: "me", Status: 504, Count: 1})
	srv.InjectFault(aisquaretest.Fault{Endpoint: "login", Status: 502, Count: 1})
	body := `{"api_key": "` + keyA + `"}`

	checkStatus(t, post(t, srv.URL+aisquaretest.PathLogin, body), 500)
	checkStatus(t, post(t, srv.URL+aisquaretest.PathLogin, body), 502)
	checkStatus(t, post(t, srv.URL+aisquaretest.PathLogin, body), 200)
	checkStatus(t, getMe(t, srv, ""), 504)
}

func TestFaultWrongMethodNotFaulted(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	srv.InjectFault(aisquaretest.Fault{Endpoint: "login", Status: 500, Count: 1})

	checkStatus(t, send(t, http.MethodGet, srv.URL+aisquaretest.PathLogin, ""), 405)
	checkStatus(t, post(t, srv.URL+aisquaretest.PathLogin, `{"api_key": "`+keyA+`"}`), 500)
}

func TestInjectFaultPanics(t *testing.T) {
	t.Parallel()
	srv := newServer(t, aisquaretest.Options{})

	tests := []struct {
		name  string
		fault aisquaretest.Fault
	}{
		{"unknown endpoint", aisquaretest.Fault{Endpoint: "logout", Status: 500}},
		{"status too low", aisquaretest.Fault{Status: 99}},
		{"status too high", aisquaretest.Fault{Status: 600}},
		{"negative count", aisquaretest.Fault{Status: 500, Count: -1}},
		{"negative latency", aisquaretest.Fault{Latency: -time.Second}},
		{"negative retry after", aisquaretest.Fault{Status: 429, RetryAfter: -1}},
		{"no effect", aisquaretest.Fault{Endpoint: "login", Count: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Errorf("InjectFault(%+v) did not panic", tt.fault)
				}
			}()
			srv.InjectFault(tt.fault)
		})
	}
}

func TestFaultJSON(t *testing.T) {
	t.Parallel()
	fault := aisquaretest.Fault{Endpoint: "me", Status: 429, RetryAfter: 3, Latency: 250 * time.Millisecond, Count: 2}

	encoded, err := json.Marshal(fault)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	want := `{"endpoint":"me","status":429,"retry_after":3,"latency_ms":250,"count":2}`
	if string(encoded) != want {
		t.Errorf("Marshal = %s, want %s", encoded, want)
	}

	var decoded aisquaretest.Fault
	if err := json.Unmarshal(encoded, &decoded); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if decoded != fault {
		t.Errorf("Unmarshal = %+v, want %+v", decoded, fault)
	}

	if err := json.Unmarshal([]byte(`{"status": 500, "latency": 100}`), &decoded); err == nil {
		t.Error("Unmarshal accepted the unknown field latency, want an error")
	}
}

func TestSetLifetimes(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})

	srv.SetLifetimes(2*time.Minute, time.Hour)
	access, refresh := login(t, srv, keyA)
	checkLifetime(t, access, 120)
	checkLifetime(t, refresh, 3600)

	srv.SetLifetimes(0, 0)
	access, refresh = login(t, srv, keyA)
	checkLifetime(t, access, 7*24*3600)
	checkLifetime(t, refresh, 30*24*3600)
}

func checkLifetime(t *testing.T, token string, wantSeconds int64) {
	t.Helper()
	claims := claimsOf(t, token)
	if got := intClaim(t, claims, "exp") - intClaim(t, claims, "iat"); got != wantSeconds {
		t.Errorf("%v exp - iat = %d, want %d", claims["token_type"], got, wantSeconds)
	}
}

func TestUnknownPathAndMethod(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	notFound := map[string]string{"detail": "Not found.", "code": "not_found"}

	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantBody   map[string]string
		wantAllow  string
	}{
		{"unknown path", http.MethodGet, "/api/v1/nothing/", 404, notFound, ""},
		{"missing trailing slash", http.MethodPost, "/api/v1/token/api-key", 404, notFound, ""},
		{"extra segment", http.MethodPost, "/api/v1/token/api-key/x/", 404, notFound, ""},
		{"root", http.MethodGet, "/", 404, notFound, ""},
		{"GET on login", http.MethodGet, aisquaretest.PathLogin, 405,
			map[string]string{"detail": `Method "GET" not allowed.`, "code": "method_not_allowed"}, "POST"},
		{"PUT on refresh", http.MethodPut, aisquaretest.PathRefresh, 405,
			map[string]string{"detail": `Method "PUT" not allowed.`, "code": "method_not_allowed"}, "POST"},
		{"POST on me", http.MethodPost, aisquaretest.PathMe, 405,
			map[string]string{"detail": `Method "POST" not allowed.`, "code": "method_not_allowed"}, "GET"},
		{"unknown control", http.MethodGet, "/_emulator/nothing", 404, notFound, ""},
		{"GET on control reset", http.MethodGet, "/_emulator/counters/reset", 405,
			map[string]string{"detail": `Method "GET" not allowed.`, "code": "method_not_allowed"}, "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := send(t, tt.method, srv.URL+tt.path, "")
			checkResponse(t, res, tt.wantStatus, tt.wantBody)
			if got := res.header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
		})
	}
}

func TestOversizedBody(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	body := `{"api_key": "` + keyA + `"}`
	padding := aisquaretest.MaxRequestBodyBytes - len(body)

	atLimit := body + strings.Repeat(" ", padding)
	checkStatus(t, post(t, srv.URL+aisquaretest.PathLogin, atLimit), 200)

	overLimit := body + strings.Repeat(" ", padding+1)
	checkResponse(t, post(t, srv.URL+aisquaretest.PathLogin, overLimit), 400,
		map[string]string{"error": "request body is larger than 65536 bytes", "code": "invalid_request"})

	farOverLimit := `{"refresh": "` + strings.Repeat("a", 200<<10) + `"}`
	checkStatus(t, post(t, srv.URL+aisquaretest.PathRefresh, farOverLimit), 400)
	checkStatus(t, post(t, srv.URL+"/_emulator/users", farOverLimit), 400)

	if got := srv.Counters().Requests[aisquaretest.EndpointLogin]; got != 2 {
		t.Errorf("login requests = %d, want 2 including the oversized one", got)
	}
}

func TestControlUsers(t *testing.T) {
	t.Parallel()
	srv := newServer(t, aisquaretest.Options{})
	usersURL := srv.URL + "/_emulator/users"

	res := post(t, usersURL, `{"name": "team-a", "api_key": "`+keyA+`"}`)
	checkStatus(t, res, 201)
	if res.body["name"] != "team-a" || res.body["user_id"] != json.Number("1") || len(res.body) != 2 {
		t.Errorf("add user body = %s, want {\"name\":\"team-a\",\"user_id\":1}", res.raw)
	}
	res = post(t, usersURL, `{"name": "team-b", "api_key": "`+keyB+`"}`)
	if res.body["user_id"] != json.Number("2") {
		t.Errorf("second user body = %s, want user_id 2", res.raw)
	}
	res = post(t, usersURL, `{"name": "team-a", "api_key": "replaced-key"}`)
	if res.status != 201 || res.body["user_id"] != json.Number("1") {
		t.Errorf("replace key: status %d, body %s; want 201 and user_id 1", res.status, res.raw)
	}
	login(t, srv, "replaced-key")

	res = send(t, http.MethodGet, usersURL, "")
	checkStatus(t, res, 200)
	wantList := `{"users":[{"name":"team-a","user_id":1},{"name":"team-b","user_id":2}]}` + "\n"
	if res.raw != wantList {
		t.Errorf("user list = %s, want %s", res.raw, wantList)
	}

	for _, tt := range []struct {
		name       string
		body       string
		wantStatus int
	}{
		{"missing name", `{"api_key": "k1"}`, 400},
		{"missing api_key", `{"name": "team-c"}`, 400},
		{"invalid name", `{"name": "team c", "api_key": "k1"}`, 400},
		{"unknown field", `{"name": "team-c", "api_key": "k1", "admin": true}`, 400},
		{"not JSON", `name=team-c`, 400},
		{"key of another user", `{"name": "team-c", "api_key": "` + keyB + `"}`, 409},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := post(t, usersURL, tt.body)
			checkStatus(t, res, tt.wantStatus)
			if _, ok := res.body["detail"].(string); !ok {
				t.Errorf("error body = %s, want a detail", res.raw)
			}
			if strings.Contains(res.raw, keyB) {
				t.Errorf("error body %s contains an API key", res.raw)
			}
		})
	}

	_, refresh := login(t, srv, keyB)
	checkStatus(t, post(t, usersURL+"/team-b/revoke-sessions", ""), 204)
	checkResponse(t, refreshToken(t, srv, refresh), 401, tokenNotValid)
	checkStatus(t, post(t, usersURL+"/nobody/revoke-sessions", ""), 404)

	checkStatus(t, send(t, http.MethodDelete, usersURL+"/team-b", ""), 204)
	if got := srv.UserID("team-b"); got != 0 {
		t.Errorf("UserID after DELETE = %d, want 0", got)
	}
	checkStatus(t, send(t, http.MethodDelete, usersURL+"/team-b", ""), 404)
	checkStatus(t, send(t, http.MethodGet, usersURL+"/team-a", ""), 405)
}

func TestControlCounters(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	access, refresh := login(t, srv, keyA)
	post(t, srv.URL+aisquaretest.PathLogin, `{"api_key": "wrong"}`)

	res := send(t, http.MethodGet, srv.URL+"/_emulator/counters", "")
	checkStatus(t, res, 200)
	var decoded struct {
		Total aisquaretest.Counters            `json:"total"`
		Users map[string]aisquaretest.Counters `json:"users"`
	}
	if err := json.Unmarshal([]byte(res.raw), &decoded); err != nil {
		t.Fatalf("decoding counters %s: %v", res.raw, err)
	}
	checkCounters(t, "total", decoded.Total, aisquaretest.Counters{Logins: 1, Requests: map[string]int{"login": 2}})
	checkCounters(t, "team-a", decoded.Users["team-a"], aisquaretest.Counters{Logins: 1, Requests: map[string]int{"login": 1}})
	if _, ok := decoded.Users["team-b"]; !ok {
		t.Errorf("counters %s have no entry for team-b", res.raw)
	}
	for _, secret := range []string{keyA, keyB, access, refresh} {
		if strings.Contains(res.raw, secret) {
			t.Errorf("counters %s contain a key or token", res.raw)
		}
	}

	checkStatus(t, post(t, srv.URL+"/_emulator/counters/reset", ""), 204)
	checkCounters(t, "total after reset", srv.Counters(), aisquaretest.Counters{})
}

func TestControlFaults(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	faultsURL := srv.URL + "/_emulator/faults"

	res := post(t, faultsURL, `{"endpoint": "login", "status": 429, "retry_after": 2, "count": 1}`)
	checkStatus(t, res, 201)
	res = post(t, faultsURL, `{"endpoint": "me", "latency_ms": 120, "count": 1}`)
	checkStatus(t, res, 201)

	res = send(t, http.MethodGet, faultsURL, "")
	wantList := `{"faults":[{"endpoint":"login","status":429,"retry_after":2,"latency_ms":0,"count":1},` +
		`{"endpoint":"me","status":0,"retry_after":0,"latency_ms":120,"count":1}]}` + "\n"
	if res.raw != wantList {
		t.Errorf("fault list = %s, want %s", res.raw, wantList)
	}

	res = post(t, srv.URL+aisquaretest.PathLogin, `{"api_key": "`+keyA+`"}`)
	checkStatus(t, res, 429)
	if got := res.header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want 2", got)
	}
	access, _ := login(t, srv, keyA)
	start := time.Now()
	checkStatus(t, getMe(t, srv, "Bearer "+access), 200)
	if elapsed := time.Since(start); elapsed < 120*time.Millisecond {
		t.Errorf("me took %s, want at least the injected 120ms", elapsed)
	}

	for _, body := range []string{
		`{"endpoint": "logout", "status": 500}`,
		`{"status": 1000}`,
		`{"status": 500, "latency": 100}`,
		`{"endpoint": "login"}`,
		`not json`,
	} {
		checkStatus(t, post(t, faultsURL, body), 400)
	}

	post(t, faultsURL, `{"status": 500}`)
	checkStatus(t, send(t, http.MethodDelete, faultsURL, ""), 204)
	login(t, srv, keyA)
}

func TestControlSettings(t *testing.T) {
	t.Parallel()
	srv := newServerWithUsers(t, aisquaretest.Options{})
	settingsURL := srv.URL + "/_emulator/settings"

	res := send(t, http.MethodGet, settingsURL, "")
	want := `{"access_ttl_seconds":604800,"refresh_ttl_seconds":2592000,"rotate_refresh":false}` + "\n"
	if res.status != 200 || res.raw != want {
		t.Errorf("GET settings = %d %s, want 200 %s", res.status, res.raw, want)
	}

	res = send(t, http.MethodPut, settingsURL, `{"access_ttl_seconds": 60, "rotate_refresh": true}`)
	want = `{"access_ttl_seconds":60,"refresh_ttl_seconds":2592000,"rotate_refresh":true}` + "\n"
	if res.status != 200 || res.raw != want {
		t.Errorf("PUT settings = %d %s, want 200 %s", res.status, res.raw, want)
	}
	res = send(t, http.MethodPut, settingsURL, `{"refresh_ttl_seconds": 120}`)
	want = `{"access_ttl_seconds":60,"refresh_ttl_seconds":120,"rotate_refresh":true}` + "\n"
	if res.raw != want {
		t.Errorf("second PUT settings = %s, want %s", res.raw, want)
	}

	access, refresh := login(t, srv, keyA)
	checkLifetime(t, access, 60)
	checkLifetime(t, refresh, 120)
	if _, ok := refreshToken(t, srv, refresh).body["refresh"]; !ok {
		t.Error("refresh after rotate_refresh true returned no refresh token")
	}

	for _, body := range []string{
		`{"access_ttl_seconds": 0}`,
		`{"refresh_ttl_seconds": -5}`,
		`{"access_ttl_seconds": 10, "refresh_ttl_seconds": 0}`,
		`{"access_ttl_seconds": "60"}`,
		`{"rotate": true}`,
	} {
		checkStatus(t, send(t, http.MethodPut, settingsURL, body), 400)
	}
	res = send(t, http.MethodGet, settingsURL, "")
	if res.raw != want {
		t.Errorf("settings after rejected updates = %s, want unchanged %s", res.raw, want)
	}
}

func TestControlHealth(t *testing.T) {
	t.Parallel()
	srv := newServer(t, aisquaretest.Options{})

	checkResponse(t, send(t, http.MethodGet, srv.URL+"/_emulator/health", ""), 200, map[string]string{"status": "ok"})
	checkStatus(t, post(t, srv.URL+"/_emulator/health", ""), 405)
	if got := srv.Counters().Requests; len(got) != 0 {
		t.Errorf("Requests after control calls = %v, want none", got)
	}
}

func TestLoggerOmitsSecrets(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	srv := newServerWithUsers(t, aisquaretest.Options{RotateRefresh: true, Logger: log.New(logs, "", 0)})

	access, refresh := login(t, srv, keyA)
	res := refreshToken(t, srv, refresh)
	newRefresh, _ := res.body["refresh"].(string)
	verifyToken(t, srv, access)
	getMe(t, srv, "Bearer "+access)
	blacklistToken(t, srv, newRefresh)
	refreshToken(t, srv, refresh)
	post(t, srv.URL+aisquaretest.PathLogin, `{"api_key": "wrong-key-secret"}`)
	send(t, http.MethodGet, srv.URL+"/_emulator/counters?api_key="+keyB, "")

	output := logs.String()
	for _, secret := range []string{keyA, keyB, "wrong-key-secret", access, refresh, newRefresh} {
		if strings.Contains(output, secret) {
			t.Errorf("log contains a key or token:\n%s", output)
		}
	}
	for _, want := range []string{
		"POST /api/v1/token/api-key/ 200 user=team-a",
		"POST /api/v1/token/refresh/ 401 user=team-a",
		"GET /api/v1/iam/iamuserdetails/me/ 200 user=team-a",
		"POST /api/v1/token/api-key/ 401 user=-",
		"GET /_emulator/counters 200",
	} {
		if !strings.Contains(output, want) {
			t.Errorf("log has no line with %q:\n%s", want, output)
		}
	}
}

func TestUnstartedServer(t *testing.T) {
	t.Parallel()
	srv := aisquaretest.NewUnstartedServer(aisquaretest.Options{})
	t.Cleanup(srv.Close)
	srv.AddUser("team-a", keyA)

	srv.Start()
	login(t, srv, keyA)

	defer func() {
		if recover() == nil {
			t.Error("second Start did not panic")
		}
	}()
	srv.Start()
}

func TestServerURL(t *testing.T) {
	t.Parallel()
	srv := newServer(t, aisquaretest.Options{})
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[0-9]+$`).MatchString(srv.URL) {
		t.Errorf("URL = %q, want http://127.0.0.1:PORT", srv.URL)
	}
}

func TestStartServer(t *testing.T) {
	t.Parallel()

	srv, err := aisquaretest.StartServer("localhost:0", aisquaretest.Options{})
	if err != nil {
		t.Fatalf("StartServer(localhost:0): %v", err)
	}
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Errorf("URL = %q, want localhost to listen on 127.0.0.1", srv.URL)
	}
	checkStatus(t, send(t, http.MethodGet, srv.URL+"/_emulator/health", ""), 200)

	if srv, err := aisquaretest.StartServer("0.0.0.0:0", aisquaretest.Options{}); err == nil {
		srv.Close()
		t.Error("StartServer(0.0.0.0:0) succeeded, want an error")
	}
}

func TestValidateListenAddress(t *testing.T) {
	t.Parallel()

	tests := []struct {
		addr    string
		wantErr string // "" means valid
	}{
		{"127.0.0.1:8585", ""},
		{"127.0.0.1:0", ""},
		{"127.1.2.3:80", ""},
		{"localhost:8585", ""},
		{"LOCALHOST:8585", ""},
		{"[::1]:8585", ""},
		{"0.0.0.0:8585", "not a loopback address"},
		{":8585", "not a loopback address"},
		{"[::]:8585", "not a loopback address"},
		{"192.168.1.10:8585", "not a loopback address"},
		{"example.com:8585", "not a loopback address"},
		{"localhost.example.com:8585", "not a loopback address"},
		{"127.0.0.1", "use host:port"},
		{"127.0.0.1:http", "not a number"},
		{"127.0.0.1:65536", "not a number"},
		{"127.0.0.1:-1", "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			err := aisquaretest.ValidateListenAddress(tt.addr)
			if tt.wantErr == "" && err != nil {
				t.Errorf("ValidateListenAddress(%q) = %v, want nil", tt.addr, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("ValidateListenAddress(%q) = %v, want an error containing %q", tt.addr, err, tt.wantErr)
			}
		})
	}
}

func TestValidateUserName(t *testing.T) {
	t.Parallel()

	for _, name := range []string{"team-a", "A.b_c+d-1", strings.Repeat("x", 150)} {
		if err := aisquaretest.ValidateUserName(name); err != nil {
			t.Errorf("ValidateUserName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", "team a", "team/a", "team@a", "équipe", strings.Repeat("x", 151)} {
		if err := aisquaretest.ValidateUserName(name); err == nil {
			t.Errorf("ValidateUserName(%q) = nil, want an error", name)
		}
	}
}
