package aisquare

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// API keys of the users that every test emulator has.
const (
	mountKey = "key-mount-0123456789"
	teamAKey = "key-team-a-0123456789"
	teamBKey = "key-team-b-0123456789"
)

// Lease settings of the test mount.
const (
	testDefaultLeaseTTL = 24 * time.Hour
	testMaxLeaseTTL     = 32 * 24 * time.Hour
	testAccessTTL       = time.Hour
	testRefreshTTL      = 24 * time.Hour
)

// testStart is where every test clock starts: a whole second, so that JWT
// exp claims equal start plus the lifetime exactly.
var testStart = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)

// testClock is a clock that moves only when a test advances it. The
// backend and the emulator share one, so token expiries line up.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.now = c.now.Add(d)
}

// lockedBuffer is a bytes.Buffer that is safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()

	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()

	return l.buf.String()
}

// failingStorage is an in-memory storage whose operations can be made to
// fail, to test the storage error branches.
type failingStorage struct {
	logical.Storage

	mu   sync.Mutex
	fail map[string]bool
}

var errStorageFailed = errors.New("storage failed")

func (s *failingStorage) failOn(ops ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()

	for _, op := range ops {
		s.fail[op] = true
	}
}

func (s *failingStorage) failing(op string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.fail[op]
}

func (s *failingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if s.failing("get") {
		return nil, errStorageFailed
	}

	return s.Storage.Get(ctx, key)
}

func (s *failingStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	if s.failing("put") {
		return errStorageFailed
	}

	return s.Storage.Put(ctx, entry)
}

func (s *failingStorage) List(ctx context.Context, prefix string) ([]string, error) {
	if s.failing("list") {
		return nil, errStorageFailed
	}

	return s.Storage.List(ctx, prefix)
}

func (s *failingStorage) Delete(ctx context.Context, key string) error {
	if s.failing("delete") {
		return errStorageFailed
	}

	return s.Storage.Delete(ctx, key)
}

// testEnv is a backend on in-memory storage, an emulator on 127.0.0.1 with
// the users team-a, team-b and mount, and the clock they share.
type testEnv struct {
	b       *backend
	storage *failingStorage
	srv     *aisquaretest.Server
	clock   *testClock
	logs    *lockedBuffer
}

// newTestEnv starts an emulator with opts, whose lifetimes default to
// testAccessTTL and testRefreshTTL, and a backend that logs at trace level.
func newTestEnv(t *testing.T, opts aisquaretest.Options) *testEnv {
	t.Helper()

	clock := &testClock{now: testStart}

	if opts.AccessTTL == 0 {
		opts.AccessTTL = testAccessTTL
	}

	if opts.RefreshTTL == 0 {
		opts.RefreshTTL = testRefreshTTL
	}

	opts.Now = clock.Now

	srv := aisquaretest.NewServer(opts)
	t.Cleanup(srv.Close)

	srv.AddUser("mount", mountKey)
	srv.AddUser("team-a", teamAKey)
	srv.AddUser("team-b", teamBKey)

	logs := &lockedBuffer{}
	storage := &failingStorage{Storage: &logical.InmemStorage{}, fail: map[string]bool{}}

	conf := &logical.BackendConfig{
		Logger: hclog.New(&hclog.LoggerOptions{
			Level:  hclog.Trace,
			Output: logs,
		}),
		StorageView: storage,
		System: &logical.StaticSystemView{
			DefaultLeaseTTLVal: testDefaultLeaseTTL,
			MaxLeaseTTLVal:     testMaxLeaseTTL,
		},
	}

	b := newBackend()
	b.now = clock.Now

	if err := b.Setup(context.Background(), conf); err != nil {
		t.Fatalf("Setup() error = %v", err)
	}

	env := &testEnv{b: b, storage: storage, srv: srv, clock: clock, logs: logs}

	t.Cleanup(func() { env.assertNoSecretsLogged(t) })

	return env
}

