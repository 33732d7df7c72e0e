package aisquaretest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Paths of the emulated API. The trailing slashes are part of the paths, as
// in the real service, and a path without one gets 404.
const (
	PathLogin     = "/api/v1/token/api-key/"
	PathRefresh   = "/api/v1/token/refresh/"
	PathBlacklist = "/api/v1/token/blacklist/"
	PathVerify    = "/api/v1/token/verify/"
	PathMe        = "/api/v1/iam/iamuserdetails/me/"
)

// apiEndpoint is one endpoint of the emulated API.
type apiEndpoint struct {
	name   string // one of the Endpoint constants
	method string
	handle func(e *Emulator, r *http.Request, body []byte) apiResult
}

var apiEndpoints = map[string]apiEndpoint{
	PathLogin:     {EndpointLogin, http.MethodPost, (*Emulator).login},
	PathRefresh:   {EndpointRefresh, http.MethodPost, (*Emulator).refresh},
	PathBlacklist: {EndpointBlacklist, http.MethodPost, (*Emulator).blacklistToken},
	PathVerify:    {EndpointVerify, http.MethodPost, (*Emulator).verify},
	PathMe:        {EndpointMe, http.MethodGet, (*Emulator).me},
}

// apiResult is the response of an API endpoint handler.
type apiResult struct {
	status int
	body   any
	// userName names the user the request is counted for, or is "" when the
	// request names no existing user.
	userName string
	// note explains a failure in the request log, without secrets.
	note string
}

// Responses shared by several endpoints.
var (
	tokenInvalidOrExpired = detailResponse{Detail: "Token is invalid or expired", Code: "token_not_valid"}
	tokenBlacklisted      = detailResponse{Detail: "Token is blacklisted", Code: "token_not_valid"}
)

func invalidRequest(message string) apiResult {
	return apiResult{
		status: http.StatusBadRequest,
		body:   errorResponse{Error: message, Code: "invalid_request"},
		note:   message,
	}
}

func unauthorized(body detailResponse, userName, note string) apiResult {
	return apiResult{status: http.StatusUnauthorized, body: body, userName: userName, note: note}
}

// serveAPI counts the request, checks its method, reads the body, applies
// any injected fault and then runs the endpoint's handler.
func (e *Emulator) serveAPI(w http.ResponseWriter, r *http.Request, endpoint apiEndpoint, entry *requestLog) {
	e.countRequest(endpoint.name)

	if !checkMethod(w, r, endpoint.method) {
		return
	}

	// The body is read before any injected latency, because the server
	// notices a client that goes away only after the body is read.
	var body []byte
	if endpoint.method == http.MethodPost {
		var err error
		body, err = readBody(w, r)
		if errors.Is(err, errBodyTooLarge) {
			result := invalidRequest(err.Error())
			writeJSON(w, result.status, result.body)
			entry.note = result.note
			return
		}
		if err != nil {
			// The client went away or sent a broken body, so no one reads a
			// response.
			entry.note = err.Error()
			return
		}
	}

	if fault, ok := e.takeFault(endpoint.name); ok {
		if !e.applyFault(w, r, fault, entry) {
			return
		}
	}

	result := endpoint.handle(e, r, body)
	e.countResult(endpoint.name, result)
	entry.userName = result.userName
	entry.note = result.note

	if result.status == http.StatusUnauthorized {
		// DRF adds the challenge of the first authentication class, here
		// SimpleJWT's JWTAuthentication, to every 401.
		w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
	}
	writeJSON(w, result.status, result.body)
}

// applyFault waits for the fault's latency and sends its status if it has
// one. It returns true when the request should still be handled normally.
func (e *Emulator) applyFault(w http.ResponseWriter, r *http.Request, fault Fault, entry *requestLog) bool {
	var notes []string
	defer func() { entry.note = strings.Join(notes, ", ") }()

	if fault.Latency > 0 {
		notes = append(notes, "injected latency "+fault.Latency.String())
		if !sleepContext(r.Context(), fault.Latency) {
			notes = append(notes, "request canceled during latency")
			return false
		}
	}
	if fault.Status == 0 {
		return true
	}

	notes = append(notes, "injected status")
	if fault.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(fault.RetryAfter))
	}
	writeJSON(w, fault.Status, detailResponse{
		Detail: fmt.Sprintf("injected fault: status %d", fault.Status),
		Code:   "emulator_fault",
	})
	return false
}

