// Package e2e contains end-to-end tests that run the AISquare secrets engine
// inside a real Vault dev server. They drive it with the vault CLI, the
// Vault API client and Vault Agent, against an in-process emulator of the
// AISquare API, so they need no network beyond 127.0.0.1.
//
// The tests run the vault binary named by VAULT_BIN and skip when it is
// unset:
//
//	make test
//	VAULT_BIN=$(scripts/install-vault.sh) go test ./e2e/...
//
// The package has no code outside its tests.
package e2e
