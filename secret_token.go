package aisquare

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// secretTypeToken is the secret type of the leases that creds/<name>
// issues.
const secretTypeToken = "aisquare_token"

func (b *backend) secretToken() *framework.Secret {
	return &framework.Secret{
		Type:   secretTypeToken,
		Fields: tokenResponseFields,
		Renew:  b.secretTokenRenew,
		Revoke: b.secretTokenRevoke,
	}
}

// leaseState is the part of a lease kept in its internal data. The access token
// itself is not kept: only the client holds it.
type leaseState struct {
	Role             string
	RefreshToken     string
	AccessExpiresAt  time.Time
	RefreshExpiresAt time.Time
	// MaxExpiresAt is the latest time that renewals may extend the lease
	// to: the role's max_ttl from issue, bounded by the refresh token's
	// expiry, or the access token's expiry when the role has no max_ttl.
	MaxExpiresAt time.Time
}

// newLeaseState returns the state of a lease issued at now for role name.
func newLeaseState(name string, sess *session, role *roleEntry, now time.Time) *leaseState {
	maxExpiresAt := sess.accessUsableUntil()

	if role.MaxTTL > 0 {
		maxExpiresAt = now.Add(role.MaxTTL)

		if refreshEnd := sess.RefreshExpiresAt.Add(-expirySkew); maxExpiresAt.After(refreshEnd) {
			maxExpiresAt = refreshEnd
		}
	}

	return &leaseState{
		Role:             name,
		RefreshToken:     sess.RefreshToken,
		AccessExpiresAt:  sess.AccessExpiresAt,
		RefreshExpiresAt: sess.RefreshExpiresAt,
		MaxExpiresAt:     maxExpiresAt.UTC(),
	}
}

// end returns the time the lease may reach without a refresh.
func (l *leaseState) end() time.Time {
	end := l.AccessExpiresAt.Add(-expirySkew)
	if l.MaxExpiresAt.Before(end) {
		end = l.MaxExpiresAt
	}

	return end
}

// durations returns the TTL and max TTL of a lease response at now, for a
// lease issued at issueTime, or a new lease when issueTime is zero. The
// TTL is the requested duration cut at end(). On renewal Vault core grants the
// client's increment up to issue time plus max TTL, and it truncates both
// times to whole seconds, so the max TTL leaves out one second to keep the
// lease from passing end().
func (l *leaseState) durations(requested time.Duration, now, issueTime time.Time) (time.Duration, time.Duration) {
	end := l.end()
	ttl := min(requested, end.Sub(now)).Truncate(time.Second)

	if issueTime.IsZero() {
		return ttl, end.Sub(now).Truncate(time.Second)
	}

	maxTTL := end.Sub(issueTime.Truncate(time.Second)) - time.Second

	return ttl, maxTTL.Truncate(time.Second)
}

// internalData returns the lease's internal data, including the
// secret_type key that Vault uses to route renewals and revocations.
func (l *leaseState) internalData() map[string]any {
	return map[string]any{
		"secret_type":        secretTypeToken,
		"role":               l.Role,
		"refresh_token":      l.RefreshToken,
		"access_expires_at":  l.AccessExpiresAt.UTC().Format(time.RFC3339Nano),
		"refresh_expires_at": l.RefreshExpiresAt.UTC().Format(time.RFC3339Nano),
		"max_expires_at":     l.MaxExpiresAt.UTC().Format(time.RFC3339Nano),
	}
}

// parseLeaseState reads the internal data written by internalData.
func parseLeaseState(data map[string]any) (*leaseState, error) {
	var l leaseState

	var ok bool

	if l.Role, ok = data["role"].(string); !ok || l.Role == "" {
		return nil, errors.New("lease internal data lacks the role")
	}

	if l.RefreshToken, ok = data["refresh_token"].(string); !ok || l.RefreshToken == "" {
		return nil, errors.New("lease internal data lacks the refresh token")
	}

	times := []struct {
		key    string
		target *time.Time
	}{
		{"access_expires_at", &l.AccessExpiresAt},
		{"refresh_expires_at", &l.RefreshExpiresAt},
		{"max_expires_at", &l.MaxExpiresAt},
	}
	for _, t := range times {
		text, _ := data[t.key].(string)

		parsed, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			return nil, fmt.Errorf("lease internal data has an invalid %s", t.key)
		}

		*t.target = parsed
	}

	return &l, nil
}

