package aisquare

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

func TestConfigLifecycle(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})

	resp, err := env.request(t, logical.ReadOperation, "config", nil)
	if err != nil || resp != nil {
		t.Fatalf("read before create = %v, %v; want nil, nil", resp, err)
	}

	env.configure(t, map[string]any{"max_retries": 2})

	resp = env.mustRequest(t, logical.ReadOperation, "config", nil)
	want := map[string]any{
		"api_key_configured":        true,
		"api_key_fingerprint":       keyFingerprint(mountKey),
		"base_url":                  env.srv.URL,
		"login_path":                defaultLoginPath,
		"refresh_path":              defaultRefreshPath,
		"revoke_path":               defaultRevokePath,
		"verify_path":               defaultVerifyPath,
		"request_timeout":           int64(10),
		"max_retries":               2,
		"ca_cert":                   "",
		"default_access_token_ttl":  int64(7 * 24 * 3600),
		"default_refresh_token_ttl": int64(30 * 24 * 3600),
	}

	if !reflect.DeepEqual(resp.Data, want) {
		t.Errorf("read after create = %v; want %v", resp.Data, want)
	}

	if got := env.counters(); got.Logins != 1 || got.Revocations != 1 {
		t.Errorf("verification: logins = %d, revocations = %d; want 1 and 1", got.Logins, got.Revocations)
	}

	env.mustRequest(t, logical.UpdateOperation, "config", map[string]any{"request_timeout": "30s", "api_key": teamAKey})

	resp = env.mustRequest(t, logical.ReadOperation, "config", nil)
	if got := resp.Data["request_timeout"]; got != int64(30) {
		t.Errorf("request_timeout after update = %v; want 30", got)
	}

	if got := resp.Data["max_retries"]; got != 2 {
		t.Errorf("max_retries after update = %v; want 2, kept from create", got)
	}

	if got := resp.Data["api_key_fingerprint"]; got != keyFingerprint(teamAKey) {
		t.Errorf("api_key_fingerprint after update = %v; want %s", got, keyFingerprint(teamAKey))
	}

	for _, value := range resp.Data {
		if s, ok := value.(string); ok && (strings.Contains(s, mountKey) || strings.Contains(s, teamAKey)) {
			t.Errorf("config read returns the API key in %q", s)
		}
	}

	resp = env.mustRequest(t, logical.DeleteOperation, "config", nil)
	if resp == nil || len(resp.Warnings) != 1 {
		t.Errorf("delete response = %v; want one warning about existing leases", resp)
	}

	resp, err = env.request(t, logical.ReadOperation, "config", nil)
	if err != nil || resp != nil {
		t.Errorf("read after delete = %v, %v; want nil, nil", resp, err)
	}

	resp = env.mustRequest(t, logical.DeleteOperation, "config", nil)
	if resp != nil {
		t.Errorf("second delete = %v; want nil", resp)
	}
}

func TestConfigRejectedKey(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})

	resp, err := env.request(t, logical.UpdateOperation, "config", map[string]any{
		"api_key":  "key-unknown-0123456789",
		"base_url": env.srv.URL,
	})
	if err != nil {
		t.Fatalf("write error = %v", err)
	}

	want := "AISquare rejected api_key: AISquare login returned HTTP 401 (authentication_failed): " +
		"No active account found with the given API key; check the key, or set skip_verification=true to save it without logging in"
	if resp == nil || !resp.IsError() || resp.Error().Error() != want {
		t.Errorf("write response = %v; want error %q", resp, want)
	}

	if keys := env.storedKeys(t); len(keys) != 0 {
		t.Errorf("storage after a rejected key = %v; want empty", keys)
	}

	if got := env.counters().Requests[aisquaretest.EndpointLogin]; got != 1 {
		t.Errorf("login requests = %d; want 1, because a 401 is not retried", got)
	}
}

func TestConfigSkipVerification(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.mustRequest(t, logical.UpdateOperation, "config", map[string]any{
		"api_key":           "key-unknown-0123456789",
		"base_url":          env.srv.URL,
		"skip_verification": true,
	})

	if got := env.counters().Requests[aisquaretest.EndpointLogin]; got != 0 {
		t.Errorf("login requests = %d; want 0", got)
	}

	resp := env.mustRequest(t, logical.ReadOperation, "config", nil)
	if _, ok := resp.Data["skip_verification"]; ok {
		t.Error("config read shows skip_verification; want it not stored")
	}
}

