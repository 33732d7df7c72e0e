package aisquare

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// newTestClient returns a client for the server at baseURL with short
// timeouts.
func newTestClient(t *testing.T, baseURL string, timeout time.Duration, retries int) *client {
	t.Helper()

	cfg := defaultConfig()
	cfg.BaseURL = baseURL
	cfg.RequestTimeout = timeout
	cfg.MaxRetries = retries

	c, err := newClient(cfg, hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("newClient() error = %v", err)
	}

	return c
}

// newStubServer starts a server that serves every request with handler
// and counts the requests.
func newStubServer(t *testing.T, handler http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()

	var calls atomic.Int32

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		handler(w, r)
	}))
	t.Cleanup(srv.Close)

	return srv, &calls
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func TestClientLoginRequest(t *testing.T) {
	t.Parallel()

	srv, calls := newStubServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != defaultLoginPath {
			t.Errorf("request = %s %s; want POST %s", r.Method, r.URL.Path, defaultLoginPath)
		}

		if got := r.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q; want application/json", got)
		}

		var body map[string]string
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("decode body: %v", err)
		}

		if len(body) != 1 || body["api_key"] != "key-1" {
			t.Errorf("body = %v; want only api_key=key-1", body)
		}

		writeJSON(w, 200, `{"access":"a1","refresh":"r1"}`)
	})

	pair, err := newTestClient(t, srv.URL, time.Second, 0).Login(context.Background(), "key-1")
	if err != nil {
		t.Fatalf("Login() error = %v", err)
	}

	if pair.Access != "a1" || pair.Refresh != "r1" {
		t.Errorf("Login() = %+v; want access a1, refresh r1", pair)
	}

	if got := calls.Load(); got != 1 {
		t.Errorf("calls = %d; want 1", got)
	}
}

func TestClientUserInfoSendsBearer(t *testing.T) {
	t.Parallel()

	srv, _ := newStubServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != userInfoPath {
			t.Errorf("request = %s %s; want GET %s", r.Method, r.URL.Path, userInfoPath)
		}

		if got := r.Header.Get("Authorization"); got != "Bearer access-1" {
			t.Errorf("Authorization = %q; want Bearer access-1", got)
		}

		writeJSON(w, 200, `{"id":7,"username":"team-a","email":"a@example.invalid"}`)
	})

	info, err := newTestClient(t, srv.URL, time.Second, 0).UserInfo(context.Background(), "access-1")
	if err != nil {
		t.Fatalf("UserInfo() error = %v", err)
	}

	if info.ID.String() != "7" || info.Username != "team-a" {
		t.Errorf("UserInfo() = %+v; want id 7, username team-a", info)
	}
}

func TestClientErrorShapes(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{
			name:    "DetailShape",
			status:  401,
			body:    `{"detail":"No active account found","code":"authentication_failed"}`,
			wantErr: "AISquare login returned HTTP 401 (authentication_failed): No active account found",
		},
		{
			name:    "ErrorShape",
			status:  400,
			body:    `{"error":"api_key is required","code":"invalid_request"}`,
			wantErr: "AISquare login returned HTTP 400 (invalid_request): api_key is required",
		},
		{
			name:    "FieldErrors",
			status:  400,
			body:    `{"api_key":["This field is required."],"other":["Bad."]}`,
			wantErr: "AISquare login returned HTTP 400: api_key: This field is required.; other: Bad.",
		},
		{
			name:    "NotJSON",
			status:  403,
			body:    `<html>forbidden</html>`,
			wantErr: "AISquare login returned HTTP 403: Forbidden",
		},
		{
			name:    "EchoedSecretsRedacted",
			status:  401,
			body:    `{"detail":"key secret-key-123 and token aaaaaaaaaa.bbbbbbbbbb.cccccccccc rejected","code":"x"}`,
			wantErr: "AISquare login returned HTTP 401 (x): key [redacted] and token [redacted] rejected",
		},
		{
			name:    "LongDetailCut",
			status:  401,
			body:    `{"detail":"` + strings.Repeat("x", 500) + `"}`,
			wantErr: "AISquare login returned HTTP 401: " + strings.Repeat("x", maxDetailLength) + "...",
		},
		{
			name:    "Redirect",
			status:  307,
			body:    ``,
			wantErr: "AISquare login returned HTTP 307: unexpected redirect; set base_url to the address that answers without redirects",
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			srv, calls := newStubServer(t, func(w http.ResponseWriter, _ *http.Request) {
				if tc.status == 307 {
					w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
				}

				writeJSON(w, tc.status, tc.body)
			})

			_, err := newTestClient(t, srv.URL, time.Second, 3).Login(context.Background(), "secret-key-123")
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Login() error = %v; want %q", err, tc.wantErr)
			}

			if got := calls.Load(); got != 1 {
				t.Errorf("calls = %d; want 1, because a 3xx or 4xx is not retried", got)
			}
		})
	}
}

