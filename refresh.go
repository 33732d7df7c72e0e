package aisquare

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

const (
	// refreshResultTTL is how long the result of a refresh is kept for a
	// caller that presents the same session state again, such as a lease
	// renewal that Vault retries after the first response was lost.
	refreshResultTTL = 10 * time.Minute

	// maxRefreshResults bounds the number of kept results. Beyond it, the
	// oldest finished results are dropped first.
	maxRefreshResults = 10000
)

// refreshGroup shares one upstream refresh among the callers that present
// the same session state on this node. Callers that present it
// concurrently wait for that refresh and share its result, and callers
// that come within refreshResultTTL get the kept result. This matters because AISquare
// blacklists a rotated refresh token once it is spent, so a second refresh
// with it fails and would end the session.
type refreshGroup struct {
	mu    sync.Mutex
	calls map[string]*refreshCall
	now   func() time.Time
}

// refreshCall is one upstream refresh, in flight or finished.
type refreshCall struct {
	done     chan struct{}
	pair     *tokenPair
	err      error
	finished time.Time
}

// newRefreshGroup returns an empty group that reads time from now.
func newRefreshGroup(now func() time.Time) *refreshGroup {
	return &refreshGroup{
		calls: make(map[string]*refreshCall),
		now:   now,
	}
}

// refreshKey identifies a session state: the refresh token and the expiry
// of the access token that the caller holds. After a refresh without
// rotation the refresh token stays the same, but the access expiry moves,
// so the next refresh gets a new key.
func refreshKey(refreshToken string, accessExpiresAt time.Time) string {
	sum := sha256.Sum256([]byte(refreshToken + "\x00" + accessExpiresAt.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(sum[:])
}

// do runs refresh once for the state key and returns its result to every
// caller of that state. A failed refresh is not kept, so the next caller
// tries again.
func (g *refreshGroup) do(ctx context.Context, key string, refresh func() (*tokenPair, error)) (*tokenPair, error) {
	g.mu.Lock()
	g.prune()

	if call, ok := g.calls[key]; ok {
		g.mu.Unlock()

		select {
		case <-call.done:
			return call.pair, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}

	call := &refreshCall{done: make(chan struct{})}
	g.calls[key] = call
	g.mu.Unlock()

	call.pair, call.err = refresh()

	g.mu.Lock()
	if call.err != nil {
		delete(g.calls, key)
	} else {
		call.finished = g.now()
	}
	g.mu.Unlock()

	close(call.done)

	return call.pair, call.err
}

// prune drops results older than refreshResultTTL, and the oldest results
// while there are more than maxRefreshResults. The caller holds g.mu.
func (g *refreshGroup) prune() {
	now := g.now()

	for key, call := range g.calls {
		if !call.finished.IsZero() && now.Sub(call.finished) > refreshResultTTL {
			delete(g.calls, key)
		}
	}

	for len(g.calls) > maxRefreshResults {
		oldestKey := ""

		var oldest time.Time

		for key, call := range g.calls {
			if call.finished.IsZero() {
				continue
			}

			if oldestKey == "" || call.finished.Before(oldest) {
				oldestKey, oldest = key, call.finished
			}
		}

		if oldestKey == "" {
			return
		}

		delete(g.calls, oldestKey)
	}
}
