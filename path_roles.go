package aisquare

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// roleStoragePrefix is the storage prefix of dynamic roles.
const roleStoragePrefix = "roles/"

// roleEntry is a dynamic role: each read of creds/<name> logs in and
// returns a new access token as a lease. The JSON names are the API field
// names.
type roleEntry struct {
	TTL         time.Duration `json:"ttl"`
	MaxTTL      time.Duration `json:"max_ttl"`
	APIKey      string        `json:"api_key"`
	Description string        `json:"description"`
}

func (b *backend) pathRoles() []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "roles/" + framework.GenericNameRegex("name"),
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefixAISquare,
				OperationSuffix: "role",
			},
			Fields: map[string]*framework.FieldSchema{
				"name": nameField("role"),
				"ttl": {
					Type:        framework.TypeDurationSecond,
					Description: "Default lease TTL of the role's credentials. 0 uses the mount's default. The lease never outlives its access token.",
				},
				"max_ttl": {
					Type: framework.TypeDurationSecond,
					Description: "Maximum lease lifetime, bounded by the refresh token's life. 0 ends the lease with its access token. " +
						"A longer value lets renewals refresh the token, which Vault Agent templates do not re-render.",
				},
				"api_key": {
					Type:        framework.TypeString,
					Description: "AISquare API key of the team's own user, used in place of the mount's key. Write-only. An empty string removes it. Surrounding whitespace is removed.",
					DisplayAttrs: &framework.DisplayAttributes{
						Sensitive: true,
					},
				},
				"description": {
					Type:        framework.TypeString,
					Description: "Human-readable description of the role.",
				},
				"skip_verification": {
					Type:        framework.TypeBool,
					Description: "Save a new api_key without logging in to AISquare to prove it. Not stored.",
					Default:     false,
				},
			},
			ExistenceCheck: b.pathRoleExistenceCheck,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathRolesRead,
					Summary:  "Read a role. Its api_key is shown only as a fingerprint.",
				},
				logical.CreateOperation: &framework.PathOperation{
					Callback:                    b.pathRolesWrite,
					Summary:                     "Create a role.",
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
				logical.UpdateOperation: &framework.PathOperation{
					Callback:                    b.pathRolesWrite,
					Summary:                     "Update a role. Fields left out keep their value.",
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
				logical.DeleteOperation: &framework.PathOperation{
					Callback:                    b.pathRolesDelete,
					Summary:                     "Delete a role. Its leases can still be revoked but no longer renewed.",
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
			},
			HelpSynopsis:    pathRolesHelpSyn,
			HelpDescription: pathRolesHelpDesc,
		},
		{
			Pattern: "roles/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefixAISquare,
				OperationSuffix: "roles",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback: b.pathRolesList,
					Summary:  "List the names of the roles.",
				},
			},
			HelpSynopsis:    pathRolesListHelpSyn,
			HelpDescription: pathRolesListHelpDesc,
		},
	}
}

// pathRolesRead handles read. The API key is shown as a fingerprint.
func (b *backend) pathRolesRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)

	lock := locksutil.LockForKey(b.roleLocks, name)
	lock.RLock()
	defer lock.RUnlock()

	role, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}

	if role == nil {
		return nil, nil
	}

	data := map[string]any{
		"ttl":                int64(role.TTL.Seconds()),
		"max_ttl":            int64(role.MaxTTL.Seconds()),
		"description":        role.Description,
		"api_key_configured": role.APIKey != "",
	}

	if role.APIKey != "" {
		data["api_key_fingerprint"] = keyFingerprint(role.APIKey)
	}

	return &logical.Response{Data: data}, nil
}

// pathRolesWrite handles create and update. Fields left out keep their
// stored value. A new api_key logs in once, unless skip_verification is
// set, and the role is stored only if AISquare accepts it.
func (b *backend) pathRolesWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if resp := rejectUnknownFields(req, d); resp != nil {
		return resp, nil
	}

	name := d.Get("name").(string)
	if err := validateName(name); err != nil {
		return logical.ErrorResponse("invalid role name: %s", err), nil
	}

	lock := locksutil.LockForKey(b.roleLocks, name)
	lock.Lock()
	defer lock.Unlock()

	role, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}

	if role == nil {
		role = &roleEntry{}
	}

	oldKey := role.APIKey

	if resp := applyRoleFields(role, d); resp != nil {
		return resp, nil
	}

	cfg, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	if role.APIKey != "" && role.APIKey != oldKey && !d.Get("skip_verification").(bool) {
		if cfg == nil {
			return logical.ErrorResponse("cannot verify api_key: the mount has no config; write %sconfig first, or set skip_verification=true", req.MountPoint), nil
		}

		if resp := b.verifyAPIKey(ctx, cfg, role.APIKey, "api_key"); resp != nil {
			return resp, nil
		}
	}

	if err := putRole(ctx, req.Storage, name, role); err != nil {
		return nil, err
	}

	b.Logger().Debug("role written", "role", name, "ttl", role.TTL.String(), "max_ttl", role.MaxTTL.String(), "own_api_key", role.APIKey != "")

	return b.roleWarnings(role, cfg), nil
}