func TestConfigUnreachableUpstream(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})

	resp, err := env.request(t, logical.UpdateOperation, "config", map[string]any{
		"api_key":         mountKey,
		"base_url":        "http://127.0.0.1:1",
		"max_retries":     0,
		"request_timeout": 2,
	})
	if err != nil {
		t.Fatalf("write error = %v", err)
	}

	if resp == nil || !resp.IsError() || !strings.HasPrefix(resp.Error().Error(), "could not verify api_key: AISquare login request failed") {
		t.Errorf("write response = %v; want a could not verify error", resp)
	}

	if keys := env.storedKeys(t); len(keys) != 0 {
		t.Errorf("storage after a failed verification = %v; want empty", keys)
	}
}

func TestConfigInvalidInput(t *testing.T) {
	t.Parallel()

	valid := func(env *testEnv) map[string]any {
		return map[string]any{"api_key": mountKey, "base_url": env.srv.URL}
	}

	tests := []struct {
		name    string
		change  map[string]any
		wantErr string
	}{
		{"MissingKey", map[string]any{"api_key": nil}, "api_key is required: set it to the AISquare API key that this mount logs in with"},
		{"KeyWithSpace", map[string]any{"api_key": "abc def"}, "invalid api_key: it contains whitespace or control characters; paste the key without quotes or line breaks"},
		{"OversizedKey", map[string]any{"api_key": strings.Repeat("k", maxAPIKeyLength+1)}, "invalid api_key: it is 4097 bytes long, more than the limit of 4096"},
		{"PlainHTTP", map[string]any{"base_url": "http://api.aisquare.studio"}, `invalid base_url "http://api.aisquare.studio": plain http is allowed only for a loopback host; use https`},
		{"FTPScheme", map[string]any{"base_url": "ftp://127.0.0.1"}, `invalid base_url "ftp://127.0.0.1": the scheme must be https (or http for a loopback host)`},
		{"NoHost", map[string]any{"base_url": "https://"}, `invalid base_url "https://": it has no host; use a form like https://api.aisquare.studio`},
		{"Credentials", map[string]any{"base_url": "https://u:p@api.aisquare.studio"}, `invalid base_url "https://u:p@api.aisquare.studio": it must not contain credentials; set api_key instead`},
		{"Query", map[string]any{"base_url": "https://api.aisquare.studio?x=1"}, `invalid base_url "https://api.aisquare.studio?x=1": it must not contain a query or a fragment`},
		{"RelativePath", map[string]any{"login_path": "api/login"}, `invalid login_path "api/login": it must start with /`},
		{"DotDotPath", map[string]any{"refresh_path": "/api/../admin/"}, `invalid refresh_path "/api/../admin/": it must not contain ..`},
		{"QueryInPath", map[string]any{"revoke_path": "/x?y"}, `invalid revoke_path "/x?y": it must not contain ?, #, \ or spaces`},
		{"ZeroTimeout", map[string]any{"request_timeout": 0}, "invalid request_timeout 0s: it must be more than 0s and at most 5m0s"},
		{"NegativeTimeout", map[string]any{"request_timeout": "-5s"}, `error converting input for field "request_timeout": cannot provide negative value '-5'`},
		{"LongTimeout", map[string]any{"request_timeout": "6m"}, "invalid request_timeout 6m0s: it must be more than 0s and at most 5m0s"},
		{"NegativeRetries", map[string]any{"max_retries": -1}, "invalid max_retries -1: it must be from 0 to 10"},
		{"ManyRetries", map[string]any{"max_retries": 11}, "invalid max_retries 11: it must be from 0 to 10"},
		{"BadCACert", map[string]any{"ca_cert": "hello"}, "invalid ca_cert: it contains no PEM certificate"},
		{"KeyInCACert", map[string]any{"ca_cert": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, `invalid ca_cert: it contains a "PRIVATE KEY" PEM block; only CERTIFICATE blocks are allowed`},
		{"ShortAccessTTL", map[string]any{"default_access_token_ttl": "30s"}, "invalid default_access_token_ttl 30s: it must be at least 1m"},
		{"InvertedTTLs", map[string]any{"default_access_token_ttl": "48h", "default_refresh_token_ttl": "24h"}, "default_access_token_ttl 48h0m0s must not be longer than default_refresh_token_ttl 24h0m0s"},
		{"UnknownField", map[string]any{"base_ulr": "https://x"}, "unknown fields base_ulr: this path accepts api_key, base_url, ca_cert, default_access_token_ttl, default_refresh_token_ttl, login_path, max_retries, refresh_path, request_timeout, revoke_path, skip_verification, verify_path"},
		{"WrongType", map[string]any{"max_retries": "many"}, `error converting input for field "max_retries": cannot parse '' as int: strconv.ParseInt: parsing "many": invalid syntax`},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			env := newTestEnv(t, aisquaretest.Options{})
			env.configure(t, nil)
			before := env.storedKeys(t)
			loginsBefore := env.counters().Requests[aisquaretest.EndpointLogin]

			data := valid(env)
			for k, v := range tc.change {
				if v == nil {
					delete(data, k)
				} else {
					data[k] = v
				}
			}

			if tc.name == "MissingKey" {
				env.mustRequest(t, logical.DeleteOperation, "config", nil)
				before = env.storedKeys(t)
			}

			resp, err := env.request(t, logical.UpdateOperation, "config", data)
			if err != nil {
				t.Fatalf("write error = %v; want a 400 response", err)
			}

			if resp == nil || !resp.IsError() {
				t.Fatalf("write response = %v; want an error response", resp)
			}

			if got := resp.Error().Error(); got != tc.wantErr {
				t.Errorf("error = %q; want %q", got, tc.wantErr)
			}

			if after := env.storedKeys(t); !reflect.DeepEqual(after, before) {
				t.Errorf("storage changed on invalid input: %v; want %v", after, before)
			}

			if got := env.counters().Requests[aisquaretest.EndpointLogin]; got != loginsBefore {
				t.Errorf("login requests = %d; want %d, because invalid input never reaches AISquare", got, loginsBefore)
			}
		})
	}
}

