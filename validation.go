package aisquare

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Size limits of input values.
const (
	maxAPIKeyLength      = 4096
	maxNameLength        = 128
	maxDescriptionLength = 1024
	maxPathLength        = 256
	maxCACertLength      = 64 * 1024
)

// rejectUnknownFields returns a 400 response when the request carries a
// field that the path does not define. Vault itself only warns about such
// fields, and then a misspelled ttl would silently keep its old value.
func rejectUnknownFields(req *logical.Request, d *framework.FieldData) *logical.Response {
	var unknown []string

	for field := range req.Data {
		if _, ok := d.Schema[field]; !ok {
			unknown = append(unknown, field)
		}
	}

	if len(unknown) == 0 {
		return nil
	}

	var known []string

	for field := range d.Schema {
		if field != "name" {
			known = append(known, field)
		}
	}

	slices.Sort(unknown)
	slices.Sort(known)

	return logical.ErrorResponse("unknown fields %s: this path accepts %s", strings.Join(unknown, ", "), strings.Join(known, ", "))
}

// validateAPIKey checks the shape of an API key. AISquare checks the rest.
func validateAPIKey(key string) error {
	if len(key) > maxAPIKeyLength {
		return fmt.Errorf("it is %d bytes long, more than the limit of %d", len(key), maxAPIKeyLength)
	}

	if strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return errors.New("it contains whitespace or control characters; paste the key without quotes or line breaks")
	}

	return nil
}

// validateBaseURL checks that raw is an absolute http or https URL without
// credentials, query or fragment, and that plain http is used only with a
// loopback host. It returns the URL without a trailing slash.
func validateBaseURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("it must not be empty")
	}

	if len(raw) > maxPathLength {
		return "", fmt.Errorf("it is longer than %d bytes", maxPathLength)
	}

	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("it is not a URL")
	}

	if u.Host == "" || u.Hostname() == "" {
		return "", errors.New("it has no host; use a form like https://api.aisquare.studio")
	}

	if u.User != nil {
		return "", errors.New("it must not contain credentials; set api_key instead")
	}

	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", errors.New("it must not contain a query or a fragment")
	}

	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return "", errors.New("plain http is allowed only for a loopback host; use https")
		}
	default:
		return "", errors.New("the scheme must be https (or http for a loopback host)")
	}

	return strings.TrimSuffix(u.String(), "/"), nil
}

// isLoopbackHost reports whether host is "localhost" or a loopback IP.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}

	ip := net.ParseIP(host)

	return ip != nil && ip.IsLoopback()
}

// validateEndpointPath checks an endpoint path such as /api/v1/token/refresh/.
func validateEndpointPath(path string) error {
	if !strings.HasPrefix(path, "/") {
		return errors.New("it must start with /")
	}

	if len(path) > maxPathLength {
		return fmt.Errorf("it is longer than %d bytes", maxPathLength)
	}

	if strings.ContainsAny(path, "?#\\ ") {
		return errors.New("it must not contain ?, #, \\ or spaces")
	}

	if slices.Contains(strings.Split(path, "/"), "..") {
		return errors.New("it must not contain ..")
	}

	u, err := url.Parse(path)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return errors.New("it must be a path only, without scheme or host")
	}

	return nil
}

// validateCACert checks that pemText, when set, holds only parsable
// certificates.
func validateCACert(pemText string) error {
	if pemText == "" {
		return nil
	}

	if len(pemText) > maxCACertLength {
		return fmt.Errorf("it is longer than %d bytes", maxCACertLength)
	}

	rest := []byte(pemText)
	count := 0

	for {
		var block *pem.Block

		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}

		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("it contains a %q PEM block; only CERTIFICATE blocks are allowed", block.Type)
		}

		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d cannot be parsed: %v", count+1, err)
		}

		count++
	}

	if count == 0 {
		return errors.New("it contains no PEM certificate")
	}

	if strings.TrimSpace(string(rest)) != "" {
		return errors.New("it contains text that is not a PEM block")
	}

	return nil
}

// nameField returns the schema of the name captured from a path, such as
// roles/<name>. kind is "role" or "static role". Vault stores names in
// lower case.
func nameField(kind string) *framework.FieldSchema {
	return &framework.FieldSchema{
		Type:        framework.TypeLowerCaseString,
		Description: "Name of the " + kind + ".",
		Required:    true,
	}
}

// validateName checks a role name captured from the path.
func validateName(name string) error {
	if len(name) > maxNameLength {
		return fmt.Errorf("name is %d characters long, more than the limit of %d", len(name), maxNameLength)
	}

	return nil
}

// validateDescription checks a role description.
func validateDescription(description string) error {
	if len(description) > maxDescriptionLength {
		return fmt.Errorf("description is %d bytes long, more than the limit of %d", len(description), maxDescriptionLength)
	}

	return nil
}
