# Example Vault Agent config: logs in with team A's Vault token and renders
# team A's AISquare access token into a file, which it rewrites when it
# reads new credentials. Run it from the repository root while `make dev`
# runs, in a shell with the VAULT_ADDR that make dev printed:
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
  # Exit once the template's retries run out, instead of retrying
  # forever, for example when the token lacks the team-a policy.
  exit_on_retry_failure = true
}

template {
  source      = "bootstrap/agent/token.ctmpl"
  destination = ".dev/agent/team-a-access-token"
  perms       = "0600"
}
