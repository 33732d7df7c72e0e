package aisquare

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"
)

// getEntry decodes the JSON entry at key into entry and reports whether
// the entry exists. label names the entry in errors, such as `role "a"`.
func getEntry(ctx context.Context, s logical.Storage, key, label string, entry any) (bool, error) {
	stored, err := s.Get(ctx, key)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", label, err)
	}

	if stored == nil {
		return false, nil
	}

	if err := stored.DecodeJSON(entry); err != nil {
		return false, fmt.Errorf("decode %s: %w", label, err)
	}

	return true, nil
}

// putEntry stores entry as JSON at key. label names the entry in errors.
func putEntry(ctx context.Context, s logical.Storage, key, label string, entry any) error {
	stored, err := logical.StorageEntryJSON(key, entry)
	if err != nil {
		return fmt.Errorf("encode %s: %w", label, err)
	}

	if err := s.Put(ctx, stored); err != nil {
		return fmt.Errorf("write %s: %w", label, err)
	}

	return nil
}
