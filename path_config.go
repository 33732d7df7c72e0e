package aisquare

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	// configStoragePath is the storage key of the mount's config. It is
	// seal-wrapped because it holds the API key.
	configStoragePath = "config"

	defaultBaseURL = "https://api.aisquare.studio"
	// NOTE: AISquare's public reference does not name the endpoint that
	// exchanges an API key for tokens, so this default is a guess that
	// login_path overrides.
	defaultLoginPath      = "/api/v1/token/api-key/"
	defaultRefreshPath    = "/api/v1/token/refresh/"
	defaultRevokePath     = "/api/v1/token/blacklist/"
	defaultVerifyPath     = "/api/v1/token/verify/"
	defaultRequestTimeout = 10 * time.Second
	defaultMaxRetries     = 3

	// AISquare documents access tokens that live 7 days and refresh tokens
	// that live 30 days.
	defaultAccessTokenTTL  = 7 * 24 * time.Hour
	defaultRefreshTokenTTL = 30 * 24 * time.Hour

	maxRequestTimeout = 5 * time.Minute
	maxMaxRetries     = 10
)

// aisquareConfig is the mount's connection to AISquare. The JSON names are
// the API field names.
type aisquareConfig struct {
	APIKey                 string        `json:"api_key"`
	BaseURL                string        `json:"base_url"`
	LoginPath              string        `json:"login_path"`
	RefreshPath            string        `json:"refresh_path"`
	RevokePath             string        `json:"revoke_path"`
	VerifyPath             string        `json:"verify_path"`
	RequestTimeout         time.Duration `json:"request_timeout"`
	MaxRetries             int           `json:"max_retries"`
	CACert                 string        `json:"ca_cert"`
	DefaultAccessTokenTTL  time.Duration `json:"default_access_token_ttl"`
	DefaultRefreshTokenTTL time.Duration `json:"default_refresh_token_ttl"`
}

// defaultConfig returns a config with every default set and no API key.
func defaultConfig() *aisquareConfig {
	return &aisquareConfig{
		BaseURL:                defaultBaseURL,
		LoginPath:              defaultLoginPath,
		RefreshPath:            defaultRefreshPath,
		RevokePath:             defaultRevokePath,
		VerifyPath:             defaultVerifyPath,
		RequestTimeout:         defaultRequestTimeout,
		MaxRetries:             defaultMaxRetries,
		DefaultAccessTokenTTL:  defaultAccessTokenTTL,
		DefaultRefreshTokenTTL: defaultRefreshTokenTTL,
	}
}

// lifetimes returns the token lifetimes assumed for tokens without exp.
func (c *aisquareConfig) lifetimes() lifetimes {
	return lifetimes{access: c.DefaultAccessTokenTTL, refresh: c.DefaultRefreshTokenTTL}
}

// keyFingerprint identifies an API key without revealing it: the first 16
// hex digits of its SHA-256.
func keyFingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])[:16]
}

func (b *backend) pathConfig() *framework.Path {
	return &framework.Path{
		Pattern: "config",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixAISquare,
		},
		Fields: map[string]*framework.FieldSchema{
			"api_key": {
				Type:        framework.TypeString,
				Description: "AISquare API key that roles without their own api_key log in with. Required on create. Write-only. Surrounding whitespace is removed.",
				DisplayAttrs: &framework.DisplayAttributes{
					Sensitive: true,
				},
			},
			"base_url": {
				Type:        framework.TypeString,
				Description: "Base URL of the AISquare API. Must be https unless the host is a loopback address.",
				Default:     defaultBaseURL,
			},
			"login_path": {
				Type:        framework.TypeString,
				Description: "Path of the endpoint that exchanges an API key for tokens.",
				Default:     defaultLoginPath,
			},
			"refresh_path": {
				Type:        framework.TypeString,
				Description: "Path of the endpoint that exchanges a refresh token for an access token.",
				Default:     defaultRefreshPath,
			},
			"revoke_path": {
				Type:        framework.TypeString,
				Description: "Path of the endpoint that blacklists a refresh token.",
				Default:     defaultRevokePath,
			},
			"verify_path": {
				Type:        framework.TypeString,
				Description: "Path of the endpoint that checks a token.",
				Default:     defaultVerifyPath,
			},
			"request_timeout": {
				Type:        framework.TypeDurationSecond,
				Description: "Time limit for one upstream call, retries included. At most 5m.",
				Default:     int(defaultRequestTimeout.Seconds()),
			},
			"max_retries": {
				Type:        framework.TypeInt,
				Description: "Retries of an upstream call after a 429, a 5xx or a network error. From 0 to 10.",
				Default:     defaultMaxRetries,
			},
			"ca_cert": {
				Type:        framework.TypeString,
				Description: "PEM certificates to trust for base_url in place of the system roots.",
			},
			"default_access_token_ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "Lifetime assumed for an access token that is not a JWT with an exp claim.",
				Default:     int(defaultAccessTokenTTL.Seconds()),
			},
			"default_refresh_token_ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "Lifetime assumed for a refresh token that is not a JWT with an exp claim.",
				Default:     int(defaultRefreshTokenTTL.Seconds()),
			},
			"skip_verification": {
				Type:        framework.TypeBool,
				Description: "Save the config without logging in to AISquare to prove the API key. Not stored.",
				Default:     false,
			},
		},
		ExistenceCheck: b.pathConfigExistenceCheck,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathConfigRead,
				Summary:  "Read the mount's AISquare connection settings. The API key is shown only as a fingerprint.",
				DisplayAttrs: &framework.DisplayAttributes{
					OperationSuffix: "configuration",
				},
			},
			logical.CreateOperation: &framework.PathOperation{
				Callback:                    b.pathConfigWrite,
				Summary:                     "Configure the mount's AISquare connection.",
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb: "configure",
				},
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.pathConfigWrite,
				Summary:                     "Configure the mount's AISquare connection.",
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb: "configure",
				},
			},
			logical.DeleteOperation: &framework.PathOperation{
				Callback:                    b.pathConfigDelete,
				Summary:                     "Delete the mount's AISquare connection settings.",
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationSuffix: "configuration",
				},
			},
		},
		HelpSynopsis:    pathConfigHelpSyn,
		HelpDescription: pathConfigHelpDesc,
	}
}

