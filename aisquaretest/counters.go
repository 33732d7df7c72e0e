package aisquaretest

import "maps"

// Endpoint names, used as keys of Counters.Requests and in Fault.Endpoint.
const (
	EndpointLogin     = "login"
	EndpointRefresh   = "refresh"
	EndpointBlacklist = "blacklist"
	EndpointVerify    = "verify"
	EndpointMe        = "me"
)

// Counters are request counts of the API endpoints, either over all users or
// for one user.
//
// A request counts toward a user when it names that user. Login names the
// user by its API key. Refresh, blacklist, verify and "me" name the user by
// the user_id in a token with a valid signature, even when the token is
// rejected as expired, blacklisted or of the wrong type. Requests that name
// no existing user, and requests that get an injected fault's status instead
// of being handled, count only in the totals.
type Counters struct {
	Logins        int `json:"logins"`        // successful logins
	Refreshes     int `json:"refreshes"`     // successful refreshes
	Revocations   int `json:"revocations"`   // successful blacklists
	Verifications int `json:"verifications"` // successful verifies
	Me            int `json:"me"`            // successful "me" calls
	// Requests counts every request that reached an API endpoint, by
	// endpoint name, including failed, rejected and fault-injected ones.
	Requests map[string]int `json:"requests"`
}

func newCounters() Counters {
	return Counters{Requests: make(map[string]int)}
}

func (c Counters) clone() Counters {
	c.Requests = maps.Clone(c.Requests)
	if c.Requests == nil {
		c.Requests = make(map[string]int)
	}
	return c
}

func (c *Counters) addSuccess(endpoint string) {
	switch endpoint {
	case EndpointLogin:
		c.Logins++
	case EndpointRefresh:
		c.Refreshes++
	case EndpointBlacklist:
		c.Revocations++
	case EndpointVerify:
		c.Verifications++
	case EndpointMe:
		c.Me++
	}
}

// Counters returns the totals over all users since the Emulator was created
// or ResetCounters was last called.
func (e *Emulator) Counters() Counters {
	e.mu.Lock()
	defer e.mu.Unlock()

	return e.totals.clone()
}

// CountersFor returns the counters of the named user, or the zero value if
// the user is unknown.
func (e *Emulator) CountersFor(name string) Counters {
	e.mu.Lock()
	defer e.mu.Unlock()

	u := e.usersByName[name]
	if u == nil {
		return Counters{}
	}
	return u.counters.clone()
}

// countersByUser returns the counters of every user, by user name.
func (e *Emulator) countersByUser() map[string]Counters {
	e.mu.Lock()
	defer e.mu.Unlock()

	byUser := make(map[string]Counters, len(e.usersByName))
	for name, u := range e.usersByName {
		byUser[name] = u.counters.clone()
	}
	return byUser
}

// ResetCounters sets the totals and every user's counters to zero.
func (e *Emulator) ResetCounters() {
	e.mu.Lock()
	defer e.mu.Unlock()

	e.totals = newCounters()
	for _, u := range e.usersByName {
		u.counters = newCounters()
	}
}

// countRequest adds a request to the totals as soon as it reaches an
// endpoint, so that rejected and fault-injected requests are counted too.
func (e *Emulator) countRequest(endpoint string) {
	e.mu.Lock()
	defer e.mu.Unlock()

	e.totals.Requests[endpoint]++
}

// countResult adds a handled request's outcome: a success to the totals, and
// the request and any success to the user it names.
func (e *Emulator) countResult(endpoint string, result apiResult) {
	e.mu.Lock()
	defer e.mu.Unlock()

	succeeded := result.status == 200
	if succeeded {
		e.totals.addSuccess(endpoint)
	}

	u := e.usersByName[result.userName]
	if result.userName == "" || u == nil {
		return
	}
	u.counters.Requests[endpoint]++
	if succeeded {
		u.counters.addSuccess(endpoint)
	}
}
