package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// staticAgentTemplate renders the access token of static role team-a.
const staticAgentTemplate = `{{ with secret "aisquare/static-creds/team-a" }}{{ .Data.access_token }}{{ end }}`

// staticTeamAPolicy lets a token read static role team-a's token and
// nothing else of the mount.
const staticTeamAPolicy = `
path "aisquare/static-creds/team-a" {
  capabilities = ["read"]
}
`

func TestAgentRendersStaticRoleRefreshes(t *testing.T) {
	t.Parallel()

	const (
		// Vault calls the periodic function once a minute. A token that
		// lives 100s is due 20s after it was issued, so every call
		// replaces the token, which then has at least 40s left.
		accessTTL     = 100 * time.Second
		refreshBuffer = "80s"
		// watchFor covers at least two periodic calls after Agent starts.
		watchFor = 170 * time.Second
		// renderDelayMax bounds the time from a background refresh to the
		// new token in the rendered file. Agent reads again one second
		// after the ttl that static-creds returns.
		renderDelayMax = 10 * time.Second
	)

	env := newEnv(t, envOptions{emulator: aisquaretest.Options{
		AccessTTL:     accessTTL,
		RefreshTTL:    10 * time.Minute,
		RotateRefresh: true,
	}})

	env.mustCLIWithKey(t, env.keys[teamA], "write", mount+"/static-roles/"+teamA, "api_key=-", "refresh_buffer="+refreshBuffer)
	env.srv.ResetCounters()

	env.mustCLIWithKey(t, staticTeamAPolicy, "policy", "write", "team-a-static", "-")
	agent, renderedPath := env.startAgent(t, env.createToken(t, "team-a-static"), staticAgentTemplate)

	// refreshes holds when a poll first saw each background refresh.
	var refreshes []time.Time

	start, tokens := watchRendered(t, env, agent, renderedPath, watchFor, func(now time.Time) {
		for count := env.srv.Counters().Refreshes; len(refreshes) < count; {
			refreshes = append(refreshes, now)
		}
	})

	end := time.Now()

	t.Logf("tokens that the rendered file contained, in seconds from the first poll:\n%s", describeTokens(start, tokens))
	t.Logf("background refreshes seen at: %s", describeTimes(start, refreshes))

	if len(refreshes) < 2 {
		t.Errorf("background refreshes = %d in %s; want at least 2", len(refreshes), watchFor)
	}

	// Each refresh that had time to reach the file must be followed by a
	// newly rendered token within renderDelayMax.
	for i, refreshed := range refreshes {
		if end.Sub(refreshed) < renderDelayMax {
			continue
		}

		if !renderedBetween(tokens, refreshed.Add(-pollInterval), refreshed.Add(renderDelayMax)) {
			t.Errorf("refresh #%d at %s was not rendered within %s", i+1, offset(start, refreshed), renderDelayMax)
		}
	}

	for i := 1; i < len(tokens); i++ {
		if previous := tokens[i-1]; !tokens[i].seen.Before(previous.exp) {
			t.Errorf("token #%d was rendered at %s, not before token #%d expired at %s",
				i+1, offset(start, tokens[i].seen), i, offset(start, previous.exp))
		}
	}

	if err := agent.stop(); err != nil {
		t.Errorf("stop Vault Agent: %v", err)
	}

	// Every new token came from a refresh of the one shared session:
	// static-creds reads never log in.
	if counters := env.srv.Counters(); counters.Logins != 0 {
		t.Errorf("logins while Agent ran = %d; want 0", counters.Logins)
	}
}

// renderedBetween reports whether a token was first rendered within
// [from, to].
func renderedBetween(tokens []*renderedToken, from, to time.Time) bool {
	for _, token := range tokens {
		if !token.seen.Before(from) && !token.seen.After(to) {
			return true
		}
	}

	return false
}

// describeTimes returns the times as offsets from start, such as
// "+12.3s +72.4s".
func describeTimes(start time.Time, times []time.Time) string {
	parts := make([]string, 0, len(times))
	for _, at := range times {
		parts = append(parts, offset(start, at))
	}

	return strings.Join(parts, " ")
}
