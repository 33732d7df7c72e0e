# Policy of team A's applications on the aisquare/ mount of the dev Vault:
# read team A's credentials and static credentials, and renew and revoke
# the leases of the credentials. Nothing else of the mount, so neither
# team-b's credentials nor the config, roles or static roles.

path "aisquare/creds/team-a" {
  capabilities = ["read"]
}

# Renew and revoke by lease ID in the path, limited to this team's leases.
# `vault lease revoke LEASE_ID` uses this form.
path "sys/leases/renew/aisquare/creds/team-a/*" {
  capabilities = ["update"]
}

path "sys/leases/revoke/aisquare/creds/team-a/*" {
  capabilities = ["update"]
}

# Vault's default policy, attached to every token unless it is created with
# -no-default-policy, grants update on sys/leases/renew with the lease ID in
# the body, which `vault lease renew` and Vault Agent use (Vault 1.21).
#
# NOTE: That grant covers every lease whose ID the token presents, not only
# this team's. When a role's max_ttl is longer than its access token's life,
# a renewal can return a new access token, so a leaked lease ID of another
# team would hand out that team's token. The dev roles leave max_ttl unset.

# Read the shared access token of team A's static role. The read
# creates no lease, so there is nothing to renew or revoke.
path "aisquare/static-creds/team-a" {
  capabilities = ["read"]
}
