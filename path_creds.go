package aisquare

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func (b *backend) pathCreds() *framework.Path {
	return &framework.Path{
		Pattern: "creds/" + framework.GenericNameRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixAISquare,
			OperationVerb:   "generate",
			OperationSuffix: "credentials",
		},
		Fields: map[string]*framework.FieldSchema{
			"name": nameField("role"),
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathCredsRead,
				Summary:  "Log in to AISquare for the role and return the access token as a lease.",
				// The read creates a lease, so it must run where storage
				// is writable.
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				Responses: map[int][]framework.Response{
					200: {{
						Description: "OK",
						Fields:      tokenResponseFields,
					}},
				},
			},
		},
		HelpSynopsis:    pathCredsHelpSyn,
		HelpDescription: pathCredsHelpDesc,
	}
}

// pathCredsRead handles read: it logs in with the role's key, or the
// mount's, and returns the access token as an aisquare_token lease.
func (b *backend) pathCredsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)

	role, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}

	if role == nil {
		return logical.ErrorResponse("role %q not found: create it with a write to %sroles/%s", name, req.MountPoint, name), nil
	}

	c, cfg, err := b.getClient(ctx, req.Storage)
	if errors.Is(err, errNoConfig) {
		return noConfigResponse(req), nil
	}

	if err != nil {
		return nil, err
	}

	key, keyOwner := role.APIKey, "the role's api_key"
	if key == "" {
		key, keyOwner = cfg.APIKey, "the mount's api_key"
	}

	sess, err := b.login(ctx, c, cfg, key)
	if isRejection(err) {
		// A 400 rather than a 5xx, because Vault clients retry 5xx responses
		// and a rejected key fails the same way every time.
		return logical.ErrorResponse("AISquare rejected the login of role %q with %s: %s; an operator must write a valid api_key to %s",
			name, keyOwner, err, keyLocation(req, name, role)), nil
	}

	if err != nil {
		return nil, upstreamError("log in to AISquare for role \""+name+"\"", err, "try again later, or check base_url and the network")
	}

	now := b.now()
	lease := newLeaseState(name, sess, role, now)

	requested := role.TTL
	if requested <= 0 {
		requested = b.System().DefaultLeaseTTL()
	}

	ttl, maxTTL := lease.durations(requested, now, time.Time{})
	if ttl <= 0 {
		b.revokeQuietly(ctx, c, sess.RefreshToken, name)

		return nil, upstreamError("issue a lease for role \""+name+"\"",
			errors.New("AISquare returned an access token that expires within the 10s expiry skew"),
			"check the clocks of Vault and AISquare")
	}

	resp := b.Secret(secretTypeToken).Response(tokenData(sess), lease.internalData())
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = maxTTL

	b.Logger().Debug("issued credentials", "role", name, "ttl", ttl.String(), "max_ttl", maxTTL.String(),
		"access_expires_at", sess.AccessExpiresAt.Format(time.RFC3339))

	return resp, nil
}

// keyLocation names the path where the key used for role name is written.
func keyLocation(req *logical.Request, name string, role *roleEntry) string {
	if role.APIKey != "" {
		return req.MountPoint + "roles/" + name
	}

	return req.MountPoint + "config"
}

// tokenData is the data of a creds response or a renewal that carries a
// new token.
func tokenData(sess *session) map[string]any {
	return map[string]any{
		"access_token": sess.AccessToken,
		"token_type":   "Bearer",
		"expires_at":   sess.AccessExpiresAt.UTC().Format(time.RFC3339),
	}
}

// tokenResponseFields documents the fields of tokenData.
var tokenResponseFields = map[string]*framework.FieldSchema{
	"access_token": {
		Type:        framework.TypeString,
		Description: "AISquare access token, sent as a Bearer token.",
	},
	"token_type": {
		Type:        framework.TypeString,
		Description: "Always Bearer.",
	},
	"expires_at": {
		Type:        framework.TypeString,
		Description: "Expiry of the access token in RFC 3339, from its exp claim.",
	},
}

const pathCredsHelpSyn = `Issue an AISquare access token for a role, as a Vault lease.`

const pathCredsHelpDesc = `
Each read logs in to AISquare and returns access_token, token_type and
expires_at. The lease never outlives the access token: its TTL ends 10s
before the token's exp, and by default its max TTL does too, so Vault Agent
reads a new token in time. The refresh token stays inside Vault. Revoking
the lease blacklists it at AISquare, which ends the session, but an access
token already handed out stays valid until its exp.
`
