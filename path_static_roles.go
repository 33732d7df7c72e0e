package aisquare

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	// staticRoleStoragePrefix is the storage prefix of static roles.
	staticRoleStoragePrefix = "static-roles/"

	// defaultRefreshBuffer suits AISquare's 7-day access tokens: a token
	// is replaced one day before it expires.
	defaultRefreshBuffer = 24 * time.Hour

	// minRefreshBuffer keeps a token from expiring before the periodic
	// function, which Vault runs about once a minute, replaces it.
	minRefreshBuffer = time.Minute
)

// staticRoleEntry is a static role: one AISquare session that Vault keeps
// fresh and hands to every reader of static-creds/<name>. The JSON names
// are the API field names.
type staticRoleEntry struct {
	APIKey        string        `json:"api_key"`
	RefreshBuffer time.Duration `json:"refresh_buffer"`
	Description   string        `json:"description"`
}

func (b *backend) pathStaticRoles() []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "static-roles/" + framework.GenericNameRegex("name"),
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefixAISquare,
				OperationSuffix: "static-role",
			},
			Fields: map[string]*framework.FieldSchema{
				"name": nameField("static role"),
				"api_key": {
					Type:        framework.TypeString,
					Description: "AISquare API key of the team's own user, used in place of the mount's key. Write-only. An empty string removes it. Surrounding whitespace is removed.",
					DisplayAttrs: &framework.DisplayAttributes{
						Sensitive: true,
					},
				},
				"refresh_buffer": {
					Type:        framework.TypeDurationSecond,
					Description: "How long before the access token's expiry Vault replaces it. At least 1m and shorter than the token's life.",
					Default:     int(defaultRefreshBuffer.Seconds()),
				},
				"description": {
					Type:        framework.TypeString,
					Description: "Human-readable description of the static role.",
				},
			},
			ExistenceCheck: b.pathStaticRoleExistenceCheck,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathStaticRolesRead,
					Summary:  "Read a static role and the state of its session, without tokens.",
				},
				logical.CreateOperation: &framework.PathOperation{
					Callback:                    b.pathStaticRolesWrite,
					Summary:                     "Create a static role, which logs in to AISquare once.",
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
				logical.UpdateOperation: &framework.PathOperation{
					Callback:                    b.pathStaticRolesWrite,
					Summary:                     "Update a static role. A new api_key starts a new session.",
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
				logical.DeleteOperation: &framework.PathOperation{
					Callback:                    b.pathStaticRolesDelete,
					Summary:                     "Delete a static role and blacklist its session's refresh token.",
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
			},
			HelpSynopsis:    pathStaticRolesHelpSyn,
			HelpDescription: pathStaticRolesHelpDesc,
		},
		{
			Pattern: "static-roles/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefixAISquare,
				OperationSuffix: "static-roles",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback: b.pathStaticRolesList,
					Summary:  "List the names of the static roles.",
				},
			},
			HelpSynopsis:    pathStaticRolesListHelpSyn,
			HelpDescription: pathStaticRolesListHelpDesc,
		},
		{
			Pattern: "static-roles/" + framework.GenericNameRegex("name") + "/rotate",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefixAISquare,
				OperationVerb:   "rotate",
				OperationSuffix: "static-role",
			},
			Fields: map[string]*framework.FieldSchema{
				"name": nameField("static role"),
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{
					Callback:                    b.pathStaticRoleRotate,
					Summary:                     "Refresh the static role's access token now, or log in again when the session is over.",
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
			},
			HelpSynopsis:    pathStaticRoleRotateHelpSyn,
			HelpDescription: pathStaticRoleRotateHelpDesc,
		},
	}
}

// pathStaticRolesRead handles read: the role's settings and its session's
// expiries and rotation state. Tokens and the API key are not returned.
func (b *backend) pathStaticRolesRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)

	lock := locksutil.LockForKey(b.roleLocks, staticRoleStoragePrefix+name)
	lock.RLock()
	defer lock.RUnlock()

	role, err := getStaticRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}

	if role == nil {
		return nil, nil
	}

	state, err := getStaticSession(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}

	data := map[string]any{
		"refresh_buffer":     int64(role.RefreshBuffer.Seconds()),
		"description":        role.Description,
		"api_key_configured": role.APIKey != "",
		"session_active":     state.active(),
		"last_error":         "",
	}

	if role.APIKey != "" {
		data["api_key_fingerprint"] = keyFingerprint(role.APIKey)
	}

	if state != nil {
		data["last_error"] = state.LastError

		if !state.RotatedAt.IsZero() {
			data["last_rotated"] = state.RotatedAt.Format(time.RFC3339)
		}
	}

	if state.active() {
		data["access_expires_at"] = state.Session.AccessExpiresAt.Format(time.RFC3339)
		data["refresh_expires_at"] = state.Session.RefreshExpiresAt.Format(time.RFC3339)
		data["next_rotation"] = state.dueAt(role).Format(time.RFC3339)
	}

	return &logical.Response{Data: data}, nil
}

