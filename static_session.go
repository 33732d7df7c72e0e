package aisquare

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	// staticSessionStoragePrefix is the storage prefix of static role
	// sessions. It is seal-wrapped because the sessions hold tokens.
	staticSessionStoragePrefix = "static-sessions/"

	// defaultPeriodicInterval is how often Vault calls the periodic
	// function (its rollback period, 1 minute in Vault 1.21) until two
	// calls have been seen.
	defaultPeriodicInterval = time.Minute

	// maxRotationBackoff bounds the wait between refresh attempts while
	// AISquare fails.
	maxRotationBackoff = 5 * time.Minute
)

// errStaticRoleNotFound means the static role does not exist.
var errStaticRoleNotFound = errors.New("static role not found")

// staticSession is the stored state of a static role's session.
type staticSession struct {
	// Session is nil after AISquare rejected the session and no new login
	// has succeeded yet.
	Session *session `json:"session"`
	// Generation counts the sessions and refreshes stored for the role. It
	// only grows, so a rotation can tell whether another one ran while it
	// waited for the lock.
	Generation int64 `json:"generation"`
	// RotatedAt is when the current access token was obtained.
	RotatedAt time.Time `json:"rotated_at"`
	// LastError describes the latest failed refresh or login, without
	// secrets, and is empty after a success.
	LastError string `json:"last_error"`
	// Failures counts failed attempts since the latest success.
	Failures int `json:"failures"`
	// NextAttempt is when the periodic function may try again after a
	// failure.
	NextAttempt time.Time `json:"next_attempt"`
	// KeyFingerprint identifies the API key that the session logged in
	// with, so a changed key leads to a new login.
	KeyFingerprint string `json:"key_fingerprint"`
}

// active reports whether the state holds a session. It is nil-safe.
func (s *staticSession) active() bool {
	return s != nil && s.Session != nil
}

// dueAt returns when the periodic function replaces the access token.
func (s *staticSession) dueAt(role *staticRoleEntry) time.Time {
	return s.Session.AccessExpiresAt.Add(-role.RefreshBuffer)
}

// next returns the state that stores sess, obtained at now by a refresh
// of the current session.
func (s *staticSession) next(sess *session, now time.Time) *staticSession {
	var generation int64

	var fingerprint string

	if s != nil {
		generation, fingerprint = s.Generation, s.KeyFingerprint
	}

	return &staticSession{
		Session:        sess,
		Generation:     generation + 1,
		RotatedAt:      now,
		KeyFingerprint: fingerprint,
	}
}

// loggedIn returns the state that stores sess, obtained at now by a login
// with key.
func (s *staticSession) loggedIn(sess *session, key string, now time.Time) *staticSession {
	next := s.next(sess, now)
	next.KeyFingerprint = keyFingerprint(key)

	return next
}

// keyChanged reports whether the session logged in with another key than
// key. A state without a session, or from before fingerprints were kept,
// reports false.
func (s *staticSession) keyChanged(key string) bool {
	return s.active() && s.KeyFingerprint != "" && s.KeyFingerprint != keyFingerprint(key)
}

// failed returns the state after a failed attempt at now: the session is
// kept, and the next attempt waits with exponential backoff.
func (s *staticSession) failed(err error, now time.Time) *staticSession {
	next := &staticSession{}
	if s != nil {
		*next = *s
	}

	next.Failures++
	next.LastError = err.Error()
	next.NextAttempt = now.Add(rotationBackoff(next.Failures))

	return next
}

// cleared returns the state without its session, after AISquare rejected
// the session's tokens.
func (s *staticSession) cleared(err error) *staticSession {
	next := &staticSession{}
	if s != nil {
		*next = *s
	}

	next.Session = nil
	next.Generation++
	next.LastError = err.Error()

	return next
}

// rotationBackoff returns the wait after the given number of consecutive
// failures: 1m, 2m, 4m, then maxRotationBackoff.
func rotationBackoff(failures int) time.Duration {
	wait := defaultPeriodicInterval << min(max(failures-1, 0), 10)
	return min(wait, maxRotationBackoff)
}

// rotateStaticRole brings the session of static role name up to date and
// returns the stored state. Without force it acts only when the access
// token is within the refresh buffer of its expiry, or the role's API key
// changed, and no backoff is pending. With force it refreshes now, unless
// the stored generation is newer than seenGeneration: then another
// rotation finished while this one waited for the lock, and its result is
// returned without calling AISquare.
func (b *backend) rotateStaticRole(ctx context.Context, s logical.Storage, name string, force bool, seenGeneration int64) (*staticSession, error) {
	lock := locksutil.LockForKey(b.roleLocks, staticRoleStoragePrefix+name)
	lock.Lock()
	defer lock.Unlock()

	role, err := getStaticRole(ctx, s, name)
	if err != nil {
		return nil, err
	}

	if role == nil {
		return nil, errStaticRoleNotFound
	}

	state, err := getStaticSession(ctx, s, name)
	if err != nil {
		return nil, err
	}

	now := b.now()
	keyChanged := b.staticKeyChanged(ctx, s, role, state)

	switch {
	case force && state != nil && state.Generation > seenGeneration:
		return state, nil
	case !force && !keyChanged && state.active() && now.Before(state.dueAt(role)):
		return state, nil
	case !force && state != nil && now.Before(state.NextAttempt):
		return state, nil
	}

	next, err := b.replaceStaticSession(ctx, s, name, role, state, now, keyChanged)
	if err != nil {
		failed := next.failed(err, now)
		if putErr := putStaticSession(ctx, s, name, failed); putErr != nil {
			return nil, errors.Join(err, putErr)
		}

		b.Logger().Warn("could not replace the static role's access token; keeping the current one",
			"role", name, "failures", failed.Failures, "next_attempt", failed.NextAttempt.Format(time.RFC3339),
			"session_active", failed.active(), "error", err)

		return failed, err
	}

	if err := putStaticSession(ctx, s, name, next); err != nil {
		return nil, err
	}

	if keyChanged {
		if c, _, err := b.getClient(ctx, s); err == nil {
			b.revokeQuietly(ctx, c, state.Session.RefreshToken, name)
		}
	}

	return next, nil
}

