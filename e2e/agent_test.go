package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aisquare/vault-plugin-secrets-aisquare/aisquaretest"
)

// agentTemplate renders team-a's access token and nothing else.
const agentTemplate = `{{ with secret "aisquare/creds/team-a" }}{{ .Data.access_token }}{{ end }}`

// renderedToken is one access token that the file rendered by Agent
// contained.
type renderedToken struct {
	token    string
	seen     time.Time // when a poll first read it from the file
	exp      time.Time // its exp claim
	replaced time.Time // when a poll first read the next token, or zero
}

func TestAgentRendersFreshTokens(t *testing.T) {
	t.Parallel()

	const (
		accessTTL = 30 * time.Second
		// watchFor covers about four 20s leases.
		watchFor = 85 * time.Second
	)

	env := newEnv(t, envOptions{emulator: aisquaretest.Options{AccessTTL: accessTTL, RefreshTTL: 5 * time.Minute}})

	auditLog := filepath.Join(env.dir, "audit.log")
	env.mustCLI(t, "audit", "enable", "file", "file_path="+auditLog)

	env.mustCLIWithKey(t, teamAPolicy, "policy", "write", "team-a-creds", "-")
	agent, renderedPath := env.startAgent(t, env.createToken(t, "team-a-creds"), agentTemplate)

	start, tokens := watchRendered(t, env, agent, renderedPath, watchFor, nil)

	t.Logf("tokens that the rendered file contained, in seconds from the first poll:\n%s", describeTokens(start, tokens))

	if replacements := len(tokens) - 1; replacements < 2 {
		t.Errorf("Agent replaced the token %d times in %s; want at least 2", replacements, watchFor)
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

	// The role has no max_ttl, so no renewal may refresh a token: Agent
	// must read new creds instead.
	counters := env.srv.Counters()
	if counters.Refreshes != 0 {
		t.Errorf("refreshes = %d; want 0", counters.Refreshes)
	}

	t.Logf("emulator counters while Agent ran: logins %d, refreshes %d, revocations %d",
		counters.Logins, counters.Refreshes, counters.Revocations)
	t.Logf("Vault requests of Agent, from the audit log, in seconds from the first poll:\n%s",
		describeAgentRequests(t, auditLog, start))
}

// Polling of the file that Agent renders.
const (
	firstRenderMax = 30 * time.Second
	pollInterval   = 100 * time.Millisecond
)

// watchRendered polls the file at path, which agent renders, every
// pollInterval for watchFor, and returns when polling started and every
// token the file contained, in order. Each poll first calls onPoll, when
// set. The test fails when Agent exits, renders nothing within
// firstRenderMax, or renders a token that the emulator does not accept as
// team-a's.
func watchRendered(t *testing.T, env *testEnv, agent *process, path string, watchFor time.Duration,
	onPoll func(now time.Time),
) (time.Time, []*renderedToken) {
	t.Helper()

	start := time.Now()

	var tokens []*renderedToken

	rejected := map[string]bool{}

	for now := start; now.Before(start.Add(watchFor)); now = time.Now() {
		if agent.exited() {
			t.Fatalf("Vault Agent exited after %s: %v", now.Sub(start).Round(time.Millisecond), agent.waitErr)
		}

		if onPoll != nil {
			onPoll(now)
		}

		content, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) && len(tokens) == 0 {
			if now.Sub(start) > firstRenderMax {
				t.Fatalf("Vault Agent rendered no file within %s", firstRenderMax)
			}

			time.Sleep(pollInterval)

			continue
		}

		if err != nil {
			t.Fatalf("read the file that Agent renders: %v", err)
		}

		token := strings.TrimSpace(string(content))

		if len(tokens) == 0 || tokens[len(tokens)-1].token != token {
			if len(tokens) > 0 {
				tokens[len(tokens)-1].replaced = now
			}

			tokens = append(tokens, &renderedToken{token: token, seen: now, exp: tokenExpiry(t, token)})
		}

		if user, ok := env.srv.AccessTokenValid(token); (!ok || user != teamA) && !rejected[token] {
			rejected[token] = true
			t.Errorf("at %s the rendered token #%d (exp %s) is rejected by the emulator: user %q, valid %v",
				offset(start, now), len(tokens), offset(start, tokens[len(tokens)-1].exp), user, ok)
		}

		time.Sleep(pollInterval)
	}

	return start, tokens
}

