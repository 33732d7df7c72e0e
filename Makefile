# Build, run and test the AISquare secrets engine. `make test` runs every
# test; `make dev` starts a dev Vault with the plugin and an emulator of
# AISquare.

# VERSION is the plugin version that the build stamps into the binary and
# that bootstrap/configure.sh registers with Vault. Override it on the
# command line (make bin VERSION=v0.2.0), not from the environment, where
# an unrelated VERSION is common.
VERSION := v0.1.0
export AISQUARE_PLUGIN_VERSION := $(VERSION)

# Upper bound for one test package. The end-to-end tests start real Vault
# servers, so they take much longer than the unit tests.
TEST_TIMEOUT := 30m

.PHONY: bin dev test bench vault fmt fmtcheck vet clean version

bin:
	scripts/build.sh

dev:
	scripts/dev.sh

# The end-to-end tests skip when VAULT_BIN is unset, so the recipe fails
# when install-vault.sh fails instead of running go test without it.
test: bin
	vault_bin="$$(scripts/install-vault.sh)" && \
		VAULT_BIN="$$vault_bin" go test -count=1 -timeout $(TEST_TIMEOUT) ./...
	scripts/test-bootstrap.sh

# Measures the plugin's read paths against a kv-v2 read on a dev Vault and
# an emulator of its own, and rewrites the results in docs/benchmarks.md.
bench:
	scripts/bench.sh

vault:
	scripts/install-vault.sh

fmt:
	gofmt -w .

fmtcheck:
	scripts/gofmtcheck.sh

vet:
	go vet ./...

clean:
	@if ls .dev/pids/*.pid >/dev/null 2>&1; then \
		echo "make clean: .dev/pids has PID files of a running dev environment; stop it with bootstrap/stop.sh first" >&2; \
		exit 1; \
	fi
	rm -rf bin .dev

version:
	@echo $(VERSION)