// staticKeyChanged reports whether the API key that the role logs in with
// differs from the one its session logged in with. It reports false when
// the mount's config cannot be loaded, so that a storage fault never
// forces a login.
func (b *backend) staticKeyChanged(ctx context.Context, s logical.Storage, role *staticRoleEntry, state *staticSession) bool {
	if !state.active() {
		return false
	}

	_, cfg, err := b.getClient(ctx, s)
	if err != nil {
		return false
	}

	return state.keyChanged(b.staticRoleKey(role, cfg))
}

// replaceStaticSession returns a state with a new access token: it
// refreshes while the refresh token is usable and logs in again with the
// API key when the refresh token has expired, AISquare rejects it, or
// relogin is set. A rejected session is cleared in storage before the new
// login. On error it returns the state to record the failure on, which
// still holds the old session unless AISquare rejected it.
func (b *backend) replaceStaticSession(ctx context.Context, s logical.Storage, name string, role *staticRoleEntry,
	state *staticSession, now time.Time, relogin bool,
) (*staticSession, error) {
	c, cfg, err := b.getClient(ctx, s)
	if err != nil {
		return state, err
	}

	key := b.staticRoleKey(role, cfg)

	switch {
	case relogin:
		b.Logger().Info("the static role's API key changed; logging in with the new key", "role", name)
	case state.active() && state.Session.refreshUsable(now):
		pair, err := c.Refresh(ctx, state.Session.RefreshToken)
		if err == nil {
			b.Logger().Info("refreshed the static role's access token", "role", name)
			return state.next(state.Session.refreshed(pair, cfg.lifetimes(), now), now), nil
		}

		if !isRejection(err) {
			return state, fmt.Errorf("refresh the access token of static role %q: %w", name, err)
		}

		b.Logger().Warn("AISquare rejected the static role's session; clearing it and logging in again", "role", name, "error", err)

		state = state.cleared(err)
		if err := putStaticSession(ctx, s, name, state); err != nil {
			return state, err
		}
	case state.active():
		b.Logger().Info("the static role's refresh token has expired; logging in again", "role", name)
	}

	sess, err := b.login(ctx, c, cfg, key)
	if err != nil {
		return state, fmt.Errorf("log in for static role %q: %w", name, err)
	}

	b.Logger().Info("logged in again for the static role", "role", name)

	return state.loggedIn(sess, key, now), nil
}

// periodicFunc refreshes the sessions of static roles that are due. Vault
// calls it about once a minute. It does nothing where storage is not
// writable, because the active node does the work there.
func (b *backend) periodicFunc(ctx context.Context, req *logical.Request) error {
	if !b.storageWritable() {
		return nil
	}

	b.recordPeriodicRun(b.now())

	names, err := req.Storage.List(ctx, staticRoleStoragePrefix)
	if err != nil {
		return fmt.Errorf("list static roles: %w", err)
	}

	for _, name := range names {
		if ctx.Err() != nil {
			return ctx.Err()
		}

		// rotateStaticRole logs each failure with the role name; the
		// other roles still get their turn.
		_, _ = b.rotateStaticRole(ctx, req.Storage, name, false, 0)
	}

	return nil
}

// storageWritable reports whether this node writes storage: not a
// performance standby, and not a performance secondary unless the mount
// is local to it.
func (b *backend) storageWritable() bool {
	state := b.System().ReplicationState()

	if state.HasState(consts.ReplicationPerformanceStandby) {
		return false
	}

	if state.HasState(consts.ReplicationPerformanceSecondary) && !b.System().LocalMount() {
		return false
	}

	return true
}

// recordPeriodicRun notes a call of the periodic function, so that readers
// can learn when the next one is expected.
func (b *backend) recordPeriodicRun(now time.Time) {
	b.periodicLock.Lock()
	defer b.periodicLock.Unlock()

	if !b.lastPeriodicRun.IsZero() {
		if interval := now.Sub(b.lastPeriodicRun); interval >= time.Second && interval <= 10*time.Minute {
			b.periodicInterval = interval
		}
	}

	b.lastPeriodicRun = now
}

// untilNextPeriodicRun estimates the time until the periodic function runs
// again, at least one second. A node that has not run it yet assumes one
// second, so a reader asks again soon.
func (b *backend) untilNextPeriodicRun(now time.Time) time.Duration {
	b.periodicLock.Lock()
	defer b.periodicLock.Unlock()

	if b.lastPeriodicRun.IsZero() {
		return time.Second
	}

	interval := b.periodicInterval
	if interval <= 0 {
		interval = defaultPeriodicInterval
	}

	return max(b.lastPeriodicRun.Add(interval).Sub(now), time.Second)
}

// getStaticSession loads the session state of a static role, or returns
// nil when there is none.
func getStaticSession(ctx context.Context, s logical.Storage, name string) (*staticSession, error) {
	var state staticSession

	found, err := getEntry(ctx, s, staticSessionStoragePrefix+name, fmt.Sprintf("session of static role %q", name), &state)
	if !found || err != nil {
		return nil, err
	}

	return &state, nil
}

// putStaticSession stores the session state of a static role.
func putStaticSession(ctx context.Context, s logical.Storage, name string, state *staticSession) error {
	return putEntry(ctx, s, staticSessionStoragePrefix+name, fmt.Sprintf("session of static role %q", name), state)
}