// startAgent starts Vault Agent with the token in a token_file auto_auth
// method and one template. It returns the Agent process and the path of
// the rendered file, and registers a cleanup that stops Agent.
func (e *testEnv) startAgent(t *testing.T, token, template string) (*process, string) {
	t.Helper()

	tokenFile := filepath.Join(e.dir, "agent-token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatalf("write the Agent token file: %v", err)
	}

	rendered := filepath.Join(e.dir, "rendered-access-token")

	// exit_on_retry_failure makes a broken Agent exit, which the test
	// notices, instead of retrying quietly.
	config := fmt.Sprintf(`
vault {
  address = %q
}

auto_auth {
  method "token_file" {
    config = {
      token_file_path = %q
    }
  }
}

template_config {
  exit_on_retry_failure = true
}

template {
  contents    = %q
  destination = %q
  perms       = "0600"
}
`, e.addr, tokenFile, template, rendered)

	configFile := filepath.Join(e.dir, "agent.hcl")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatalf("write the Agent config: %v", err)
	}

	logPath := filepath.Join(e.dir, "agent.log")

	agent, err := startProcess("vault agent", logPath, e.processEnv(""), suite.vaultBin,
		"agent", "-config="+configFile, "-log-level=trace")
	if err != nil {
		t.Fatalf("start Vault Agent: %v", err)
	}

	t.Cleanup(func() {
		if err := agent.stop(); err != nil {
			t.Errorf("stop Vault Agent: %v", err)
		}

		if t.Failed() {
			t.Logf("Vault Agent log:\n%s", tailFile(logPath, logTailLines))
		}
	})

	return agent, rendered
}

// describeTokens returns one line per rendered token with when it was
// rendered, when it was replaced and when it expired.
func describeTokens(start time.Time, tokens []*renderedToken) string {
	var b strings.Builder

	for i, h := range tokens {
		fmt.Fprintf(&b, "  #%d rendered %s, exp %s", i+1, offset(start, h.seen), offset(start, h.exp))

		if !h.replaced.IsZero() {
			fmt.Fprintf(&b, ", replaced %s: %s before exp, %s before the lease end at exp - 10s",
				offset(start, h.replaced),
				h.exp.Sub(h.replaced).Round(100*time.Millisecond),
				h.exp.Add(-expirySkew).Sub(h.replaced).Round(100*time.Millisecond))
		}

		b.WriteString("\n")
	}

	return b.String()
}

// offset returns the time from start to at, such as +12.3s.
func offset(start, at time.Time) string {
	return fmt.Sprintf("%+.1fs", at.Sub(start).Seconds())
}

// describeAgentRequests returns one line per creds read and lease renewal
// in the file audit log at path, with its time from start and the end of
// its lease ID.
func describeAgentRequests(t *testing.T, path string, start time.Time) string {
	t.Helper()

	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read the audit log: %v)", err)
	}
	defer f.Close()

	var b strings.Builder

	decoder := json.NewDecoder(f)

	for {
		var entry struct {
			Time    time.Time `json:"time"`
			Type    string    `json:"type"`
			Request struct {
				Path string `json:"path"`
			} `json:"request"`
			Response struct {
				Secret struct {
					LeaseID string `json:"lease_id"`
				} `json:"secret"`
			} `json:"response"`
		}

		err := decoder.Decode(&entry)
		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			fmt.Fprintf(&b, "(cannot decode the audit log: %v)\n", err)
			break
		}

		leaseID := entry.Response.Secret.LeaseID
		if entry.Type != "response" || leaseID == "" {
			continue
		}

		action := "renew"
		if entry.Request.Path == mount+"/creds/"+teamA {
			action = "read "
		}

		fmt.Fprintf(&b, "  %s %s lease ...%s\n", offset(start, entry.Time), action, leaseID[len(leaseID)-6:])
	}

	return b.String()
}
