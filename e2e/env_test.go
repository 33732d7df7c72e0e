package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/api"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// Names of the emulator users. The mount's config logs in as mountUser,
// and the roles team-a and team-b log in with their own users' keys.
const (
	mountUser = "mount"
	teamA     = "team-a"
	teamB     = "team-b"
)

// mount is where the tests enable the plugin.
const mount = "aisquare"

const (
	// cliTimeout bounds one run of the vault CLI.
	cliTimeout = time.Minute
	// vaultStartTimeout bounds the wait for a new dev server to report
	// healthy.
	vaultStartTimeout = 60 * time.Second
	// logTailLines is how much of each log a failed test prints.
	logTailLines = 400
)

// jwtPattern matches a JWT: three dot-separated base64url segments, where
// the first is a JSON header and so starts with "eyJ", the encoding of
// `{"`. Requiring that start keeps logger names such as
// secrets.vault-plugin-secrets-aisquare.<accessor> from matching.
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

// jsonSegmentPattern matches one base64url-encoded JSON object of 20 or more
// characters, such as the header or the claims of a JWT logged alone.
var jsonSegmentPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{17,}`)

// envOptions configures newEnv.
type envOptions struct {
	// emulator configures the AISquare emulator. Its Logger is set by
	// newEnv.
	emulator aisquaretest.Options
	// teamATTL is the ttl of role team-a. Zero leaves it unset, so leases
	// get the mount's default TTL cut at the token's expiry.
	teamATTL time.Duration
}

// testEnv is one test's Vault dev server, with the plugin mounted at
// aisquare/ and configured against the test's own emulator, which has the
// users mount, team-a and team-b.
type testEnv struct {
	srv *aisquaretest.Server
	// keys maps each emulator user to its API key, random per test so that
	// the log checks look for this test's keys.
	keys map[string]string

	dir       string // the test's temporary directory
	homeDir   string // HOME of every vault process, so none touches ~/.vault-token
	addr      string // Vault's address, http://127.0.0.1:<port>
	rootToken string
	vault     *process
	vaultLog  string
	// mounted is set once the plugin is mounted and configured.
	mounted bool
	// client is an API client with the root token.
	client *api.Client

	// setupCounters are the emulator's counters after the config and role
	// writes of newEnv, which then resets them.
	setupCounters aisquaretest.Counters
}

// newEnv starts an emulator and a Vault dev server, then registers,
// enables and configures the plugin with the vault CLI. It registers
// cleanups that stop both, and that check that the Vault log contains no
// API key and no JWT.
func newEnv(t *testing.T, opts envOptions) *testEnv {
	t.Helper()
	requireSuite(t)

	e := &testEnv{
		keys:      map[string]string{},
		dir:       t.TempDir(),
		rootToken: "e2e-root-" + randomHex(t, 12),
	}

	e.homeDir = filepath.Join(e.dir, "home")
	if err := os.Mkdir(e.homeDir, 0o700); err != nil {
		t.Fatalf("create HOME for vault: %v", err)
	}

	emulatorLog := &lockedBuffer{}
	opts.emulator.Logger = log.New(emulatorLog, "emulator: ", log.Ltime|log.Lmicroseconds)
	e.srv = aisquaretest.NewServer(opts.emulator)
	t.Cleanup(e.srv.Close)

	for _, user := range []string{mountUser, teamA, teamB} {
		e.keys[user] = "e2e-" + user + "-" + randomHex(t, 16)
		e.srv.AddUser(user, e.keys[user])
	}

	// Cleanups run last-registered first, so this one runs after Vault has
	// stopped and written its last log lines.
	t.Cleanup(func() {
		e.checkVaultLog(t)

		if t.Failed() {
			t.Logf("Vault server log:\n%s", tailFile(e.vaultLog, logTailLines))
			t.Logf("emulator request log:\n%s", emulatorLog.String())
		}
	})

	e.startVault(t)
	e.setUpMount(t, opts)

	e.setupCounters = e.srv.Counters()
	e.srv.ResetCounters()

	return e
}

// startVault starts the dev server on a free port pair, trying again when
// another process took the port in between, and waits until it is healthy.
func (e *testEnv) startVault(t *testing.T) {
	t.Helper()

	for attempt := 1; ; attempt++ {
		err := e.tryStartVault(t)
		if err == nil {
			return
		}

		if attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			t.Logf("Vault could not listen, trying another port: %v", err)
			continue
		}

		t.Fatalf("start Vault: %v", err)
	}
}

// tryStartVault starts one dev server, registers a cleanup that stops it
// and waits for it to report healthy.
func (e *testEnv) tryStartVault(t *testing.T) error {
	port, err := freePortPair()
	if err != nil {
		return err
	}

	e.addr = fmt.Sprintf("http://127.0.0.1:%d", port)
	e.vaultLog = filepath.Join(e.dir, "vault.log")

	e.vault, err = startProcess("vault server", e.vaultLog, e.processEnv(""), suite.vaultBin,
		"server", "-dev",
		"-dev-root-token-id="+e.rootToken,
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port),
		"-dev-plugin-dir="+suite.pluginDir,
		"-log-level=trace")
	if err != nil {
		return err
	}

	server := e.vault
	t.Cleanup(func() {
		if err := server.stop(); err != nil {
			t.Errorf("stop Vault: %v", err)
		}
	})

	e.client = e.newClient(t, e.rootToken)

	deadline := time.Now().Add(vaultStartTimeout)
	for {
		if e.vault.exited() {
			text, _ := os.ReadFile(e.vaultLog)
			if bytes.Contains(text, []byte("address already in use")) {
				return fmt.Errorf("vault server exited: %v: address already in use", e.vault.waitErr)
			}

			return fmt.Errorf("vault server exited before it was healthy: %v", e.vault.waitErr)
		}

		health, err := e.client.Sys().Health()
		if err == nil && health.Initialized && !health.Sealed {
			break
		}

		if time.Now().After(deadline) {
			return fmt.Errorf("vault server at %s was not healthy within %s: last health check: %+v, %v",
				e.addr, vaultStartTimeout, health, err)
		}

		time.Sleep(100 * time.Millisecond)
	}

	return nil
}

// setUpMount registers and enables the plugin, writes its config with the
// mount user's key and writes the roles team-a and team-b with their own
// keys. Keys go through standard input, so they never appear in a command
// line.
func (e *testEnv) setUpMount(t *testing.T, opts envOptions) {
	t.Helper()

	e.mustCLI(t, "plugin", "register",
		"-sha256="+suite.pluginSHA256, "-version="+pluginVersion, "secret", pluginName)
	e.mustCLI(t, "secrets", "enable",
		"-path="+mount, "-plugin-version="+pluginVersion, pluginName)

	e.mustCLIWithKey(t, e.keys[mountUser], "write", mount+"/config", "api_key=-", "base_url="+e.srv.URL)

	teamAArgs := []string{"write", mount + "/roles/" + teamA, "api_key=-"}
	if opts.teamATTL > 0 {
		teamAArgs = append(teamAArgs, "ttl="+strconv.Itoa(int(opts.teamATTL.Seconds())))
	}

	e.mustCLIWithKey(t, e.keys[teamA], teamAArgs...)
	e.mustCLIWithKey(t, e.keys[teamB], "write", mount+"/roles/"+teamB, "api_key=-")

	e.mounted = true
}

// processEnv returns the environment of a vault process: this process's
// environment without VAULT_* variables and HOME, plus the test's HOME,
// VAULT_ADDR and, when token is not empty, VAULT_TOKEN.
func (e *testEnv) processEnv(token string) []string {
	var env []string

	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}

		env = append(env, kv)
	}

	env = append(env, "HOME="+e.homeDir, "VAULT_ADDR="+e.addr)
	if token != "" {
		env = append(env, "VAULT_TOKEN="+token)
	}

	return env
}

// newClient returns a Vault API client for the test's server that sends
// token. It does not retry, so a failed request shows its own error.
func (e *testEnv) newClient(t *testing.T, token string) *api.Client {
	t.Helper()

	cfg := api.DefaultConfig()
	cfg.Address = e.addr
	cfg.MaxRetries = 0
	cfg.Timeout = cliTimeout

	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("create Vault API client: %v", err)
	}

	client.SetToken(token)
	client.ClearNamespace()

	return client
}

// cliResult is the outcome of one vault CLI run.
type cliResult struct {
	stdout   string
	stderr   string
	exitCode int
}

// runCLI runs the vault CLI with args against the test's server,
// authenticated with token, and with stdin as its standard input. It fails
// the test only when the binary cannot run or times out. A non-zero exit
// status is returned to the caller.
func (e *testEnv) runCLI(t *testing.T, token, stdin string, args ...string) cliResult {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()

	var stdout, stderr bytes.Buffer

	cmd := exec.CommandContext(ctx, suite.vaultBin, args...)
	cmd.Env = e.processEnv(token)
	cmd.Dir = e.dir
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr

	err := cmd.Run()

	var exitErr *exec.ExitError

	switch {
	case ctx.Err() != nil:
		t.Fatalf("vault %s timed out after %s\nstderr: %s", strings.Join(args, " "), cliTimeout, stderr.String())
	case errors.As(err, &exitErr):
		// The caller checks the exit status.
	case err != nil:
		t.Fatalf("run vault %s: %v", strings.Join(args, " "), err)
	}

	return cliResult{stdout: stdout.String(), stderr: stderr.String(), exitCode: cmd.ProcessState.ExitCode()}
}

// mustCLI runs the vault CLI with the root token and returns its standard
// output. It fails the test on a non-zero exit status.
func (e *testEnv) mustCLI(t *testing.T, args ...string) string {
	t.Helper()

	return e.mustCLIWithKey(t, "", args...)
}

// mustCLIWithKey runs the vault CLI with the root token and key on
// standard input, for an argument such as api_key=-. It returns standard
// output and fails the test on a non-zero exit status.
func (e *testEnv) mustCLIWithKey(t *testing.T, key string, args ...string) string {
	t.Helper()

	res := e.runCLI(t, e.rootToken, key, args...)
	if res.exitCode != 0 {
		t.Fatalf("vault %s: exit status %d\nstderr: %s", strings.Join(args, " "), res.exitCode, res.stderr)
	}

	return res.stdout
}

// readCreds reads creds/<role> with the vault CLI as the token's owner
// and returns the parsed secret.
func (e *testEnv) readCreds(t *testing.T, token, role string) *api.Secret {
	t.Helper()

	path := mount + "/creds/" + role

	res := e.runCLI(t, token, "", "read", "-format=json", path)
	if res.exitCode != 0 {
		t.Fatalf("vault read %s: exit status %d\nstderr: %s", path, res.exitCode, res.stderr)
	}

	secret, err := api.ParseSecret(strings.NewReader(res.stdout))
	if err != nil {
		t.Fatalf("parse the output of vault read %s: %v\noutput: %s", path, err, res.stdout)
	}

	return secret
}

// issueLeases reads creds/<role> n times with the API client and returns
// the lease IDs.
func (e *testEnv) issueLeases(t *testing.T, role string, n int) []string {
	t.Helper()

	var ids []string

	for range n {
		secret, err := e.client.Logical().Read(mount + "/creds/" + role)
		if err != nil {
			t.Fatalf("read %s/creds/%s: %v", mount, role, err)
		}

		if secret == nil || secret.LeaseID == "" {
			t.Fatalf("read %s/creds/%s returned no lease: %+v", mount, role, secret)
		}

		ids = append(ids, secret.LeaseID)
	}

	return ids
}

// listLeases lists the lease IDs under prefix with
// `vault list sys/leases/lookup/<prefix>`, which exits with status 2 and
// prints {} when there are none.
func (e *testEnv) listLeases(t *testing.T, prefix string) []string {
	t.Helper()

	path := "sys/leases/lookup/" + prefix

	res := e.runCLI(t, e.rootToken, "", "list", "-format=json", path)
	if res.exitCode == 2 && strings.TrimSpace(res.stdout) == "{}" && res.stderr == "" {
		return nil
	}

	if res.exitCode != 0 {
		t.Fatalf("vault list %s: exit status %d\nstderr: %s", path, res.exitCode, res.stderr)
	}

	var keys []string
	if err := json.Unmarshal([]byte(res.stdout), &keys); err != nil {
		t.Fatalf("parse the output of vault list %s: %v\noutput: %s", path, err, res.stdout)
	}

	return keys
}

// checkVaultLog fails the test when the Vault server log, which includes
// the plugin's log lines, contains an API key or a JWT. It also requires one
// of the plugin's own lines once the mount is configured, so that a log
// without the plugin's lines cannot pass.
func (e *testEnv) checkVaultLog(t *testing.T) {
	t.Helper()

	if e.vaultLog == "" {
		return
	}

	text, err := os.ReadFile(e.vaultLog)
	if err != nil {
		t.Errorf("read the Vault server log: %v", err)
		return
	}

	for user, key := range e.keys {
		if bytes.Contains(text, []byte(key)) {
			t.Errorf("the Vault server log contains the API key of emulator user %s", user)
		}
	}

	if match := jwtPattern.Find(text); match != nil {
		t.Errorf("the Vault server log contains a JWT starting %q", truncate(string(match), 24))
	} else if match := jsonSegmentPattern.Find(text); match != nil {
		t.Errorf("the Vault server log contains a base64url JSON segment of a JWT starting %q", truncate(string(match), 24))
	}

	if e.mounted && !bytes.Contains(text, []byte("config written")) {
		t.Errorf("the Vault server log lacks the plugin's \"config written\" line; the plugin's log lines are not in it")
	}
}

// whoAmI calls the emulator's "me" endpoint with token, as a client of
// AISquare would, and returns the user name and the HTTP status.
func (e *testEnv) whoAmI(t *testing.T, token string) (string, int) {
	t.Helper()

	req, err := http.NewRequest(http.MethodGet, e.srv.URL+aisquaretest.PathMe, nil)
	if err != nil {
		t.Fatalf("build the me request: %v", err)
	}

	req.Header.Set("Authorization", "Bearer "+token)

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("call the emulator's me endpoint: %v", err)
	}
	defer resp.Body.Close()

	var me struct {
		Username string `json:"username"`
	}

	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&me); err != nil {
			t.Fatalf("decode the me response: %v", err)
		}
	}

	return me.Username, resp.StatusCode
}

// tokenExpiry returns the exp claim of a JWT without checking its
// signature, which only the emulator can do.
func tokenExpiry(t *testing.T, token string) time.Time {
	t.Helper()

	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		t.Fatalf("parse access token: %v", err)
	}

	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		t.Fatalf("access token exp claim = %v, %v; want a time", exp, err)
	}

	return exp.Time
}

// waitFor polls cond every 100ms until it returns true or timeout passes,
// and reports whether it returned true.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)

	for {
		if cond() {
			return true
		}

		if time.Now().After(deadline) {
			return false
		}

		time.Sleep(100 * time.Millisecond)
	}
}

// randomHex returns n random bytes in hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()

	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("read random bytes: %v", err)
	}

	return hex.EncodeToString(b)
}

// truncate returns the first n bytes of s.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}

	return s[:n]
}

// lockedBuffer is a bytes.Buffer that is safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}

func TestLeakPatternsMatchEmulatorTokens(t *testing.T) {
	t.Parallel()

	emulator := aisquaretest.New(aisquaretest.Options{})
	emulator.AddUser(teamA, "key-for-the-pattern-test")

	req := httptest.NewRequest(http.MethodPost, aisquaretest.PathLogin, strings.NewReader(`{"api_key": "key-for-the-pattern-test"}`))
	req.Header.Set("Content-Type", "application/json")

	rec := httptest.NewRecorder()
	emulator.Handler().ServeHTTP(rec, req)

	var pair struct {
		Access  string `json:"access"`
		Refresh string `json:"refresh"`
	}

	if err := json.Unmarshal(rec.Body.Bytes(), &pair); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("emulator login = %d %s, %v; want 200 with tokens", rec.Code, rec.Body, err)
	}

	for name, token := range map[string]string{"access": pair.Access, "refresh": pair.Refresh} {
		line := "[DEBUG] plugin: token=" + token + " role=team-a"
		if got := jwtPattern.FindString(line); got != token {
			t.Errorf("jwtPattern in a line with the %s token found %q; want the whole token", name, got)
		}

		header, claims, _ := strings.Cut(token, ".")
		claims, _, _ = strings.Cut(claims, ".")

		for part, segment := range map[string]string{"header": header, "claims": claims} {
			if !jsonSegmentPattern.MatchString("value=" + segment) {
				t.Errorf("jsonSegmentPattern does not match the %s token's %s alone", name, part)
			}
		}
	}

	harmless := []string{
		"secrets.vault-plugin-secrets-aisquare.vault-plugin-secrets-aisquare_93499150.vault-plugin-secrets-aisquare: issued credentials",
		"Vault v1.21.4, built 2025-12-04T20:18:05Z",
		"listening on 127.0.0.1:8200",
		"client_token=hmac-sha256:a6501c24ca124dc7434848ba715b1047ff0240c543727d0d6ec04cfe9ed1d9cb",
	}
	for _, line := range harmless {
		if match := jwtPattern.FindString(line); match != "" {
			t.Errorf("jwtPattern matches %q in the harmless line %q", match, line)
		}

		if match := jsonSegmentPattern.FindString(line); match != "" {
			t.Errorf("jsonSegmentPattern matches %q in the harmless line %q", match, line)
		}
	}
}
