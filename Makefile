# rafter: build, run a local cluster, test, benchmark.
GO        ?= go
BIN       := bin/rafter
# The fuzz budget is a count of executions per target, not a duration: with
# a duration, go1.26's fuzzing coordinator can fail a clean run with
# "context deadline exceeded" when the deadline meets a busy worker
# (golang/go#75804). FUZZTIME=15s still works for a run by hand.
FUZZ_EXECS ?= 50000
FUZZ_EXECS_SLOW ?= 800
FUZZTIME ?=
# The benchmark harness and its command are modules of their own (each
# with a replace back to this one), so ./... at the top does not reach them;
# their targets run go inside their directories.
BENCH_MODS := bench cmd/rafter-bench
# Packages with tests run under the race detector by `make test`.
TEST_PKGS := ./agent/... ./fsm/... ./cluster/... ./dataplane/... ./client/... ./cmd/... ./internal/...
# System packages the tests need: ip (iproute2) and nft (nftables) for the
# network-namespace tests, iptables for the soak's netem fault where the
# kernel has no sch_netem (an NFQUEUE rule feeding the test's own delay
# and loss), stress-ng for their busy-CPU variants, chromium for the
# dashboard's browser tests, wrk for the upgrade-under-load test.
DEPS_APT  := iproute2 nftables iptables stress-ng chromium wrk

.PHONY: all build run deps test vet depcheck unit fuzz bench bench-quick bench-scaling lint clean FORCE
.PHONY: package deps-ops test-ops
.PHONY: soak soak-vip-idle

all: build

build:
	$(GO) build -o $(BIN) ./cmd/rafter

run: build
	./$(BIN) dev

test: vet depcheck unit fuzz
test: test-ops

vet:
	$(GO) vet ./...
	@for m in $(BENCH_MODS); do (cd $$m && $(GO) vet ./...) || exit 1; done

# The data plane must never depend on Raft, the cluster or the cloud SDK.
depcheck:
	@deps="$$($(GO) list -deps ./dataplane/...)" || exit 1; \
	bad="$$(printf '%s\n' "$$deps" | grep -E '^(github\.com/hashicorp/raft|github\.com/aws/aws-sdk-go-v2|github\.com/rafterlb/rafter/cluster)(/|$$)' || true)"; \
	if [ -n "$$bad" ]; then \
		echo "import rule broken: ./dataplane/... must not depend on hashicorp/raft, aws-sdk-go-v2 or rafter/cluster; it imports:"; \
		printf '  %s\n' $$bad; \
		exit 1; \
	fi; \
	echo "depcheck: dataplane imports neither raft, the AWS SDK nor cluster"

# Installs what the tests need (as root; .ci/run calls it before make
# test). make test itself installs nothing: the network-namespace tests
# fail, naming what is missing, where these are absent.
deps: deps-ops
	apt-get install -y $(DEPS_APT) || { apt-get update && apt-get install -y $(DEPS_APT); }

# -count=1: the system tests run a rafter binary they build themselves,
# which go test's result cache cannot see; never trust a cached pass.
# The one-minute chaos soak in make test runs every fault kind, as make
# soak does for longer. netem runs with tc netem, or where the kernel has
# no sch_netem (CI's) with its NFQUEUE emulation (iptables, from make deps).
SOAK_TEST_FAULTS := kill-9,sigstop,partition-node,partition-zone,netem,disk-full

unit:
	RAFTER_SOAK_FAULTS=$(SOAK_TEST_FAULTS) $(GO) test -race -count=1 -timeout 15m $(TEST_PKGS)
	@for m in $(BENCH_MODS); do (cd $$m && $(GO) test -race -count=1 ./...) || exit 1; done

# A short fuzz budget per target; each target runs on its own (go test
# -fuzz takes one target in one package at a time): the manifest parser,
# the proxy (request parsing, PROXY headers, the differential test) and
# validation against the data plane (internal/hardening). Each target gets
# FUZZ_EXECS executions (about 2-15 s each here); the differential test,
# which runs every input through two servers, gets FUZZ_EXECS_SLOW.
fuzz:
	@budget() { \
		if [ -n "$(FUZZTIME)" ]; then echo "$(FUZZTIME)"; \
		elif [ "$$1" = FuzzDifferential ]; then echo "$(FUZZ_EXECS_SLOW)x"; \
		else echo "$(FUZZ_EXECS)x"; fi; \
	}; \
	for t in FuzzParseManifest FuzzDecodeCommand; do \
		echo "fuzz ./fsm $$t"; \
		$(GO) test -run=NONE -fuzz="^$$t\$$" -fuzztime=$$(budget $$t) ./fsm || exit 1; \
	done; \
	for pkg in $$($(GO) list ./dataplane/... ./internal/hardening); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do \
			echo "fuzz $$pkg $$t"; \
			$(GO) test -run=NONE -fuzz="^$$t\$$" -fuzztime=$$(budget $$t) $$pkg || exit 1; \
		done; \
	done

