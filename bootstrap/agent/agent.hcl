# Example Vault Agent config: logs in with team A's Vault token and renders
# two AISquare access tokens of team A, each into a file that Agent
# rewrites when it reads a new token:
#
#   .dev/agent/team-a-access-token         from aisquare/creds/team-a: a
#                                          login of Agent's own, as a lease
#   .dev/agent/team-a-static-access-token  from aisquare/static-creds/team-a:
#                                          the token that every reader of
#                                          the static role shares
#
# Run it from the repository root while `make dev` runs, in a shell with
# the VAULT_ADDR that make dev printed:
#
#   vault agent -config=bootstrap/agent/agent.hcl
#
# make dev writes team A's Vault token to .dev/team-a.token. Relative paths
# are resolved against the working directory. With AISQUARE_DEV_DIR set to
# another folder, change .dev/ below to match.

vault {
  # VAULT_ADDR overrides this address.
  address = "http://127.0.0.1:8200"
}

auto_auth {
  # Logs in with the token in the file. The agent renews that token but
  # cannot log in again after it expires.
  method "token_file" {
    config = {
      token_file_path = ".dev/team-a.token"
    }
  }
}

template_config {
  # Exit once a template's retries run out, instead of retrying forever,
  # for example when the token lacks the team-a policy.
  exit_on_retry_failure = true
}

template {
  source      = "bootstrap/agent/token.ctmpl"
  destination = ".dev/agent/team-a-access-token"
  perms       = "0600"
}

# static-creds creates no lease. Agent reads it again after the ttl that
# the read returns, which ends when the token is due for replacement.
template {
  source      = "bootstrap/agent/static-token.ctmpl"
  destination = ".dev/agent/team-a-static-access-token"
  perms       = "0600"
}