func TestClientRetriesServerErrors(t *testing.T) {
	t.Parallel()

	srv, calls := newStubServer(t, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 503, `{"detail":"down","code":"unavailable"}`)
	})

	_, err := newTestClient(t, srv.URL, 10*time.Second, 2).Login(context.Background(), "k")

	want := "AISquare login returned HTTP 503 (unavailable): down"
	if err == nil || err.Error() != want {
		t.Errorf("Login() error = %v; want %q", err, want)
	}

	if got := calls.Load(); got != 3 {
		t.Errorf("calls = %d; want 3 (1 try and 2 retries)", got)
	}
}

func TestClientRetrySucceeds(t *testing.T) {
	t.Parallel()

	var seen atomic.Int32

	srv, calls := newStubServer(t, func(w http.ResponseWriter, _ *http.Request) {
		if seen.Add(1) < 3 {
			writeJSON(w, 502, `{}`)
			return
		}

		writeJSON(w, 200, `{"access":"a"}`)
	})

	pair, err := newTestClient(t, srv.URL, 10*time.Second, 3).Refresh(context.Background(), "r")
	if err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}

	if pair.Access != "a" || pair.Refresh != "" {
		t.Errorf("Refresh() = %+v; want access a and no refresh", pair)
	}

	if got := calls.Load(); got != 3 {
		t.Errorf("calls = %d; want 3", got)
	}
}

func TestClientHonoursRetryAfter(t *testing.T) {
	t.Parallel()

	var (
		first time.Time
		seen  atomic.Int32
	)

	srv, calls := newStubServer(t, func(w http.ResponseWriter, _ *http.Request) {
		if seen.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			writeJSON(w, 429, `{"detail":"slow down","code":"throttled"}`)

			return
		}

		if waited := time.Since(first); waited < time.Second {
			t.Errorf("retry came after %s; want at least the 1s of Retry-After", waited)
		}

		writeJSON(w, 200, `{}`)
	})

	if err := newTestClient(t, srv.URL, 5*time.Second, 3).Revoke(context.Background(), "r"); err != nil {
		t.Fatalf("Revoke() error = %v", err)
	}

	if got := calls.Load(); got != 2 {
		t.Errorf("calls = %d; want 2", got)
	}
}

func TestClientRetryAfterPastDeadline(t *testing.T) {
	t.Parallel()

	srv, calls := newStubServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "20")
		writeJSON(w, 429, `{"detail":"slow down","code":"throttled"}`)
	})

	start := time.Now()
	err := newTestClient(t, srv.URL, 2*time.Second, 3).Revoke(context.Background(), "refresh-token-1")

	want := "AISquare revoke returned HTTP 429 (throttled): slow down; no time is left to retry within the 2s request timeout"
	if err == nil || err.Error() != want {
		t.Errorf("Revoke() error = %v; want %q", err, want)
	}

	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Revoke() took %s; want an immediate failure", elapsed)
	}

	if got := calls.Load(); got != 1 {
		t.Errorf("calls = %d; want 1", got)
	}
}

func TestClientTimeout(t *testing.T) {
	t.Parallel()

	release := make(chan struct{})
	srv, _ := newStubServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })

	start := time.Now()
	_, err := newTestClient(t, srv.URL, 500*time.Millisecond, 3).Login(context.Background(), "k")
	elapsed := time.Since(start)

	if err == nil || !strings.HasPrefix(err.Error(), "AISquare login timed out after 500ms (request_timeout); check that base_url "+srv.URL+" is reachable") {
		t.Errorf("Login() error = %v; want a timeout naming request_timeout and base_url", err)
	}

	if elapsed < 500*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("Login() took %s; want about the 500ms request_timeout", elapsed)
	}
}

