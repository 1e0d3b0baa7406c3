# oneshot — build, test and measure. `make help` lists the targets.
GO         ?= go
PKGS       ?= ./...
# The whole suite must stay well under 10 minutes on a 2-core machine; the
# timeout is a backstop against a hung test, not a budget to spend.
TEST_TIMEOUT ?= 9m
# TESTFLAGS adds go test flags; CI passes -count=1 so that a result cached
# from an earlier run on the same machine never stands in for a real run.
TESTFLAGS  ?=
BENCH      ?= .
BENCHTIME  ?= 1s
STATICCHECK_VERSION ?= v0.8.2
# gremlins, for make mutation: installed into $(GOBIN) (or GOPATH/bin) by
# go install through the module proxy when missing.
GREMLINS_VERSION ?= v0.6.0
GREMLINS   ?= $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)/gremlins

.PHONY: help run build vet test bench bench-cycle idle-rss bench-ring-c fuzz mutation compare scale bundle benchbox lint fmt

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

# ARGS adds echod flags: make run ARGS='--backend epoll --log-level debug'
run: ## build echod and serve on 127.0.0.1:7007 in the foreground (Ctrl-C stops it)
	$(GO) build -o bin/echod ./cmd/echod
	./bin/echod --listen 127.0.0.1:7007 $(ARGS)

build: ## compile every package and command
	$(GO) build $(PKGS)

# vet is a prerequisite of both test and lint, so `make test lint` (what
# .ci/run does) runs it once.
vet: ## go vet
	$(GO) vet $(PKGS)

# comparetable lives in bench/peers' module (the peers' dependencies stay
# out of the library's go.mod) but imports nothing outside the standard
# library, so its tests need no download.
test: vet ## go vet, then every test under -race (fuzz seed corpora included; installs a C compiler for -race if missing)
	GO="$(GO)" scripts/race-deps.sh
	$(GO) test -race -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $(PKGS)
	cd bench/peers && $(GO) test $(TESTFLAGS) ./comparetable/

bench: ## run the benchmarks (BENCH=regexp BENCHTIME=1s PKGS=./ring/)
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) $(PKGS)

bench-cycle: ## one waiter's wake cycle (Poll, Arm) per backend vs Go's netpoller, medians and ratios (COUNT=5)
	scripts/cycle.sh

idle-rss: ## server RSS per idle connection at N=10000: echod (uring, epoll) vs gnet, medians of 3 (LOOPS=1, SERVERS, ROUNDS)
	scripts/idle-rss.sh

bench-ring-c: ## ring/ NOP and POLL_ADD costs side by side with liburing in C (installs liburing-dev)
	@dpkg -s liburing-dev >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq liburing-dev; }
	bench/c/compare.sh

FUZZTIME ?= 3m
fuzz: ## explore cancel/'s schedules beyond the seed corpus (FUZZTIME=3m)
	$(GO) test -run '^$$' -fuzz=FuzzSchedule -fuzztime=$(FUZZTIME) ./cancel/

# Each mutant costs a build and a full run of cancel/'s tests. -count=1
# keeps gremlins' first, unmutated run out of the test cache, so the
# timeout (that run's time times the coefficient) is a real run's, generous
# enough that a busy machine reports slow runs, not false TIMED OUTs. The
# thresholds make it fail when efficacy falls to 90% or mutator coverage to
# 85% (README, Testing, says which mutants no coverage profile can mark).
mutation: ## mutation-test cancel/ with gremlins (installs it if missing; 5-10 min on 2 cores)
	@test -x $(GREMLINS) || { echo "installing gremlins $(GREMLINS_VERSION)"; GOFLAGS= $(GO) install github.com/go-gremlins/gremlins/cmd/gremlins@$(GREMLINS_VERSION); }
	GOFLAGS="$(GOFLAGS) -count=1" $(GREMLINS) unleash --workers 2 --timeout-coefficient 8 \
		--threshold-efficacy 90 --threshold-mcover 85 ./cancel

# QUICK, ROUNDS, DURATION, WARMUP, SERVERS, CELLS, PIN, SYSCALLS, PREBUILT,
# CPUS pass through to the script (make compare QUICK=1); see scripts/compare.sh.
compare: ## echoload matrix: echod (uring through the ring, uring after polls, epoll) vs C (io_uring, epoll; bench/c), stdlib, gnet, netpoll, nbio; tables under results/
	scripts/compare.sh

bundle: ## build what compare and scale run into bin/bundle, for a machine without Go (PREBUILT=bin/bundle there)
	scripts/bundle.sh

scale: ## echo servers with --loops N on N CPUs of their own, echoload on others: msgs/s and CPU per N (LOOPS, SERVER_CPUS, CLIENT_CPUS; a many-core machine)
	scripts/scale.sh

benchbox: ## compare, a server behind its load, and scale, on a many-core machine in under 10 minutes (PREBUILT=bin/bundle there)
	scripts/benchbox.sh

lint: vet ## gofmt check, go vet, staticcheck (pinned, fetched through go run), darwin and windows builds
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)
	GOOS=darwin $(GO) build $(PKGS)
	GOOS=windows $(GO) build $(PKGS)
	@echo "lint: ok (gofmt, go vet, staticcheck $(STATICCHECK_VERSION), darwin and windows builds: nothing to report)"

fmt: ## rewrite every Go file with gofmt
	gofmt -w $$(git ls-files '*.go')
