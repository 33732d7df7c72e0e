package aisquare

import (
	"context"
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func (b *backend) pathStaticCreds() *framework.Path {
	return &framework.Path{
		Pattern: "static-creds/" + framework.GenericNameRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixAISquare,
			OperationVerb:   "request",
			OperationSuffix: "static-role-credentials",
		},
		Fields: map[string]*framework.FieldSchema{
			"name": nameField("static role"),
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathStaticCredsRead,
				Summary:  "Return the static role's current access token, without calling AISquare.",
				Responses: map[int][]framework.Response{
					200: {{
						Description: "OK",
						Fields:      staticCredsResponseFields,
					}},
				},
			},
		},
		HelpSynopsis:    pathStaticCredsHelpSyn,
		HelpDescription: pathStaticCredsHelpDesc,
	}
}

// pathStaticCredsRead handles read: the stored access token, with ttl and
// rotation_period, which Vault Agent uses to render the next token on time.
func (b *backend) pathStaticCredsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)

	role, err := getStaticRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}

	if role == nil {
		return logical.ErrorResponse("static role %q not found: create it with a write to %sstatic-roles/%s", name, req.MountPoint, name), nil
	}

	state, err := getStaticSession(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}

	now := b.now()

	if !state.active() {
		reason := "no login has succeeded yet"
		if state != nil && state.LastError != "" {
			reason = state.LastError
		}

		return nil, logical.CodedError(http.StatusServiceUnavailable, "static role \""+name+"\" has no AISquare session ("+reason+
			"); the background refresh retries, or write "+req.MountPoint+"static-roles/"+name+"/rotate to retry now")
	}

	if !now.Before(state.Session.accessUsableUntil()) {
		return nil, logical.CodedError(http.StatusServiceUnavailable, "the access token of static role \""+name+"\" expired at "+
			state.Session.AccessExpiresAt.Format(time.RFC3339)+" and could not be replaced ("+state.LastError+
			"); write "+req.MountPoint+"static-roles/"+name+"/rotate to retry now")
	}

	wait := state.dueAt(role).Sub(now)
	if wait <= 0 {
		// The token is due but the periodic function has not replaced it
		// yet, so the reader should come back after its next run.
		wait = b.untilNextPeriodicRun(now)
	}

	period := state.Session.AccessExpiresAt.Sub(state.RotatedAt) - role.RefreshBuffer

	data := tokenData(state.Session)
	data["ttl"] = wholeSeconds(wait)
	data["rotation_period"] = wholeSeconds(max(period, time.Second))

	return &logical.Response{Data: data}, nil
}

// wholeSeconds rounds d up to whole seconds, so a reader that waits that
// long never comes back early.
func wholeSeconds(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}

// pathStaticRoleRotate handles a write to static-roles/<name>/rotate: it
// refreshes the session now, or logs in again when the session is over.
func (b *backend) pathStaticRoleRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)

	// The generation seen before waiting for the lock shows whether a
	// concurrent rotation already replaced the token.
	seen, err := getStaticSession(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}

	var seenGeneration int64
	if seen != nil {
		seenGeneration = seen.Generation
	}

	_, err = b.rotateStaticRole(ctx, req.Storage, name, true, seenGeneration)

	switch {
	case err == nil:
		return nil, nil
	case errors.Is(err, errStaticRoleNotFound):
		return logical.ErrorResponse("static role %q not found: create it with a write to %sstatic-roles/%s", name, req.MountPoint, name), nil
	case errors.Is(err, errNoConfig):
		return noConfigResponse(req), nil
	case isRejection(err):
		return logical.ErrorResponse("AISquare rejected the rotation of static role %q: %s; check the api_key", name, err), nil
	default:
		return nil, upstreamError("rotate static role \""+name+"\"", err, "the current token stays in use; try again later")
	}
}

// staticCredsResponseFields documents the fields of a static-creds read.
var staticCredsResponseFields = map[string]*framework.FieldSchema{
	"access_token":    tokenResponseFields["access_token"],
	"token_type":      tokenResponseFields["token_type"],
	"expires_at":      tokenResponseFields["expires_at"],
	"ttl":             {Type: framework.TypeInt, Description: "Seconds until Vault replaces the access token."},
	"rotation_period": {Type: framework.TypeInt, Description: "Seconds between two replacements of the access token."},
}

const pathStaticCredsHelpSyn = `Return a static role's current AISquare access token.`

const pathStaticCredsHelpDesc = `
Returns the shared session's access_token, token_type and expires_at, plus
ttl (seconds until Vault replaces the token) and rotation_period. The read
makes no call to AISquare and creates no lease. Vault Agent templates use ttl
to render the next token on time. A replaced token stays valid until its own
expiry, so readers of the old one keep working meanwhile.
`