// pathStaticRolesWrite handles create and update. Creating a role, or
// writing one whose session was cleared or logged in with another key than
// the role's current one, logs in, then stores the role and its new
// session. A failed login stores nothing.
func (b *backend) pathStaticRolesWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if resp := rejectUnknownFields(req, d); resp != nil {
		return resp, nil
	}

	name := d.Get("name").(string)
	if err := validateName(name); err != nil {
		return logical.ErrorResponse("invalid static role name: %s", err), nil
	}

	lock := locksutil.LockForKey(b.roleLocks, staticRoleStoragePrefix+name)
	lock.Lock()
	defer lock.Unlock()

	role, err := getStaticRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}

	create := role == nil
	if create {
		role = &staticRoleEntry{RefreshBuffer: defaultRefreshBuffer}
	}

	if resp := applyStaticRoleFields(role, d); resp != nil {
		return resp, nil
	}

	state, err := getStaticSession(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}

	c, cfg, err := b.getClient(ctx, req.Storage)
	if errors.Is(err, errNoConfig) {
		return noConfigResponse(req), nil
	}

	if err != nil {
		return nil, err
	}

	key := b.staticRoleKey(role, cfg)

	// A session that logged in with the role's current key is kept.
	if !create && state.active() && state.KeyFingerprint == keyFingerprint(key) {
		if resp := checkRefreshBuffer(role, state.Session, state.RotatedAt); resp != nil {
			return resp, nil
		}

		if err := putStaticRole(ctx, req.Storage, name, role); err != nil {
			return nil, err
		}

		b.Logger().Info("static role written", "role", name, "refresh_buffer", role.RefreshBuffer.String(), "new_session", false)

		return refreshBufferWarning(role), nil
	}

	sess, err := b.login(ctx, c, cfg, key)
	if isRejection(err) {
		return logical.ErrorResponse("AISquare rejected the login of static role %q: %s; check the api_key", name, err), nil
	}

	if err != nil {
		return nil, upstreamError("log in to AISquare for static role \""+name+"\"", err, "try again later, or check base_url and the network")
	}

	now := b.now()

	if resp := checkRefreshBuffer(role, sess, now); resp != nil {
		b.revokeQuietly(ctx, c, sess.RefreshToken, name)
		return resp, nil
	}

	// The role is stored before its session: a role without a session is
	// healed by the periodic function, a session without a role is not.
	if err := putStaticRole(ctx, req.Storage, name, role); err != nil {
		b.revokeQuietly(ctx, c, sess.RefreshToken, name)
		return nil, err
	}

	if err := putStaticSession(ctx, req.Storage, name, state.loggedIn(sess, key, now)); err != nil {
		b.revokeQuietly(ctx, c, sess.RefreshToken, name)
		return nil, err
	}

	if state.active() {
		b.revokeQuietly(ctx, c, state.Session.RefreshToken, name)
	}

	b.Logger().Info("static role written", "role", name, "refresh_buffer", role.RefreshBuffer.String(), "new_session", true)

	return refreshBufferWarning(role), nil
}

// refreshBufferWarning warns about a refresh buffer that leaves readers
// little time, or returns nil.
func refreshBufferWarning(role *staticRoleEntry) *logical.Response {
	if role.RefreshBuffer >= 2*minRefreshBuffer {
		return nil
	}

	resp := &logical.Response{}
	resp.AddWarning(fmt.Sprintf("refresh_buffer %s is short: Vault runs the background refresh about once a minute, "+
		"so readers may get a token with less than a minute left", role.RefreshBuffer))

	return resp
}

// applyStaticRoleFields copies the request's fields into role and
// validates them. It returns a 400 response naming the first invalid field.
func applyStaticRoleFields(role *staticRoleEntry, d *framework.FieldData) *logical.Response {
	if raw, ok := d.GetOk("api_key"); ok {
		role.APIKey = strings.TrimSpace(raw.(string))
	}

	if raw, ok := d.GetOk("refresh_buffer"); ok {
		role.RefreshBuffer = time.Duration(raw.(int)) * time.Second
	}

	if raw, ok := d.GetOk("description"); ok {
		role.Description = raw.(string)
	}

	if role.APIKey != "" {
		if err := validateAPIKey(role.APIKey); err != nil {
			return logical.ErrorResponse("invalid api_key: %s", err)
		}
	}

	if role.RefreshBuffer < minRefreshBuffer {
		return logical.ErrorResponse("invalid refresh_buffer %s: it must be at least %s, because Vault runs the background refresh about once a minute",
			role.RefreshBuffer, minRefreshBuffer)
	}

	if err := validateDescription(role.Description); err != nil {
		return logical.ErrorResponse("invalid description: %s", err)
	}

	return nil
}