// stringField returns the string field name of the JSON object in body, or
// "" when body is not a JSON object or the field is missing or not a string.
func stringField(body []byte, name string) string {
	var object map[string]json.RawMessage
	if err := json.Unmarshal(body, &object); err != nil {
		return ""
	}

	var value string
	if err := json.Unmarshal(object[name], &value); err != nil {
		return ""
	}
	return value
}

type tokenPair struct {
	Access  string `json:"access"`
	Refresh string `json:"refresh,omitempty"`
}

// login exchanges an API key for an access and a refresh token.
func (e *Emulator) login(_ *http.Request, body []byte) apiResult {
	apiKey := stringField(body, "api_key")
	if apiKey == "" {
		return invalidRequest("api_key is required")
	}

	e.mu.Lock()
	defer e.mu.Unlock()

	u := e.usersByKey[apiKey]
	if u == nil {
		return unauthorized(
			detailResponse{Detail: "No active account found with the given API key", Code: "authentication_failed"},
			"", "unknown API key")
	}

	access, _, err := e.newTokenLocked(u.id, tokenTypeAccess)
	if err != nil {
		return internalError(err, u.name)
	}
	refresh, refreshJTI, err := e.newTokenLocked(u.id, tokenTypeRefresh)
	if err != nil {
		return internalError(err, u.name)
	}
	u.sessions[refreshJTI] = struct{}{}

	return apiResult{status: http.StatusOK, body: tokenPair{Access: access, Refresh: refresh}, userName: u.name}
}

// refresh issues a new access token for a refresh token. With rotation on,
// it also issues a new refresh token and blacklists the old one in the same
// critical section, so a refresh token can be spent only once even by
// concurrent requests.
func (e *Emulator) refresh(_ *http.Request, body []byte) apiResult {
	raw := stringField(body, "refresh")
	if raw == "" {
		return invalidRequest("refresh is required")
	}

	claims, err := e.parseToken(raw)
	if err != nil {
		return unauthorized(tokenInvalidOrExpired, "", describeTokenError(err))
	}

	e.mu.Lock()
	defer e.mu.Unlock()

	u := e.usersByID[claims.UserID]
	userName := ""
	if u != nil {
		userName = u.name
	}

	_, blacklisted := e.blacklist[claims.ID]
	switch {
	case claims.TokenType != tokenTypeRefresh:
		return unauthorized(tokenInvalidOrExpired, userName, "token_type is "+claims.TokenType)
	case expired(claims, e.now()):
		return unauthorized(tokenInvalidOrExpired, userName, "token expired")
	case blacklisted:
		return unauthorized(tokenInvalidOrExpired, userName, "token blacklisted")
	case u == nil:
		return unauthorized(tokenInvalidOrExpired, "", "user removed")
	}

	access, _, err := e.newTokenLocked(u.id, tokenTypeAccess)
	if err != nil {
		return internalError(err, u.name)
	}
	pair := tokenPair{Access: access}

	if e.rotateRefresh {
		e.blacklist[claims.ID] = struct{}{}
		delete(u.sessions, claims.ID)

		refresh, refreshJTI, err := e.newTokenLocked(u.id, tokenTypeRefresh)
		if err != nil {
			return internalError(err, u.name)
		}
		u.sessions[refreshJTI] = struct{}{}
		pair.Refresh = refresh
	}

	return apiResult{status: http.StatusOK, body: pair, userName: u.name}
}