// pathConfigRead handles read: every setting except the API key, which is
// shown as a fingerprint.
func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	if cfg == nil {
		return nil, nil
	}

	data := map[string]any{
		"api_key_configured":        cfg.APIKey != "",
		"base_url":                  cfg.BaseURL,
		"login_path":                cfg.LoginPath,
		"refresh_path":              cfg.RefreshPath,
		"revoke_path":               cfg.RevokePath,
		"verify_path":               cfg.VerifyPath,
		"request_timeout":           int64(cfg.RequestTimeout.Seconds()),
		"max_retries":               cfg.MaxRetries,
		"ca_cert":                   cfg.CACert,
		"default_access_token_ttl":  int64(cfg.DefaultAccessTokenTTL.Seconds()),
		"default_refresh_token_ttl": int64(cfg.DefaultRefreshTokenTTL.Seconds()),
	}

	if cfg.APIKey != "" {
		data["api_key_fingerprint"] = keyFingerprint(cfg.APIKey)
	}

	return &logical.Response{Data: data}, nil
}

// pathConfigWrite handles create and update. Fields left out keep their
// stored value, or their default on create. Unless skip_verification is
// set, the API key must log in before anything is stored.
func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if resp := rejectUnknownFields(req, d); resp != nil {
		return resp, nil
	}

	b.configLock.Lock()
	defer b.configLock.Unlock()

	stored, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	cfg := defaultConfig()
	if stored != nil {
		*cfg = *stored
	}

	if resp := applyConfigFields(cfg, d, stored == nil); resp != nil {
		return resp, nil
	}

	if !d.Get("skip_verification").(bool) {
		if resp := b.verifyAPIKey(ctx, cfg, cfg.APIKey, "api_key"); resp != nil {
			return resp, nil
		}
	}

	if err := putConfig(ctx, req.Storage, cfg); err != nil {
		return nil, err
	}

	b.reset()
	b.Logger().Info("config written", "base_url", cfg.BaseURL, "api_key_fingerprint", keyFingerprint(cfg.APIKey))

	return nil, nil
}

// applyConfigFields copies the request's fields into cfg and validates the
// result. It returns a 400 response naming the first invalid field.
func applyConfigFields(cfg *aisquareConfig, d *framework.FieldData, create bool) *logical.Response {
	if raw, ok := d.GetOk("api_key"); ok {
		cfg.APIKey = strings.TrimSpace(raw.(string))
	}

	if cfg.APIKey == "" {
		if create {
			return logical.ErrorResponse("api_key is required: set it to the AISquare API key that this mount logs in with")
		}

		return logical.ErrorResponse("api_key must not be empty: set it to the AISquare API key that this mount logs in with")
	}

	if err := validateAPIKey(cfg.APIKey); err != nil {
		return logical.ErrorResponse("invalid api_key: %s", err)
	}

	if raw, ok := d.GetOk("base_url"); ok {
		cfg.BaseURL = raw.(string)
	}

	normalized, err := validateBaseURL(cfg.BaseURL)
	if err != nil {
		return logical.ErrorResponse("invalid base_url %q: %s", cfg.BaseURL, err)
	}

	cfg.BaseURL = normalized

	endpointPaths := []struct {
		field  string
		target *string
	}{
		{"login_path", &cfg.LoginPath},
		{"refresh_path", &cfg.RefreshPath},
		{"revoke_path", &cfg.RevokePath},
		{"verify_path", &cfg.VerifyPath},
	}
	for _, p := range endpointPaths {
		if raw, ok := d.GetOk(p.field); ok {
			*p.target = raw.(string)
		}

		if err := validateEndpointPath(*p.target); err != nil {
			return logical.ErrorResponse("invalid %s %q: %s", p.field, *p.target, err)
		}
	}

	if raw, ok := d.GetOk("request_timeout"); ok {
		cfg.RequestTimeout = time.Duration(raw.(int)) * time.Second
	}

	if cfg.RequestTimeout <= 0 || cfg.RequestTimeout > maxRequestTimeout {
		return logical.ErrorResponse("invalid request_timeout %s: it must be more than 0s and at most %s", cfg.RequestTimeout, maxRequestTimeout)
	}

	if raw, ok := d.GetOk("max_retries"); ok {
		cfg.MaxRetries = raw.(int)
	}

	if cfg.MaxRetries < 0 || cfg.MaxRetries > maxMaxRetries {
		return logical.ErrorResponse("invalid max_retries %d: it must be from 0 to %d", cfg.MaxRetries, maxMaxRetries)
	}

	if raw, ok := d.GetOk("ca_cert"); ok {
		cfg.CACert = raw.(string)
	}

	if err := validateCACert(cfg.CACert); err != nil {
		return logical.ErrorResponse("invalid ca_cert: %s", err)
	}

	assumedLifetimes := []struct {
		field  string
		target *time.Duration
	}{
		{"default_access_token_ttl", &cfg.DefaultAccessTokenTTL},
		{"default_refresh_token_ttl", &cfg.DefaultRefreshTokenTTL},
	}
	for _, l := range assumedLifetimes {
		if raw, ok := d.GetOk(l.field); ok {
			*l.target = time.Duration(raw.(int)) * time.Second
		}

		if *l.target < time.Minute {
			return logical.ErrorResponse("invalid %s %s: it must be at least 1m", l.field, *l.target)
		}
	}

	if cfg.DefaultAccessTokenTTL > cfg.DefaultRefreshTokenTTL {
		return logical.ErrorResponse("default_access_token_ttl %s must not be longer than default_refresh_token_ttl %s",
			cfg.DefaultAccessTokenTTL, cfg.DefaultRefreshTokenTTL)
	}

	return nil
}