# The chaos soak (TestChaosSoak in internal/netns): faults under load in the
# namespace rig for SOAK_DURATION, then the checks; prints the fault table.
# Needs root, iproute2, nftables and, for the netem fault, the sch_netem
# kernel module or else iptables and the kernel's NFQUEUE support.
# RAFTER_SOAK_SEED replays a run. A 60-second run is part of make test.
.PHONY: soak soak-chaos soak-vip-idle
SOAK_DURATION ?= 10m
soak: soak-chaos soak-vip-idle
soak-chaos:
	RAFTER_SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -timeout 45m -v -run '^TestChaosSoak$$' ./internal/netns
# Ten minutes of an idle cluster with both cores busy: no linux VIP may
# move, blink or have two holders (make test runs a one-minute version).
soak-vip-idle:
	RAFTER_SOAK=1 $(GO) test -count=1 -timeout 20m -run '^TestVIPIdleNoNeedlessMove$$' ./internal/netns/

# Needs root (taskset; apt-get install haproxy nginx wrk when missing) and 2 cores.
# Ends with the summary table against HAProxy (also written to
# bench/results/<date>-<sha>.md beside the JSON and the chart); bench-quick
# takes a few minutes, bench about a quarter of an hour.
bench: bin/rafter-bench
	./bin/rafter-bench $(BENCH_FLAGS)

bench-quick: bin/rafter-bench
	./bin/rafter-bench --quick $(BENCH_FLAGS)

# The 2-core scaling comparison alone (a few minutes).
bench-scaling: bin/rafter-bench
	./bin/rafter-bench --scaling-only $(BENCH_FLAGS)

# Built in its own module, run from the top: the harness builds
# ./cmd/rafter of the module it is started in.
bin/rafter-bench: FORCE
	cd cmd/rafter-bench && $(GO) build -o ../../bin/rafter-bench .

FORCE:

lint:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(MAKE) vet

clean:
	rm -rf bin
	rm -rf $(DIST)

# Packages: .deb and .rpm of the binary, the systemd units, a default
# config, shell completions and the man page, built with nfpm from the
# tools module in deploy/package/nfpm (so the product's go.mod stays lean).
DIST        ?= dist
PKG_VERSION ?= 0.1.0
PKG_ARCH    ?= $(shell $(GO) env GOARCH)
STAGE       := $(DIST)/stage
package:
	rm -rf $(STAGE) && mkdir -p $(STAGE)/completions $(STAGE)/systemd
	cp deploy/systemd/*.service $(STAGE)/systemd/
	cp deploy/package/rafter.yaml deploy/package/default deploy/package/*.sh docs/operations.md LICENSE CHANGELOG.md $(STAGE)/
	CGO_ENABLED=0 GOARCH=$(PKG_ARCH) $(GO) build -trimpath -ldflags='-s -w' -o $(STAGE)/rafter ./cmd/rafter
	$(GO) build -o $(STAGE)/rafter-host ./cmd/rafter
	$(STAGE)/rafter-host completion bash > $(STAGE)/completions/rafter.bash
	$(STAGE)/rafter-host completion zsh > $(STAGE)/completions/_rafter
	$(STAGE)/rafter-host completion fish > $(STAGE)/completions/rafter.fish
	gzip -9n < deploy/package/rafter.1 > $(STAGE)/rafter.1.gz
	cd deploy/package/nfpm && GOWORK=off $(GO) build -o $(abspath $(STAGE))/nfpm .
	for p in deb rpm; do \
		(cd $(STAGE) && PKG_VERSION=$(PKG_VERSION) PKG_ARCH=$(PKG_ARCH) \
			./nfpm --config $(CURDIR)/deploy/package/nfpm.yaml --packager $$p --target $(abspath $(DIST))/) || exit 1; \
	done
	@ls -l $(DIST)/*.deb $(DIST)/*.rpm

# What test-ops needs on a clean Debian machine (run as root; part of
# make deps): vagrant
# (`vagrant validate`), shellcheck, systemd-analyze (package systemd),
# dpkg-deb, gzip. Terraform is not in Debian: see docs/operations.md.
deps-ops:
	@missing=""; \
	for t in vagrant:vagrant shellcheck:shellcheck systemd-analyze:systemd dpkg-deb:dpkg gzip:gzip; do \
		command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps-ops: apt-get install -y$$missing"; \
		apt-get install -y $$missing || { apt-get update && apt-get install -y $$missing; }; \
	fi

# Deployment checks: Vagrantfile, shell scripts, systemd units, packages,
# Terraform policy and alert rules (the Go tests in ./deploy build the
# packages themselves).
test-ops:
	VAGRANT_VAGRANTFILE=Vagrantfile vagrant validate
	shellcheck $$(git ls-files '*.sh')
	$(GO) test -count=1 -timeout 10m ./deploy/...