// secretTokenRenew extends a lease up to its access token's expiry without
// calling AISquare. When the renewal requests more than the token has left
// and the lease's max TTL allows it, it refreshes the token first and
// returns the new one in the renewal's data.
func (b *backend) secretTokenRenew(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	lease, err := parseLeaseState(req.Secret.InternalData)
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}

	role, err := getRole(ctx, req.Storage, lease.Role)
	if err != nil {
		return nil, err
	}

	if role == nil {
		return logical.ErrorResponse("role %q no longer exists, so its leases cannot be renewed; read new credentials from another role", lease.Role), nil
	}

	now := b.now()

	requested := req.Secret.Increment
	if requested <= 0 {
		requested = role.TTL
	}

	if requested <= 0 {
		requested = b.System().DefaultLeaseTTL()
	}

	resp := &logical.Response{Secret: req.Secret}

	tokenEnd := lease.AccessExpiresAt.Add(-expirySkew)
	if now.Add(requested).After(tokenEnd) && lease.MaxExpiresAt.After(tokenEnd) {
		sess, err := b.refreshLease(ctx, req, lease)
		if err != nil {
			b.Logger().Warn("refresh on renewal failed; renewing up to the current token's expiry", "role", lease.Role, "error", err)
			resp.AddWarning(fmt.Sprintf("The access token could not be refreshed (%s), so the lease was renewed only up to the current token's expiry.", err))
		} else {
			lease.RefreshToken = sess.RefreshToken
			lease.AccessExpiresAt = sess.AccessExpiresAt
			lease.RefreshExpiresAt = sess.RefreshExpiresAt
			resp.Data = tokenData(sess)
		}
	}

	if !lease.end().After(now) {
		return logical.ErrorResponse("the lease cannot be renewed: its access token expires at %s; read new credentials from %screds/%s",
			lease.AccessExpiresAt.Format(time.RFC3339), req.MountPoint, lease.Role), nil
	}

	ttl, maxTTL := lease.durations(requested, now, req.Secret.IssueTime)
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = maxTTL
	resp.Secret.InternalData = lease.internalData()

	b.Logger().Debug("renewed lease", "role", lease.Role, "ttl", ttl.String(), "refreshed", resp.Data != nil)

	return resp, nil
}

// refreshLease spends the lease's refresh token once, even when renewals
// of the lease run concurrently.
func (b *backend) refreshLease(ctx context.Context, req *logical.Request, lease *leaseState) (*session, error) {
	c, cfg, err := b.getClient(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	now := b.now()
	key := refreshKey(lease.RefreshToken, lease.AccessExpiresAt)

	// NOTE: When a refresh response is lost after AISquare rotated the
	// refresh token, the client's retry sends the spent token and fails,
	// and the lease keeps a blacklisted refresh token until it ends.
	pair, err := b.refreshes.do(ctx, key, func() (*tokenPair, error) {
		return c.Refresh(ctx, lease.RefreshToken)
	})
	if err != nil {
		return nil, err
	}

	current := &session{RefreshToken: lease.RefreshToken, RefreshExpiresAt: lease.RefreshExpiresAt}

	return current.refreshed(pair, cfg.lifetimes(), now), nil
}

// secretTokenRevoke blacklists the lease's refresh token. AISquare
// responding 200, 401 or 404 means the session is over. Any other failure is
// returned, so Vault retries the revocation later.
func (b *backend) secretTokenRevoke(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	lease, err := parseLeaseState(req.Secret.InternalData)
	if err != nil {
		return nil, fmt.Errorf("revoke: %w", err)
	}

	if !b.now().Before(lease.RefreshExpiresAt) {
		b.Logger().Debug("revoked lease whose refresh token has expired", "role", lease.Role)
		return nil, nil
	}

	c, _, err := b.getClient(ctx, req.Storage)
	if errors.Is(err, errNoConfig) {
		return nil, fmt.Errorf("cannot blacklist the refresh token of role %q: the mount has no config; write %sconfig again, "+
			"or revoke with -force to drop the lease and leave the AISquare session open", lease.Role, req.MountPoint)
	}

	if err != nil {
		return nil, err
	}

	err = c.Revoke(ctx, lease.RefreshToken)
	if err != nil && !hasStatus(err, http.StatusUnauthorized, http.StatusNotFound) {
		return nil, fmt.Errorf("blacklist the refresh token of role %q: %w", lease.Role, err)
	}

	b.Logger().Debug("revoked lease", "role", lease.Role, "upstream_status_ok", err == nil)

	return nil, nil
}

// revokeQuietly blacklists a refresh token that no lease holds, logging a
// failure instead of returning it.
func (b *backend) revokeQuietly(ctx context.Context, c *client, refreshToken, role string) {
	if err := c.Revoke(ctx, refreshToken); err != nil && !hasStatus(err, http.StatusUnauthorized, http.StatusNotFound) {
		b.Logger().Warn("could not blacklist an unused refresh token", "role", role, "error", err)
	}
}
