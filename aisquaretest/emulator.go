package aisquaretest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Default token lifetimes, used when Options or SetLifetimes give zero.
const (
	DefaultAccessTTL  = 7 * 24 * time.Hour
	DefaultRefreshTTL = 30 * 24 * time.Hour
)

// Options configures an Emulator.
type Options struct {
	// AccessTTL is the lifetime of access tokens. Zero or less means
	// DefaultAccessTTL. It is truncated to whole seconds, with a minimum of
	// one second, because exp and iat are Unix seconds.
	AccessTTL time.Duration
	// RefreshTTL is the lifetime of refresh tokens, with the same rules as
	// AccessTTL and DefaultRefreshTTL as the default.
	RefreshTTL time.Duration
	// RotateRefresh makes the refresh endpoint return a new refresh token and
	// blacklist the one it received, like SimpleJWT's ROTATE_REFRESH_TOKENS
	// with BLACKLIST_AFTER_ROTATION.
	RotateRefresh bool
	// Now is the clock used for iat, exp and token validation. Nil means
	// time.Now.
	Now func() time.Time
	// Logger receives one line per request with the method, path, status,
	// user name and duration, but never keys, tokens or bodies. A Server
	// also sends its net/http errors there. Nil means no request log.
	Logger *log.Logger
}

// Emulator contains the state of an emulated AISquare token API: users,
// issued and blacklisted refresh tokens, counters, injected faults and
// settings. Its methods are safe for concurrent use. Serve it with Handler,
// or use Server to get a listener as well.
type Emulator struct {
	secret []byte // HS256 signing key, random per Emulator
	now    func() time.Time
	logger *log.Logger

	mu            sync.Mutex
	accessTTL     time.Duration
	refreshTTL    time.Duration
	rotateRefresh bool
	lastUserID    int
	usersByName   map[string]*user
	usersByID     map[int]*user
	usersByKey    map[string]*user
	blacklist     map[string]struct{} // jti of every blacklisted refresh token
	totals        Counters
	faults        []Fault
}

type user struct {
	name   string
	apiKey string
	id     int
	// sessions contains the jti of every refresh token issued to the user
	// and not yet blacklisted, so that RevokeSessions can blacklist them.
	sessions map[string]struct{}
	counters Counters
}

// Errors returned by addUser, which the control endpoints map to statuses.
var (
	errMissingUserName = errors.New("name is required")
	errMissingAPIKey   = errors.New("api_key is required")
	errAPIKeyInUse     = errors.New("api_key is already assigned to another user")
)

// New returns an Emulator with no users, configured by opts.
func New(opts Options) *Emulator {
	now := opts.Now
	if now == nil {
		now = time.Now
	}

	e := &Emulator{
		secret:        make([]byte, 32),
		now:           now,
		logger:        opts.Logger,
		accessTTL:     normalizeTTL(opts.AccessTTL, DefaultAccessTTL),
		refreshTTL:    normalizeTTL(opts.RefreshTTL, DefaultRefreshTTL),
		rotateRefresh: opts.RotateRefresh,
		usersByName:   make(map[string]*user),
		usersByID:     make(map[int]*user),
		usersByKey:    make(map[string]*user),
		blacklist:     make(map[string]struct{}),
		totals:        newCounters(),
	}
	// crypto/rand.Read never returns an error since Go 1.24.
	_, _ = rand.Read(e.secret)
	return e
}

// normalizeTTL applies the documented rules for Options.AccessTTL and
// Options.RefreshTTL.
func normalizeTTL(ttl, defaultTTL time.Duration) time.Duration {
	if ttl <= 0 {
		return defaultTTL
	}
	if ttl < time.Second {
		return time.Second
	}
	return ttl.Truncate(time.Second)
}

// Handler returns the HTTP handler for the API endpoints and the
// /_emulator/ controls.
func (e *Emulator) Handler() http.Handler {
	return http.HandlerFunc(e.serveHTTP)
}

// ValidateUserName returns an error unless name can name an emulator user:
// 1 to 150 ASCII letters, digits and the characters . _ + -. The limit keeps
// names usable in /_emulator/users/{name} paths and in the emulated e-mail
// address, and 150 is Django's maximum username length.
func ValidateUserName(name string) error {
	if name == "" {
		return errMissingUserName
	}
	if len(name) > 150 {
		return fmt.Errorf("user name %.20q... is longer than 150 characters", name)
	}
	for _, c := range name {
		isLetter := ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
		isDigit := '0' <= c && c <= '9'
		if !isLetter && !isDigit && c != '.' && c != '_' && c != '+' && c != '-' {
			return fmt.Errorf("user name %q contains %q; use only ASCII letters, digits, '.', '_', '+' and '-'", name, c)
		}
	}
	return nil
}