func TestConfigCACert(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	pemText := testCertificatePEM(t)

	env.configure(t, map[string]any{"ca_cert": pemText})

	resp := env.mustRequest(t, logical.ReadOperation, "config", nil)
	if got := resp.Data["ca_cert"]; got != pemText {
		t.Errorf("ca_cert = %v; want the PEM that was written", got)
	}
}

func TestConfigStorageFailure(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		op   logical.Operation
		fail string
	}{
		{"ReadGet", logical.ReadOperation, "get"},
		{"WritePut", logical.UpdateOperation, "put"},
		{"DeleteDelete", logical.DeleteOperation, "delete"},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			env := newTestEnv(t, aisquaretest.Options{})
			env.configure(t, nil)
			env.storage.failOn(tc.fail)

			_, err := env.request(t, tc.op, "config", map[string]any{"api_key": mountKey, "base_url": env.srv.URL})
			if err == nil || !strings.Contains(err.Error(), errStorageFailed.Error()) {
				t.Errorf("error = %v; want one that wraps %q", err, errStorageFailed)
			}
		})
	}
}

// testCertificatePEM returns a self-signed certificate in PEM.
func testCertificatePEM(t *testing.T) string {
	t.Helper()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}

	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "aisquare test CA"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true,
	}

	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}

	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestConfigTrimsKeyWhitespace(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})

	// echo adds a newline to a key piped into "vault write ... api_key=-".
	env.mustRequest(t, logical.UpdateOperation, "config", map[string]any{"api_key": mountKey + "\n", "base_url": env.srv.URL})

	resp := env.mustRequest(t, logical.ReadOperation, "config", nil)
	if got := resp.Data["api_key_fingerprint"]; got != keyFingerprint(mountKey) {
		t.Errorf("api_key_fingerprint = %v; want the fingerprint of the key without the newline", got)
	}
}