func TestClientDeadUpstream(t *testing.T) {
	t.Parallel()

	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()

	start := time.Now()
	_, err := newTestClient(t, url, 3*time.Second, 2).Login(context.Background(), "k")

	if err == nil || !strings.Contains(err.Error(), "AISquare login request failed") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Login() error = %v; want a connection refused error", err)
	}

	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Login() took %s; want at most the 3s request_timeout", elapsed)
	}
}

func TestClientMalformedSuccess(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		body    string
		wantErr string
	}{
		{"NotJSON", `nope`, "decode AISquare login response: invalid character 'o' in literal null (expecting 'u')"},
		{"MissingRefresh", `{"access":"a"}`, "AISquare login response lacks the access or refresh token"},
		{"Empty", `{}`, "AISquare login response lacks the access or refresh token"},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			srv, calls := newStubServer(t, func(w http.ResponseWriter, _ *http.Request) {
				writeJSON(w, 200, tc.body)
			})

			_, err := newTestClient(t, srv.URL, time.Second, 3).Login(context.Background(), "k")
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Login() error = %v; want %q", err, tc.wantErr)
			}

			if got := calls.Load(); got != 1 {
				t.Errorf("calls = %d; want 1", got)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()

	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 7 ", 7 * time.Second},
		{"-1", 0},
		{"600", maxRetryAfter},
		{now.Add(4 * time.Second).Format(http.TimeFormat), 4 * time.Second},
		{now.Add(-4 * time.Second).Format(http.TimeFormat), 0},
		{"soon", 0},
	}

	for _, tc := range tests {
		if got := parseRetryAfter(tc.value, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s; want %s", tc.value, got, tc.want)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()

	for attempt := range 20 {
		full := min(retryBaseDelay<<min(attempt, 10), retryMaxDelay)

		for range 50 {
			got := backoff(attempt)
			if got < full/2 || got >= full {
				t.Fatalf("backoff(%d) = %s; want in [%s, %s)", attempt, got, full/2, full)
			}
		}
	}
}

func TestNewClientRejectsBadCA(t *testing.T) {
	t.Parallel()

	cfg := defaultConfig()
	cfg.CACert = "not a certificate"

	_, err := newClient(cfg, hclog.NewNullLogger())
	if err == nil || err.Error() != "ca_cert contains no PEM certificate" {
		t.Errorf("newClient() error = %v; want ca_cert contains no PEM certificate", err)
	}
}

func TestIsRejection(t *testing.T) {
	t.Parallel()

	tests := []struct {
		err  error
		want bool
	}{
		{&apiError{StatusCode: 400}, true},
		{&apiError{StatusCode: 401}, true},
		{&apiError{StatusCode: 403}, false},
		{&apiError{StatusCode: 503}, false},
		{errors.New("network"), false},
		{nil, false},
	}

	for _, tc := range tests {
		if got := isRejection(tc.err); got != tc.want {
			t.Errorf("isRejection(%v) = %v; want %v", tc.err, got, tc.want)
		}
	}
}

func TestClientVerify(t *testing.T) {
	t.Parallel()

	srv, calls := newStubServer(t, func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("decode body: %v", err)
		}

		if r.URL.Path != defaultVerifyPath || body["token"] == "" {
			t.Errorf("request = %s with %v; want %s with a token", r.URL.Path, body, defaultVerifyPath)
		}

		if body["token"] == "good-token" {
			writeJSON(w, 200, `{}`)
			return
		}

		writeJSON(w, 401, `{"detail":"Token is invalid or expired","code":"token_not_valid"}`)
	})

	c := newTestClient(t, srv.URL, time.Second, 3)

	if err := c.Verify(context.Background(), "good-token"); err != nil {
		t.Errorf("Verify(good) error = %v; want none", err)
	}

	err := c.Verify(context.Background(), "bad-token")
	if want := "AISquare verify returned HTTP 401 (token_not_valid): Token is invalid or expired"; err == nil || err.Error() != want {
		t.Errorf("Verify(bad) error = %v; want %q", err, want)
	}

	if got := calls.Load(); got != 2 {
		t.Errorf("calls = %d; want 2", got)
	}
}