// AddUser adds a user that logs in with apiKey and returns its user_id.
// User IDs are assigned 1, 2, 3… in order of creation. Adding a name that
// exists replaces its API key and keeps its user_id and sessions.
//
// AddUser panics when name is invalid (see ValidateUserName), when apiKey is
// empty or when another user already has apiKey, because a login could then
// not tell the users apart.
func (e *Emulator) AddUser(name, apiKey string) int {
	id, err := e.addUser(name, apiKey)
	if err != nil {
		panic(fmt.Sprintf("aisquaretest: AddUser(%q): %v", name, err))
	}
	return id
}

func (e *Emulator) addUser(name, apiKey string) (int, error) {
	if err := ValidateUserName(name); err != nil {
		return 0, err
	}
	if apiKey == "" {
		return 0, errMissingAPIKey
	}

	e.mu.Lock()
	defer e.mu.Unlock()

	if holder := e.usersByKey[apiKey]; holder != nil && holder.name != name {
		return 0, errAPIKeyInUse
	}

	if u := e.usersByName[name]; u != nil {
		delete(e.usersByKey, u.apiKey)
		u.apiKey = apiKey
		e.usersByKey[apiKey] = u
		return u.id, nil
	}

	e.lastUserID++
	u := &user{
		name:     name,
		apiKey:   apiKey,
		id:       e.lastUserID,
		sessions: make(map[string]struct{}),
		counters: newCounters(),
	}
	e.usersByName[name] = u
	e.usersByID[u.id] = u
	e.usersByKey[apiKey] = u
	return u.id, nil
}

// RemoveUser deletes the user and its counters. Later logins with its API
// key fail with 401, and so do refreshes and "me" calls with its tokens. It
// does nothing when the user is unknown. Adding the name again creates a new
// user with a new user_id, so the old tokens stay invalid.
func (e *Emulator) RemoveUser(name string) {
	e.removeUser(name)
}

func (e *Emulator) removeUser(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()

	u := e.usersByName[name]
	if u == nil {
		return false
	}
	delete(e.usersByName, name)
	delete(e.usersByID, u.id)
	delete(e.usersByKey, u.apiKey)
	return true
}

// UserID returns the user_id of the named user, or 0 if it is unknown.
func (e *Emulator) UserID(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()

	if u := e.usersByName[name]; u != nil {
		return u.id
	}
	return 0
}

type userSummary struct {
	Name   string `json:"name"`
	UserID int    `json:"user_id"`
}

// listUsers returns every user ordered by user_id.
func (e *Emulator) listUsers() []userSummary {
	e.mu.Lock()
	defer e.mu.Unlock()

	users := make([]userSummary, 0, len(e.usersByName))
	for _, u := range e.usersByName {
		users = append(users, userSummary{Name: u.name, UserID: u.id})
	}
	sort.Slice(users, func(i, j int) bool { return users[i].UserID < users[j].UserID })
	return users
}

// RevokeSessions blacklists every refresh token issued to the user so far,
// as a server-side logout would. Tokens issued afterwards are not affected,
// and access tokens stay valid until they expire. It does nothing when the
// user is unknown.
func (e *Emulator) RevokeSessions(name string) {
	e.revokeSessions(name)
}

func (e *Emulator) revokeSessions(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()

	u := e.usersByName[name]
	if u == nil {
		return false
	}
	for jti := range u.sessions {
		e.blacklist[jti] = struct{}{}
	}
	clear(u.sessions)
	return true
}

// SetLifetimes sets the lifetimes of tokens issued from now on, with the
// rules of Options.AccessTTL and Options.RefreshTTL, so zero selects the
// default. Tokens issued earlier keep their exp.
func (e *Emulator) SetLifetimes(access, refresh time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()

	e.accessTTL = normalizeTTL(access, DefaultAccessTTL)
	e.refreshTTL = normalizeTTL(refresh, DefaultRefreshTTL)
}

// SetRotateRefresh turns refresh token rotation on or off (see
// Options.RotateRefresh).
func (e *Emulator) SetRotateRefresh(on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()

	e.rotateRefresh = on
}

// settings is the JSON form of the settings in /_emulator/settings.
type settings struct {
	AccessTTLSeconds  int64 `json:"access_ttl_seconds"`
	RefreshTTLSeconds int64 `json:"refresh_ttl_seconds"`
	RotateRefresh     bool  `json:"rotate_refresh"`
}

func (e *Emulator) currentSettings() settings {
	e.mu.Lock()
	defer e.mu.Unlock()

	return settings{
		AccessTTLSeconds:  int64(e.accessTTL / time.Second),
		RefreshTTLSeconds: int64(e.refreshTTL / time.Second),
		RotateRefresh:     e.rotateRefresh,
	}
}