// request sends one request to the backend, as Vault would.
func (e *testEnv) request(t *testing.T, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	t.Helper()

	req := &logical.Request{
		Operation:  op,
		Path:       path,
		Data:       data,
		Storage:    e.storage,
		MountPoint: "aisquare/",
	}

	if op == logical.CreateOperation || op == logical.UpdateOperation {
		checked, exists, err := e.b.HandleExistenceCheck(context.Background(), req)

		// Vault responds to a field that fails validation in the existence
		// check with a 400.
		var userErr errutil.UserError
		if errors.As(err, &userErr) {
			return logical.ErrorResponse(userErr.Error()), nil
		}

		if err != nil && !errors.Is(err, logical.ErrUnsupportedPath) {
			t.Fatalf("existence check of %s: %v", path, err)
		}

		// Like Vault, treat every write as an update on a path without an
		// existence check.
		req.Operation = logical.UpdateOperation
		if checked && !exists {
			req.Operation = logical.CreateOperation
		}
	}

	return e.b.HandleRequest(context.Background(), req)
}

// mustRequest sends a request that must succeed without an error response.
func (e *testEnv) mustRequest(t *testing.T, op logical.Operation, path string, data map[string]any) *logical.Response {
	t.Helper()

	resp, err := e.request(t, op, path, data)
	if err != nil {
		t.Fatalf("%s %s: error = %v", op, path, err)
	}

	if resp != nil && resp.IsError() {
		t.Fatalf("%s %s: error response = %v", op, path, resp.Error())
	}

	return resp
}

// configure writes a config that points at the emulator with the mount
// key, plus extra fields.
func (e *testEnv) configure(t *testing.T, extra map[string]any) {
	t.Helper()

	data := map[string]any{
		"api_key":  mountKey,
		"base_url": e.srv.URL,
	}
	for k, v := range extra {
		data[k] = v
	}

	e.mustRequest(t, logical.UpdateOperation, "config", data)
}

// storedKeys returns every storage key, to check that a rejected request
// changed nothing.
func (e *testEnv) storedKeys(t *testing.T) map[string]string {
	t.Helper()

	keys, err := logical.CollectKeys(context.Background(), e.storage.Storage)
	if err != nil {
		t.Fatalf("CollectKeys() error = %v", err)
	}

	out := make(map[string]string, len(keys))

	for _, key := range keys {
		entry, err := e.storage.Storage.Get(context.Background(), key)
		if err != nil {
			t.Fatalf("Get(%q) error = %v", key, err)
		}

		out[key] = string(entry.Value)
	}

	return out
}

// assertNoSecretsLogged fails the test when the captured plugin log holds
// an API key or a JWT.
func (e *testEnv) assertNoSecretsLogged(t *testing.T) {
	t.Helper()

	for _, found := range secretsIn(e.logs.String()) {
		t.Errorf("plugin log contains a secret: %s", found)
	}
}

// secretsIn lists the test API keys and JWT-shaped strings in logs.
func secretsIn(logs string) []string {
	var found []string

	for _, key := range []string{mountKey, teamAKey, teamBKey} {
		if strings.Contains(logs, key) {
			found = append(found, "API key "+key)
		}
	}

	if match := jwtPattern.FindString(logs); match != "" {
		found = append(found, "JWT "+match)
	}

	return found
}

// counters returns the emulator's totals.
func (e *testEnv) counters() aisquaretest.Counters {
	return e.srv.Counters()
}

func TestFactory(t *testing.T) {
	t.Parallel()

	conf := logical.TestBackendConfig()
	conf.StorageView = &logical.InmemStorage{}

	b, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatalf("Factory() error = %v", err)
	}

	if got := b.Type(); got != logical.TypeLogical {
		t.Errorf("Type() = %v; want %v", got, logical.TypeLogical)
	}

	want := []string{configStoragePath, roleStoragePrefix, staticRoleStoragePrefix, staticSessionStoragePrefix}
	if got := b.SpecialPaths().SealWrapStorage; !slices.Equal(got, want) {
		t.Errorf("SealWrapStorage = %v; want %v", got, want)
	}
}

func TestInvalidateDropsClient(t *testing.T) {
	t.Parallel()

	env := newTestEnv(t, aisquaretest.Options{})
	env.configure(t, nil)

	if _, _, err := env.b.getClient(context.Background(), env.storage); err != nil {
		t.Fatalf("getClient() error = %v", err)
	}

	env.b.invalidate(context.Background(), "roles/other")

	if env.b.client == nil {
		t.Error("client dropped for an unrelated key; want it kept")
	}

	env.b.invalidate(context.Background(), configStoragePath)

	if env.b.client != nil || env.b.config != nil {
		t.Error("client kept after the config changed; want it dropped")
	}
}