// blacklistToken blacklists a refresh token, which is how a client logs out.
// Like SimpleJWT, it accepts tokens of removed users.
func (e *Emulator) blacklistToken(_ *http.Request, body []byte) apiResult {
	raw := stringField(body, "refresh")
	if raw == "" {
		return invalidRequest("refresh is required")
	}

	claims, err := e.parseToken(raw)
	if err != nil {
		return unauthorized(tokenInvalidOrExpired, "", describeTokenError(err))
	}

	e.mu.Lock()
	defer e.mu.Unlock()

	u := e.usersByID[claims.UserID]
	userName := ""
	if u != nil {
		userName = u.name
	}

	_, blacklisted := e.blacklist[claims.ID]
	switch {
	case claims.TokenType != tokenTypeRefresh:
		return unauthorized(tokenInvalidOrExpired, userName, "token_type is "+claims.TokenType)
	case expired(claims, e.now()):
		return unauthorized(tokenInvalidOrExpired, userName, "token expired")
	case blacklisted:
		return unauthorized(tokenBlacklisted, userName, "token already blacklisted")
	}

	e.blacklist[claims.ID] = struct{}{}
	if u != nil {
		delete(u.sessions, claims.ID)
	}
	return apiResult{status: http.StatusOK, body: struct{}{}, userName: userName}
}

// verify checks a token of either type: a valid signature, not expired and,
// for refresh tokens, not blacklisted. It does not check that the user
// exists, as SimpleJWT's TokenVerifyView does not.
func (e *Emulator) verify(_ *http.Request, body []byte) apiResult {
	raw := stringField(body, "token")
	if raw == "" {
		return invalidRequest("token is required")
	}

	claims, err := e.parseToken(raw)
	if err != nil {
		return unauthorized(tokenInvalidOrExpired, "", describeTokenError(err))
	}

	e.mu.Lock()
	defer e.mu.Unlock()

	userName := ""
	if u := e.usersByID[claims.UserID]; u != nil {
		userName = u.name
	}

	_, blacklisted := e.blacklist[claims.ID]
	switch {
	case expired(claims, e.now()):
		return unauthorized(tokenInvalidOrExpired, userName, "token expired")
	case blacklisted:
		return unauthorized(tokenBlacklisted, userName, "token blacklisted")
	}
	return apiResult{status: http.StatusOK, body: struct{}{}, userName: userName}
}

type meResponse struct {
	ID       int    `json:"id"`
	Username string `json:"username"`
	Email    string `json:"email"`
}

// me returns the user of the access token in the Authorization header. It
// parses the header as SimpleJWT's JWTAuthentication does. A header that is
// missing or does not start with "Bearer" means no credentials, and a Bearer
// header must have exactly two space-separated parts.
func (e *Emulator) me(r *http.Request, _ []byte) apiResult {
	parts := strings.Fields(r.Header.Get("Authorization"))
	if len(parts) == 0 || parts[0] != "Bearer" {
		return unauthorized(
			detailResponse{Detail: "Authentication credentials were not provided.", Code: "not_authenticated"},
			"", "no Bearer credentials")
	}
	if len(parts) != 2 {
		return unauthorized(
			detailResponse{Detail: "Authorization header must contain two space-delimited values", Code: "bad_authorization_header"},
			"", "malformed Authorization header")
	}

	check := e.checkAccessToken(parts[1])
	if check.failure != nil {
		return unauthorized(*check.failure, check.userName, "access token rejected: "+check.failure.Code)
	}

	return apiResult{
		status:   http.StatusOK,
		body:     meResponse{ID: check.userID, Username: check.userName, Email: check.userName + "@emulator.invalid"},
		userName: check.userName,
	}
}

func internalError(err error, userName string) apiResult {
	return apiResult{
		status:   http.StatusInternalServerError,
		body:     detailResponse{Detail: "A server error occurred.", Code: "error"},
		userName: userName,
		note:     err.Error(),
	}
}

// describeTokenError names the reason a token failed to parse, for the
// request log. It returns a fixed text instead of err's message, which may
// quote parts of the token.
func describeTokenError(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "invalid token signature"
	default:
		return "invalid token claims"
	}
}
