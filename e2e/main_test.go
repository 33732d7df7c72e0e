package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The plugin as the tests build, register and mount it.
const (
	pluginName    = "vault-plugin-secrets-aisquare"
	pluginVersion = "v0.1.0"
	pluginPackage = "./cmd/vault-plugin-secrets-aisquare"
	modulePath    = "github.com/aisquare/vault-plugin-secrets-aisquare"
)

const skipMessage = "VAULT_BIN is not set: run `make test`, which sets it, " +
	"or `VAULT_BIN=$(scripts/install-vault.sh) go test ./e2e/...` from the repository root"

// suite is what TestMain prepares once for every test of the run.
var suite struct {
	// vaultBin is the vault binary from VAULT_BIN, or "" when unset.
	vaultBin string
	// pluginDir is the directory with the built plugin, passed to Vault as
	// -dev-plugin-dir.
	pluginDir string
	// pluginSHA256 is the hex SHA-256 of the plugin binary, for
	// vault plugin register.
	pluginSHA256 string
	// err is why the preparation failed. Every test reports it.
	err error
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests builds the plugin into a temporary directory when VAULT_BIN is
// set, runs the tests and removes the directory.
func runTests(m *testing.M) int {
	suite.vaultBin = os.Getenv("VAULT_BIN")
	if suite.vaultBin == "" {
		return m.Run()
	}

	dir, err := os.MkdirTemp("", "aisquare-e2e-plugins-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: create plugin directory: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)

	suite.pluginDir = dir
	suite.err = prepareSuite()

	return m.Run()
}

// prepareSuite checks the vault binary and builds the plugin.
func prepareSuite() error {
	out, err := exec.Command(suite.vaultBin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "Vault v") {
		return fmt.Errorf("VAULT_BIN=%s is not a working vault binary: `vault version` returned %q, %v; "+
			"unset VAULT_BIN or point it at the output of scripts/install-vault.sh", suite.vaultBin, out, err)
	}

	root, err := moduleRoot()
	if err != nil {
		return err
	}

	binary := filepath.Join(suite.pluginDir, pluginName)
	build := exec.Command("go", "build",
		"-ldflags", "-X "+modulePath+".Version="+pluginVersion,
		"-o", binary, pluginPackage)
	build.Dir = root

	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the plugin in %s: %v\n%s", root, err, out)
	}

	sum, err := fileSHA256(binary)
	if err != nil {
		return err
	}

	suite.pluginSHA256 = sum

	return nil
}

// moduleRoot returns the nearest directory, from the working directory up,
// that contains go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the module root: %w", err)
	}

	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}

		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find the module root: no go.mod above the working directory")
		}

		dir = parent
	}
}

// fileSHA256 returns the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()

	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}

	return hex.EncodeToString(h.Sum(nil)), nil
}

// requireSuite skips the test when VAULT_BIN is unset and fails it when
// TestMain could not prepare the run.
func requireSuite(t *testing.T) {
	t.Helper()

	if suite.vaultBin == "" {
		t.Skip(skipMessage)
	}

	if suite.err != nil {
		t.Fatalf("e2e setup failed: %v", suite.err)
	}
}
