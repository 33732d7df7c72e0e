package aisquare

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

const (
	// userInfoPath is AISquare's "who am I" endpoint, which accepts an
	// access token as a Bearer credential.
	userInfoPath = "/api/v1/iam/iamuserdetails/me/"

	// maxResponseBytes bounds how much of an AISquare response is read.
	maxResponseBytes = 1 << 20

	// maxDetailLength bounds how much of AISquare's error reason ends up in
	// an error message.
	maxDetailLength = 300

	// minRedactedLength is the length from which a sent secret is removed
	// from error text.
	minRedactedLength = 4

	// maxRetryAfter caps the wait that a 429 Retry-After header can ask for.
	maxRetryAfter = 30 * time.Second

	// retryBaseDelay and retryMaxDelay bound the jittered exponential
	// backoff between retries of 5xx responses and network errors.
	retryBaseDelay = 250 * time.Millisecond
	retryMaxDelay  = 5 * time.Second
)

// Upstream operation names, used in errors and logs.
const (
	opLogin    = "login"
	opRefresh  = "refresh"
	opRevoke   = "revoke"
	opVerify   = "verify"
	opUserInfo = "user info"
)

// jwtPattern matches strings shaped like a JWT, so that an error reason
// that echoes a token never reaches a log or a response.
var jwtPattern = regexp.MustCompile(`[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)

// tokenPair is a response of the login or refresh endpoint. Refresh is
// empty after a refresh when AISquare does not rotate refresh tokens.
type tokenPair struct {
	Access  string `json:"access"`
	Refresh string `json:"refresh"`
}

// userInfo is the part of AISquare's "who am I" response that the plugin
// reads.
type userInfo struct {
	ID       json.Number `json:"id"`
	Username string      `json:"username"`
	Email    string      `json:"email"`
}

// apiError is a non-2xx response of AISquare. Detail never contains a
// token or a key: see sanitizeDetail.
type apiError struct {
	Op         string
	StatusCode int
	Code       string
	Detail     string
	RetryAfter time.Duration
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("AISquare %s returned HTTP %d", e.Op, e.StatusCode)
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}

	if e.Detail != "" {
		msg += ": " + e.Detail
	}

	return msg
}

// retryable reports whether sending the same request again can succeed.
func (e *apiError) retryable() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// isRejection reports whether err is AISquare rejecting the credential
// that was sent: a 400 or 401 response.
func isRejection(err error) bool {
	var apiErr *apiError
	if !errors.As(err, &apiErr) {
		return false
	}

	return apiErr.StatusCode == http.StatusBadRequest || apiErr.StatusCode == http.StatusUnauthorized
}

// hasStatus reports whether err is an AISquare response with one of the
// given status codes.
func hasStatus(err error, codes ...int) bool {
	var apiErr *apiError
	if !errors.As(err, &apiErr) {
		return false
	}

	for _, code := range codes {
		if apiErr.StatusCode == code {
			return true
		}
	}

	return false
}

// client sends requests to AISquare's token API. It is safe for concurrent
// use and holds no credential: every call takes the key or token it sends.
type client struct {
	httpClient  *http.Client
	baseURL     string
	loginPath   string
	refreshPath string
	revokePath  string
	verifyPath  string
	timeout     time.Duration
	maxRetries  int
	logger      hclog.Logger
}

// newClient builds a client from a validated config.
func newClient(cfg *aisquareConfig, logger hclog.Logger) (*client, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}

	if cfg.CACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cfg.CACert)) {
			return nil, errors.New("ca_cert contains no PEM certificate")
		}

		transport.TLSClientConfig.RootCAs = pool
	}

	httpClient := &http.Client{
		Transport: transport,
		// A redirect would send a token or key to an address the operator
		// never configured, so the client stops at the first one.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}

	return &client{
		httpClient:  httpClient,
		baseURL:     strings.TrimSuffix(cfg.BaseURL, "/"),
		loginPath:   cfg.LoginPath,
		refreshPath: cfg.RefreshPath,
		revokePath:  cfg.RevokePath,
		verifyPath:  cfg.VerifyPath,
		timeout:     cfg.RequestTimeout,
		maxRetries:  cfg.MaxRetries,
		logger:      logger,
	}, nil
}

// Login exchanges an API key for an access and a refresh token.
func (c *client) Login(ctx context.Context, apiKey string) (*tokenPair, error) {
	var pair tokenPair

	err := c.do(ctx, opLogin, http.MethodPost, c.loginPath, map[string]string{"api_key": apiKey}, "", &pair, apiKey)
	if err != nil {
		return nil, err
	}

	if pair.Access == "" || pair.Refresh == "" {
		return nil, errors.New("AISquare login response lacks the access or refresh token")
	}

	return &pair, nil
}

// Refresh exchanges a refresh token for a new access token. The result's
// Refresh is set only when AISquare rotates refresh tokens, and then the old
// refresh token must not be spent again.
func (c *client) Refresh(ctx context.Context, refreshToken string) (*tokenPair, error) {
	var pair tokenPair

	err := c.do(ctx, opRefresh, http.MethodPost, c.refreshPath, map[string]string{"refresh": refreshToken}, "", &pair, refreshToken)
	if err != nil {
		return nil, err
	}

	if pair.Access == "" {
		return nil, errors.New("AISquare refresh response lacks the access token")
	}

	return &pair, nil
}

// Revoke blacklists a refresh token, which ends its session: it can no
// longer be refreshed. Access tokens already issued stay valid until they
// expire.
func (c *client) Revoke(ctx context.Context, refreshToken string) error {
	return c.do(ctx, opRevoke, http.MethodPost, c.revokePath, map[string]string{"refresh": refreshToken}, "", nil, refreshToken)
}

// Verify checks that AISquare accepts a token: its signature is valid, it
// has not expired and, for a refresh token, it is not blacklisted.
func (c *client) Verify(ctx context.Context, token string) error {
	return c.do(ctx, opVerify, http.MethodPost, c.verifyPath, map[string]string{"token": token}, "", nil, token)
}

// UserInfo returns the AISquare user that an access token acts as.
func (c *client) UserInfo(ctx context.Context, accessToken string) (*userInfo, error) {
	var info userInfo

	err := c.do(ctx, opUserInfo, http.MethodGet, userInfoPath, nil, accessToken, &info, accessToken)
	if err != nil {
		return nil, err
	}

	return &info, nil
}

// do sends one API call with retries. The whole call, waits included, ends
// within the configured request timeout. Each secret is redacted from any
// error text that AISquare sends back.
func (c *client) do(ctx context.Context, op, method, path string, body any, bearer string, out any, secrets ...string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var payload []byte
	if body != nil {
		var err error

		payload, err = json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode AISquare %s request: %w", op, err)
		}
	}

	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := c.send(ctx, op, method, path, payload, bearer, out, secrets)
		c.logger.Debug("AISquare request finished", "op", op, "attempt", attempt+1, "duration", time.Since(start).String(), "error", err)

		if err == nil {
			return nil
		}

		if ctx.Err() != nil {
			return c.contextError(ctx, op, err)
		}

		wait, retry := c.retryDelay(err, attempt)
		if !retry {
			return err
		}

		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return fmt.Errorf("%w; no time is left to retry within the %s request timeout", err, c.timeout)
		}

		c.logger.Debug("retrying AISquare request", "op", op, "attempt", attempt+1, "wait", wait.String(), "error", err)

		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return c.contextError(ctx, op, err)
		}
	}
}

// retryDelay returns how long to wait before retrying after err, and false
// when err must not be retried or the retries are spent.
func (c *client) retryDelay(err error, attempt int) (time.Duration, bool) {
	if attempt >= c.maxRetries {
		return 0, false
	}

	var apiErr *apiError
	if errors.As(err, &apiErr) {
		if !apiErr.retryable() {
			return 0, false
		}

		if apiErr.RetryAfter > 0 {
			return apiErr.RetryAfter, true
		}
	}

	var decodeErr *decodeError
	if errors.As(err, &decodeErr) {
		return 0, false
	}

	return backoff(attempt), true
}

// contextError explains why the context of a call ended, keeping the last
// upstream error as the cause.
func (c *client) contextError(ctx context.Context, op string, last error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("AISquare %s timed out after %s (request_timeout); check that base_url %s is reachable: %w", op, c.timeout, c.baseURL, last)
	}

	return fmt.Errorf("AISquare %s canceled: %w", op, last)
}

// backoff returns the wait before retry number attempt+1: exponential from
// retryBaseDelay, capped at retryMaxDelay, with jitter in [d/2, d).
func backoff(attempt int) time.Duration {
	d := retryBaseDelay << min(attempt, 10)
	d = min(d, retryMaxDelay)

	return d/2 + rand.N(d/2)
}

// decodeError is a 2xx response whose body is not the expected JSON.
// Sending the request again would spend the credential a second time, so
// it is not retried.
type decodeError struct {
	op  string
	err error
}

func (e *decodeError) Error() string {
	return fmt.Sprintf("decode AISquare %s response: %v", e.op, e.err)
}

func (e *decodeError) Unwrap() error { return e.err }

// send makes one HTTP request and decodes a 2xx body into out.
func (c *client) send(ctx context.Context, op, method, path string, payload []byte, bearer string, out any, secrets []string) error {
	var reader io.Reader
	if payload != nil {
		reader = bytes.NewReader(payload)
	}

	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, reader)
	if err != nil {
		return fmt.Errorf("build AISquare %s request: %w", op, err)
	}

	req.Header.Set("Accept", "application/json")

	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}

	resp, err := c.httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("AISquare %s request failed: %w", op, err)
	}
	defer resp.Body.Close()

	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("read AISquare %s response: %w", op, err)
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return newAPIError(op, resp, data, secrets)
	}

	if out == nil {
		return nil
	}

	if err := json.Unmarshal(data, out); err != nil {
		return &decodeError{op: op, err: err}
	}

	return nil
}

// newAPIError reads AISquare's error body. It accepts the SimpleJWT shape
// {"detail", "code"}, the {"error", "code"} shape and Django REST field
// errors such as {"api_key": ["This field is required."]}.
func newAPIError(op string, resp *http.Response, data []byte, secrets []string) *apiError {
	apiErr := &apiError{
		Op:         op,
		StatusCode: resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}

	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		apiErr.Detail = "unexpected redirect; set base_url to the address that answers without redirects"
		return apiErr
	}

	var body map[string]json.RawMessage
	if err := json.Unmarshal(data, &body); err != nil {
		apiErr.Detail = http.StatusText(resp.StatusCode)
		return apiErr
	}

	apiErr.Code = jsonString(body["code"])
	detail := jsonString(body["detail"])

	if detail == "" {
		detail = jsonString(body["error"])
	}

	if detail == "" {
		detail = fieldErrors(body)
	}

	if detail == "" {
		detail = http.StatusText(resp.StatusCode)
	}

	apiErr.Code = sanitizeDetail(apiErr.Code, secrets)
	apiErr.Detail = sanitizeDetail(detail, secrets)

	return apiErr
}

// jsonString returns raw as a string when it is a JSON string, else "".
func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}

	return s
}

// fieldErrors renders Django REST field errors as "field: message" pairs
// in a stable order.
func fieldErrors(body map[string]json.RawMessage) string {
	var parts []string

	for field, raw := range body {
		var messages []string
		if json.Unmarshal(raw, &messages) != nil || len(messages) == 0 {
			continue
		}

		parts = append(parts, field+": "+strings.Join(messages, " "))
	}

	slices.Sort(parts)

	return strings.Join(parts, "; ")
}

// sanitizeDetail removes every secret and every JWT-shaped string from
// text, replaces control characters and bounds its length.
func sanitizeDetail(text string, secrets []string) string {
	for _, secret := range secrets {
		// A secret shorter than minRedactedLength is not a real key or
		// token, and replacing it would mangle ordinary words.
		if len(secret) >= minRedactedLength {
			text = strings.ReplaceAll(text, secret, "[redacted]")
		}
	}

	text = jwtPattern.ReplaceAllString(text, "[redacted]")
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}

		return r
	}, text)

	if len(text) > maxDetailLength {
		text = strings.ToValidUTF8(text[:maxDetailLength], "") + "..."
	}

	return text
}

// parseRetryAfter reads a Retry-After header in seconds or as an HTTP date
// and caps it at maxRetryAfter. It returns 0 when the header is absent or
// invalid.
func parseRetryAfter(value string, now time.Time) time.Duration {
	if value == "" {
		return 0
	}

	var wait time.Duration

	if seconds, err := strconv.Atoi(strings.TrimSpace(value)); err == nil {
		wait = time.Duration(seconds) * time.Second
	} else if at, err := http.ParseTime(value); err == nil {
		wait = at.Sub(now)
	}

	if wait <= 0 {
		return 0
	}

	return min(wait, maxRetryAfter)
}