// checkRefreshBuffer returns a 400 response when the role's refresh
// buffer is not shorter than the life of the session's access token,
// which issuedAt starts.
func checkRefreshBuffer(role *staticRoleEntry, sess *session, issuedAt time.Time) *logical.Response {
	life := sess.AccessExpiresAt.Sub(issuedAt).Round(time.Second)
	if role.RefreshBuffer < life {
		return nil
	}

	return logical.ErrorResponse("invalid refresh_buffer %s: it must be shorter than the access token's life of %s", role.RefreshBuffer, life)
}

// pathStaticRolesDelete handles delete. It blacklists the session's
// refresh token first. When AISquare cannot be reached the role is still
// deleted, with a warning, because the session ends on its own when the
// refresh token expires.
func (b *backend) pathStaticRolesDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)

	lock := locksutil.LockForKey(b.roleLocks, staticRoleStoragePrefix+name)
	lock.Lock()
	defer lock.Unlock()

	state, err := getStaticSession(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}

	var resp *logical.Response

	if state.active() && b.now().Before(state.Session.RefreshExpiresAt) {
		if err := b.revokeStaticSession(ctx, req.Storage, state.Session); err != nil {
			b.Logger().Warn("could not blacklist the refresh token of a deleted static role", "role", name, "error", err)

			resp = &logical.Response{}
			resp.AddWarning(fmt.Sprintf("The role was deleted, but its refresh token could not be blacklisted (%s); "+
				"the AISquare session stays open until %s.", err, state.Session.RefreshExpiresAt.Format(time.RFC3339)))
		}
	}

	if err := req.Storage.Delete(ctx, staticSessionStoragePrefix+name); err != nil {
		return nil, fmt.Errorf("delete session of static role %q: %w", name, err)
	}

	if err := req.Storage.Delete(ctx, staticRoleStoragePrefix+name); err != nil {
		return nil, fmt.Errorf("delete static role %q: %w", name, err)
	}

	b.Logger().Info("static role deleted", "role", name)

	return resp, nil
}

// revokeStaticSession blacklists a session's refresh token. 401 and 404
// mean the session is already over.
func (b *backend) revokeStaticSession(ctx context.Context, s logical.Storage, sess *session) error {
	c, _, err := b.getClient(ctx, s)
	if err != nil {
		return err
	}

	err = c.Revoke(ctx, sess.RefreshToken)
	if err != nil && !hasStatus(err, 401, 404) {
		return err
	}

	return nil
}

// pathStaticRolesList handles list.
func (b *backend) pathStaticRolesList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, staticRoleStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("list static roles: %w", err)
	}

	return logical.ListResponse(names), nil
}

// pathStaticRoleExistenceCheck reports to Vault whether a write creates or
// updates the static role, which decides the ACL capability it needs.
func (b *backend) pathStaticRoleExistenceCheck(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	role, err := getStaticRole(ctx, req.Storage, d.Get("name").(string))
	if err != nil {
		return false, err
	}

	return role != nil, nil
}

// staticRoleKey returns the API key that a static role logs in with.
func (b *backend) staticRoleKey(role *staticRoleEntry, cfg *aisquareConfig) string {
	if role.APIKey != "" {
		return role.APIKey
	}

	return cfg.APIKey
}

// getStaticRole loads a static role, or returns nil when it does not exist.
func getStaticRole(ctx context.Context, s logical.Storage, name string) (*staticRoleEntry, error) {
	var role staticRoleEntry

	found, err := getEntry(ctx, s, staticRoleStoragePrefix+name, fmt.Sprintf("static role %q", name), &role)
	if !found || err != nil {
		return nil, err
	}

	return &role, nil
}

// putStaticRole stores a static role.
func putStaticRole(ctx context.Context, s logical.Storage, name string, role *staticRoleEntry) error {
	return putEntry(ctx, s, staticRoleStoragePrefix+name, fmt.Sprintf("static role %q", name), role)
}

const pathStaticRolesHelpSyn = `Manage static roles: shared AISquare sessions that Vault keeps fresh.`

const pathStaticRolesHelpDesc = `
A static role holds one AISquare session, stored seal-wrapped, that every
reader of static-creds/<name> shares. Creating the role logs in with its
api_key, or the mount's key. A periodic function refreshes the access token
when it is within refresh_buffer of its expiry, logs in again when the
refresh token has expired or AISquare rejects it, and keeps serving the old,
still valid token while AISquare is down. Deleting the role blacklists the
session's refresh token.
`

const pathStaticRolesListHelpSyn = `List the static roles.`

const pathStaticRolesListHelpDesc = `Returns the names of the static roles that serve tokens under static-creds/<name>.`

const pathStaticRoleRotateHelpSyn = `Refresh a static role's access token now.`

const pathStaticRoleRotateHelpDesc = `
Refreshes the session's access token through its refresh token, or logs in
again with the API key when the refresh token has expired or AISquare
rejects it. Concurrent rotations of one role refresh once. The old access
token stays valid until its own expiry.
`