// applyRoleFields copies the request's fields into role and validates the
// result. It returns a 400 response naming the first invalid field.
func applyRoleFields(role *roleEntry, d *framework.FieldData) *logical.Response {
	if raw, ok := d.GetOk("ttl"); ok {
		role.TTL = time.Duration(raw.(int)) * time.Second
	}

	if raw, ok := d.GetOk("max_ttl"); ok {
		role.MaxTTL = time.Duration(raw.(int)) * time.Second
	}

	if raw, ok := d.GetOk("api_key"); ok {
		role.APIKey = strings.TrimSpace(raw.(string))
	}

	if raw, ok := d.GetOk("description"); ok {
		role.Description = raw.(string)
	}

	if role.TTL < 0 {
		return logical.ErrorResponse("invalid ttl %s: it must not be negative", role.TTL)
	}

	if role.MaxTTL < 0 {
		return logical.ErrorResponse("invalid max_ttl %s: it must not be negative", role.MaxTTL)
	}

	if role.MaxTTL > 0 && role.TTL > role.MaxTTL {
		return logical.ErrorResponse("ttl %s must not be longer than max_ttl %s", role.TTL, role.MaxTTL)
	}

	if role.APIKey != "" {
		if err := validateAPIKey(role.APIKey); err != nil {
			return logical.ErrorResponse("invalid api_key: %s", err)
		}
	}

	if err := validateDescription(role.Description); err != nil {
		return logical.ErrorResponse("invalid description: %s", err)
	}

	return nil
}

// roleWarnings returns a response that carries the warnings about a role
// just written, or nil when there are none.
func (b *backend) roleWarnings(role *roleEntry, cfg *aisquareConfig) *logical.Response {
	resp := &logical.Response{}

	if mountMax := b.System().MaxLeaseTTL(); mountMax > 0 {
		if role.TTL > mountMax {
			resp.AddWarning(fmt.Sprintf("ttl %s is longer than the mount's max lease TTL %s, so leases get at most %s", role.TTL, mountMax, mountMax))
		}

		if role.MaxTTL > mountMax {
			resp.AddWarning(fmt.Sprintf("max_ttl %s is longer than the mount's max lease TTL %s, so leases get at most %s", role.MaxTTL, mountMax, mountMax))
		}
	}

	if tokenLife := b.accessTokenLifetime(cfg); role.MaxTTL > tokenLife {
		resp.AddWarning(fmt.Sprintf(
			"max_ttl %s is longer than the AISquare access token's life (%s): a renewal past the token's expiry returns a new access_token "+
				"in the renewal's data, which Vault Agent templates do not re-render; for Agent consumers leave max_ttl unset "+
				"or at most the access token's life", role.MaxTTL, tokenLife.Round(time.Second)))
	}

	if len(resp.Warnings) == 0 {
		return nil
	}

	return resp
}

// pathRolesDelete handles delete. Leases of the role can still be revoked,
// because revocation needs only the refresh token kept in each lease.
func (b *backend) pathRolesDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)

	lock := locksutil.LockForKey(b.roleLocks, name)
	lock.Lock()
	defer lock.Unlock()

	if err := req.Storage.Delete(ctx, roleStoragePrefix+name); err != nil {
		return nil, fmt.Errorf("delete role %q: %w", name, err)
	}

	b.Logger().Debug("role deleted", "role", name)

	return nil, nil
}

// pathRolesList handles list.
func (b *backend) pathRolesList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}

	return logical.ListResponse(names), nil
}

// pathRoleExistenceCheck reports to Vault whether a write creates or updates
// the role, which decides the ACL capability it needs.
func (b *backend) pathRoleExistenceCheck(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	role, err := getRole(ctx, req.Storage, d.Get("name").(string))
	if err != nil {
		return false, err
	}

	return role != nil, nil
}

// getRole loads a role, or returns nil when it does not exist.
func getRole(ctx context.Context, s logical.Storage, name string) (*roleEntry, error) {
	var role roleEntry

	found, err := getEntry(ctx, s, roleStoragePrefix+name, fmt.Sprintf("role %q", name), &role)
	if !found || err != nil {
		return nil, err
	}

	return &role, nil
}

// putRole stores a role.
func putRole(ctx context.Context, s logical.Storage, name string, role *roleEntry) error {
	return putEntry(ctx, s, roleStoragePrefix+name, fmt.Sprintf("role %q", name), role)
}

const pathRolesHelpSyn = `Manage the roles that issue AISquare access tokens.`

const pathRolesHelpDesc = `
Each read of creds/<name> logs in to AISquare with the role's api_key, or the
mount's key when the role has none, and returns the access token as a lease.
ttl sets the default lease TTL. max_ttl bounds renewals: when unset, a lease
ends with its access token and Vault Agent reads a new one in time; when
longer than the token's life, a renewal past the token's expiry refreshes it
and returns the new token in the renewal's data, which Vault Agent templates
do not re-render. A new api_key is verified with one login unless
skip_verification is true.
`

const pathRolesListHelpSyn = `List the roles.`

const pathRolesListHelpDesc = `Returns the names of the roles that issue credentials under creds/<name>.`