// verifyAPIKey logs in with key to prove that AISquare accepts it, then
// blacklists the session it opened. It returns a 400 response, naming
// field, when the key is rejected or AISquare cannot be reached.
func (b *backend) verifyAPIKey(ctx context.Context, cfg *aisquareConfig, key, field string) *logical.Response {
	c, err := newClient(cfg, b.Logger())
	if err != nil {
		return logical.ErrorResponse("invalid ca_cert: %s", err)
	}

	sess, err := b.login(ctx, c, cfg, key)
	if isRejection(err) {
		return logical.ErrorResponse("AISquare rejected %s: %s; check the key, or set skip_verification=true to save it without logging in", field, err)
	}

	if err != nil {
		return logical.ErrorResponse("could not verify %s: %s; check base_url, login_path and ca_cert, or set skip_verification=true to save it without logging in", field, err)
	}

	if err := c.Revoke(ctx, sess.RefreshToken); err != nil {
		// The key is proven. The session only stays open until its
		// refresh token expires.
		b.Logger().Warn("could not blacklist the refresh token of the verification login", "field", field, "error", err)
	}

	return nil
}

// pathConfigDelete handles delete. Leases that the mount issued cannot be
// renewed or revoked upstream until a config is written again.
func (b *backend) pathConfigDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.configLock.Lock()
	defer b.configLock.Unlock()

	cfg, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	if cfg == nil {
		return nil, nil
	}

	if err := req.Storage.Delete(ctx, configStoragePath); err != nil {
		return nil, fmt.Errorf("delete config: %w", err)
	}

	b.reset()
	b.Logger().Info("config deleted")

	resp := &logical.Response{}
	resp.AddWarning("Existing leases of this mount cannot be renewed or revoked upstream until a config is written again.")

	return resp, nil
}

// pathConfigExistenceCheck reports to Vault whether a write creates or updates
// the config, which decides the ACL capability it needs.
func (b *backend) pathConfigExistenceCheck(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	cfg, err := getConfig(ctx, req.Storage)
	if err != nil {
		return false, err
	}

	return cfg != nil, nil
}

// getConfig loads the mount's config, or returns nil when there is none.
// Fields missing from the stored entry keep their defaults.
func getConfig(ctx context.Context, s logical.Storage) (*aisquareConfig, error) {
	cfg := defaultConfig()

	found, err := getEntry(ctx, s, configStoragePath, "config", cfg)
	if !found || err != nil {
		return nil, err
	}

	return cfg, nil
}

// putConfig stores the mount's config.
func putConfig(ctx context.Context, s logical.Storage, cfg *aisquareConfig) error {
	return putEntry(ctx, s, configStoragePath, "config", cfg)
}

// errNoConfig means the mount has no config yet.
var errNoConfig = errors.New("the mount has no config")

const pathConfigHelpSyn = `Configure the AISquare API key and connection settings of this mount.`

const pathConfigHelpDesc = `
The config holds the AISquare API key that roles log in with when they have
no api_key of their own, and how to reach AISquare: base_url, the endpoint
paths, request_timeout, max_retries and an optional ca_cert. The key is never
returned: reads show api_key_configured and a SHA-256 fingerprint. A write
logs in once to prove the key and blacklists that session, unless
skip_verification is true. Deleting the config stops renewals and upstream
revocations of existing leases until a config is written again.
`
