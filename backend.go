// Package aisquare is a Vault secrets engine that keeps an AISquare API key
// in Vault and hands out AISquare access tokens as Vault leases.
package aisquare

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin version that Vault shows and matches against the
// registered version. Builds set it with
// -ldflags "-X github.com/aisquare/vault-plugin-secrets-aisquare.Version=v1.2.3".
var Version = "v0.0.0-dev"

// operationPrefixAISquare prefixes the OpenAPI operation IDs of this plugin.
const operationPrefixAISquare = "aisquare"

// backend is the AISquare secrets engine of one mount.
type backend struct {
	*framework.Backend

	// clientLock guards client and config, a cache of the stored config and
	// the client built from it.
	clientLock sync.RWMutex
	client     *client
	config     *aisquareConfig

	// configLock serializes writes and deletes of the config.
	configLock sync.Mutex

	// roleLocks serializes the read-modify-write of one role.
	roleLocks []*locksutil.LockEntry

	// refreshes shares one upstream refresh among the renewals that present
	// the same session state.
	refreshes *refreshGroup

	// observedAccessTTL is the access token lifetime seen at the latest
	// login, used to warn about a role max_ttl that passes it.
	observedLock      sync.Mutex
	observedAccessTTL time.Duration

	// periodicLock guards lastPeriodicRun and periodicInterval, which
	// estimate when the periodic function runs next.
	periodicLock     sync.Mutex
	lastPeriodicRun  time.Time
	periodicInterval time.Duration

	// now is the clock of every expiry computation. Tests replace it.
	now func() time.Time
}

// Factory creates and sets up the backend of one mount.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()

	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}

	return b, nil
}

// newBackend builds a backend that is not set up yet.
func newBackend() *backend {
	b := &backend{
		roleLocks: locksutil.CreateLocks(),
		now:       time.Now,
	}

	b.refreshes = newRefreshGroup(func() time.Time { return b.now() })

	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{
				configStoragePath,
				roleStoragePrefix,
				staticRoleStoragePrefix,
				staticSessionStoragePrefix,
			},
		},
		Paths: framework.PathAppend(
			[]*framework.Path{
				b.pathConfig(),
				b.pathCreds(),
				b.pathStaticCreds(),
			},
			b.pathRoles(),
			b.pathStaticRoles(),
		),
		Secrets: []*framework.Secret{
			b.secretToken(),
		},
		PeriodicFunc:   b.periodicFunc,
		Invalidate:     b.invalidate,
		Clean:          func(context.Context) { b.reset() },
		RunningVersion: Version,
	}

	return b
}

// invalidate drops the cached client when another node changes the config.
func (b *backend) invalidate(_ context.Context, key string) {
	if key == configStoragePath {
		b.reset()
	}
}

// reset drops the cached config and client, so the next call loads them
// from storage.
func (b *backend) reset() {
	b.clientLock.Lock()
	defer b.clientLock.Unlock()

	b.client = nil
	b.config = nil
}

// getClient returns the cached client and the config it was built from,
// loading both on first use. It returns errNoConfig when the mount has no
// config.
func (b *backend) getClient(ctx context.Context, s logical.Storage) (*client, *aisquareConfig, error) {
	b.clientLock.RLock()
	c, cfg := b.client, b.config
	b.clientLock.RUnlock()

	if c != nil {
		return c, cfg, nil
	}

	// Go locks cannot be upgraded, so check again under the write lock:
	// another caller may have built the client in between.
	b.clientLock.Lock()
	defer b.clientLock.Unlock()

	if b.client != nil {
		return b.client, b.config, nil
	}

	cfg, err := getConfig(ctx, s)
	if err != nil {
		return nil, nil, err
	}

	if cfg == nil {
		return nil, nil, errNoConfig
	}

	c, err = newClient(cfg, b.Logger())
	if err != nil {
		return nil, nil, fmt.Errorf("build AISquare client: %w", err)
	}

	b.client, b.config = c, cfg

	return c, cfg, nil
}

// noConfigResponse is the 400 response of an operation that needs the
// mount's config when there is none.
func noConfigResponse(req *logical.Request) *logical.Response {
	return logical.ErrorResponse("the mount has no config: an operator must write %sconfig first", req.MountPoint)
}

// login opens a new AISquare session with key.
func (b *backend) login(ctx context.Context, c *client, cfg *aisquareConfig, key string) (*session, error) {
	now := b.now()

	pair, err := c.Login(ctx, key)
	if err != nil {
		return nil, err
	}

	sess := newSession(pair, cfg.lifetimes(), now)

	b.observedLock.Lock()
	b.observedAccessTTL = sess.AccessExpiresAt.Sub(now)
	b.observedLock.Unlock()

	return sess, nil
}

// accessTokenLifetime returns the access token lifetime seen at the latest
// login, or the configured assumption before the first login.
func (b *backend) accessTokenLifetime(cfg *aisquareConfig) time.Duration {
	b.observedLock.Lock()
	defer b.observedLock.Unlock()

	if b.observedAccessTTL > 0 {
		return b.observedAccessTTL
	}

	if cfg != nil {
		return cfg.DefaultAccessTokenTTL
	}

	return defaultAccessTokenTTL
}

// upstreamError turns an AISquare failure into a 502 error for the Vault
// client, with what to do next.
func upstreamError(action string, err error, next string) error {
	msg := fmt.Sprintf("%s: %s", action, err)
	if next != "" {
		msg += "; " + next
	}

	return logical.CodedError(502, msg)
}

const backendHelp = `
The AISquare secrets engine keeps an AISquare API key in Vault and issues
AISquare access tokens as Vault leases. Write the key to config, create a
role under roles/, then read creds/<role> for a token. Renewing the lease
extends it up to the token's expiry; revoking it blacklists the session's
refresh token at AISquare. Static roles under static-roles/ keep one shared
session fresh in the background, read from static-creds/<role>.
`
