package aisquare

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// signedToken returns an HS256 JWT with the given claims.
func signedToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()

	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("test-signing-key"))
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}

	return token
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	exp := now.Add(90 * time.Minute)

	tests := []struct {
		name  string
		token string
		want  time.Time
	}{
		{"JWTWithExp", signedToken(t, jwt.MapClaims{"exp": exp.Unix(), "token_type": "access"}), exp},
		{"JWTWithoutExp", signedToken(t, jwt.MapClaims{"token_type": "access"}), now.Add(time.Hour)},
		{"NotAJWT", "opaque-token", now.Add(time.Hour)},
		{"ExpNotANumber", signedToken(t, jwt.MapClaims{"exp": "tomorrow"}), now.Add(time.Hour)},
		{"ExpiredJWT", signedToken(t, jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()}), now.Add(-time.Minute)},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			if got := tokenExpiry(tc.token, now, time.Hour); !got.Equal(tc.want) {
				t.Errorf("tokenExpiry() = %s; want %s", got, tc.want)
			}
		})
	}
}

func TestSessionRefreshed(t *testing.T) {
	t.Parallel()

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	assumed := lifetimes{access: time.Hour, refresh: 24 * time.Hour}
	old := &session{
		AccessToken:      "old-access",
		RefreshToken:     "old-refresh",
		AccessExpiresAt:  now,
		RefreshExpiresAt: now.Add(10 * time.Hour),
	}

	withoutRotation := old.refreshed(&tokenPair{Access: "new-access"}, assumed, now)
	if withoutRotation.RefreshToken != "old-refresh" || !withoutRotation.RefreshExpiresAt.Equal(old.RefreshExpiresAt) {
		t.Errorf("refreshed() without rotation = %+v; want the old refresh token and expiry", withoutRotation)
	}

	if withoutRotation.AccessToken != "new-access" || !withoutRotation.AccessExpiresAt.Equal(now.Add(time.Hour)) {
		t.Errorf("refreshed() access = %q expiring %s; want new-access expiring %s", withoutRotation.AccessToken, withoutRotation.AccessExpiresAt, now.Add(time.Hour))
	}

	rotated := old.refreshed(&tokenPair{Access: "new-access", Refresh: "new-refresh"}, assumed, now)
	if rotated.RefreshToken != "new-refresh" || !rotated.RefreshExpiresAt.Equal(now.Add(24*time.Hour)) {
		t.Errorf("refreshed() with rotation = %+v; want new-refresh expiring %s", rotated, now.Add(24*time.Hour))
	}
}

func TestRefreshUsableBoundary(t *testing.T) {
	t.Parallel()

	expiry := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sess := &session{RefreshToken: "r", RefreshExpiresAt: expiry}

	tests := []struct {
		name string
		now  time.Time
		want bool
	}{
		{"OneNanosecondInsideSkew", expiry.Add(-expirySkew - time.Nanosecond), true},
		{"AtSkew", expiry.Add(-expirySkew), false},
		{"AfterExpiry", expiry.Add(time.Second), false},
	}

	for _, tc := range tests {
		if got := sess.refreshUsable(tc.now); got != tc.want {
			t.Errorf("%s: refreshUsable(%s) = %v; want %v", tc.name, tc.now, got, tc.want)
		}
	}

	var none *session
	if none.refreshUsable(expiry.Add(-time.Hour)) {
		t.Error("refreshUsable() on a nil session = true; want false")
	}
}
