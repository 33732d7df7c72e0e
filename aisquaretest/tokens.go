package aisquaretest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Values of the token_type claim.
const (
	tokenTypeAccess  = "access"
	tokenTypeRefresh = "refresh"
)

// tokenClaims are the claims of every token the emulator issues, as
// SimpleJWT writes them: token_type, exp, iat, jti and user_id.
type tokenClaims struct {
	TokenType string `json:"token_type"`
	UserID    int    `json:"user_id"`
	jwt.RegisteredClaims
}

// newTokenLocked returns a signed token of the given type for userID, valid
// from now for the current lifetime of that type, and its jti. The caller
// must hold e.mu.
func (e *Emulator) newTokenLocked(userID int, tokenType string) (token, jti string, err error) {
	ttl := e.accessTTL
	if tokenType == tokenTypeRefresh {
		ttl = e.refreshTTL
	}

	// exp = iat + lifetime in whole seconds, both taken from one clock read.
	issuedAt := time.Unix(e.now().Unix(), 0)
	jti = newJTI()
	claims := tokenClaims{
		TokenType: tokenType,
		UserID:    userID,
		RegisteredClaims: jwt.RegisteredClaims{
			ExpiresAt: jwt.NewNumericDate(issuedAt.Add(ttl)),
			IssuedAt:  jwt.NewNumericDate(issuedAt),
			ID:        jti,
		},
	}

	token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(e.secret)
	if err != nil {
		return "", "", fmt.Errorf("signing %s token: %w", tokenType, err)
	}
	return token, jti, nil
}

// newJTI returns 32 random hex digits, the length of the uuid4().hex that
// SimpleJWT uses as jti.
func newJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// parseToken returns the claims of raw when its signature is valid and it
// has every claim the emulator issues. It does not check exp, token_type or
// the blacklist, so that a caller can still attribute a rejected token to
// its user.
func (e *Emulator) parseToken(raw string) (*tokenClaims, error) {
	// The parser checks the signature and decodes the claims but skips exp,
	// because validation uses the Emulator's clock (see expired).
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithoutClaimsValidation(),
	)
	claims := &tokenClaims{}
	_, err := parser.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) {
		return e.secret, nil
	})
	if err != nil {
		return nil, err
	}

	switch {
	case claims.TokenType != tokenTypeAccess && claims.TokenType != tokenTypeRefresh:
		return nil, fmt.Errorf("invalid token_type %q", claims.TokenType)
	case claims.UserID <= 0:
		return nil, errors.New("missing user_id")
	case claims.ID == "":
		return nil, errors.New("missing jti")
	case claims.ExpiresAt == nil:
		return nil, errors.New("missing exp")
	case claims.IssuedAt == nil:
		return nil, errors.New("missing iat")
	}
	return claims, nil
}

// expired reports whether the token has expired at now. As in SimpleJWT's
// Token.check_exp, a token is expired from the second exp on.
func expired(claims *tokenClaims, now time.Time) bool {
	return claims.ExpiresAt.Unix() <= now.Unix()
}

// accessCheck is the outcome of checking an access token the way the "me"
// endpoint does.
type accessCheck struct {
	// userName and userID are set when the token's signature is valid and
	// its user exists, even if the token is rejected.
	userName string
	userID   int
	// failure is the 401 body, or nil when the token is accepted.
	failure *detailResponse
}

// checkAccessToken validates raw as SimpleJWT's JWTAuthentication does: a
// valid signature, token_type "access", not expired, and a user that still
// exists. Access tokens are stateless, so the blacklist is not consulted.
func (e *Emulator) checkAccessToken(raw string) accessCheck {
	invalid := &detailResponse{Detail: "Given token not valid for any token type", Code: "token_not_valid"}

	claims, err := e.parseToken(raw)
	if err != nil {
		return accessCheck{failure: invalid}
	}

	e.mu.Lock()
	defer e.mu.Unlock()

	u := e.usersByID[claims.UserID]
	check := accessCheck{}
	if u != nil {
		check.userName = u.name
		check.userID = u.id
	}

	switch {
	case claims.TokenType != tokenTypeAccess || expired(claims, e.now()):
		check.failure = invalid
	case u == nil:
		// SimpleJWT's JWTAuthentication.get_user raises this when the
		// token's user_id matches no user.
		check.failure = &detailResponse{Detail: "User not found", Code: "user_not_found"}
	}
	return check
}

// AccessTokenValid reports whether token would be accepted by the "me"
// endpoint, and returns the name of its user when it is. It does not count
// as a request.
func (e *Emulator) AccessTokenValid(token string) (userName string, ok bool) {
	check := e.checkAccessToken(token)
	if check.failure != nil {
		return "", false
	}
	return check.userName, true
}
