package aisquare

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// expirySkew is how long before an access token's exp claim the plugin
// treats the token as expired. It covers clock drift between Vault and
// AISquare and the time a client needs to use the token.
const expirySkew = 10 * time.Second

// session is one AISquare login: an access token, the refresh token that
// renews it, and the expiry of each as absolute times.
type session struct {
	AccessToken      string    `json:"access_token"`
	RefreshToken     string    `json:"refresh_token"`
	AccessExpiresAt  time.Time `json:"access_expires_at"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
}

// lifetimes are the token lifetimes assumed for tokens without an exp
// claim.
type lifetimes struct {
	access  time.Duration
	refresh time.Duration
}

// newSession builds a session from a login response received at now.
func newSession(pair *tokenPair, assumed lifetimes, now time.Time) *session {
	return &session{
		AccessToken:      pair.Access,
		RefreshToken:     pair.Refresh,
		AccessExpiresAt:  tokenExpiry(pair.Access, now, assumed.access),
		RefreshExpiresAt: tokenExpiry(pair.Refresh, now, assumed.refresh),
	}
}

// refreshed returns the session after a refresh response received at now.
// The refresh token and its expiry carry over unless AISquare rotated it.
func (s *session) refreshed(pair *tokenPair, assumed lifetimes, now time.Time) *session {
	next := &session{
		AccessToken:      pair.Access,
		RefreshToken:     s.RefreshToken,
		AccessExpiresAt:  tokenExpiry(pair.Access, now, assumed.access),
		RefreshExpiresAt: s.RefreshExpiresAt,
	}

	if pair.Refresh != "" {
		next.RefreshToken = pair.Refresh
		next.RefreshExpiresAt = tokenExpiry(pair.Refresh, now, assumed.refresh)
	}

	return next
}

// accessUsableUntil returns the time from which the plugin no longer hands
// out the access token: its expiry minus expirySkew.
func (s *session) accessUsableUntil() time.Time {
	return s.AccessExpiresAt.Add(-expirySkew)
}

// refreshUsable reports whether the refresh token can still be spent at
// now, keeping expirySkew in reserve. A nil session has none.
func (s *session) refreshUsable(now time.Time) bool {
	return s != nil && s.RefreshToken != "" && now.Round(0).Before(s.RefreshExpiresAt.Add(-expirySkew))
}

// tokenExpiry returns the exp claim of a JWT. A token that is not a JWT,
// or has no exp, is assumed to live for fallback from now. The signature
// is not checked, because only AISquare holds the signing key and AISquare
// checks it on every use.
func tokenExpiry(token string, now time.Time, fallback time.Duration) time.Time {
	exp, err := jwtExpiry(token)
	if err != nil {
		return now.Add(fallback).UTC()
	}

	return exp.UTC()
}

// errNoExpiry marks a JWT without an exp claim.
var errNoExpiry = errors.New("token has no exp claim")

// jwtExpiry parses the exp claim of a JWT without checking its signature.
func jwtExpiry(token string) (time.Time, error) {
	claims := jwt.MapClaims{}

	_, _, err := jwt.NewParser().ParseUnverified(token, claims)
	if err != nil {
		return time.Time{}, err
	}

	exp, err := claims.GetExpirationTime()
	if err != nil {
		return time.Time{}, err
	}

	if exp == nil {
		return time.Time{}, errNoExpiry
	}

	return exp.Time, nil
}
