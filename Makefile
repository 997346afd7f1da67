# socket-warp — build, test, lint and demo. `make help` lists the targets.
GO        ?= go
BIN       ?= bin
# Fuzz budgets are execution counts, not durations: Go 1.26's coordinator can
# fail a duration-bounded run with "context deadline exceeded" when its
# workers are starved at the deadline (golang/go#75804, fixed in Go 1.27).
# FUZZTIME=30s (or 1000000x) overrides both.
FUZZ_HEADER_RUNS ?= 200000x
FUZZ_API_RUNS    ?= 100000x
BENCHFLAGS ?=
PKGS      := ./shared/... ./listener/... ./connector/... ./example/... ./example/devca/...
# --version prints it; "dev" when git cannot say (a tarball, no git).
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/socket-warp/socket-warp/shared/cli.Version=$(VERSION)
GOBUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

DOCKER    ?= docker
IMAGE_PREFIX ?= socket-warp/
IMAGE_TAG ?= dev
IMAGES    := sw-listener sw-connector sw-devca sw-hello sw-open
# Compose v2 (`docker compose`) if the docker CLI has it, else v1
# (`docker-compose`); COMPOSE=... to choose. compose-test.sh gets it from here.
COMPOSE   ?= $(shell if $(DOCKER) compose version >/dev/null 2>&1; then echo "$(DOCKER) compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)

.PHONY: all build test test-unit fuzz bench-micro lint demo soak soak-quick bench bench-quick clean help tools images compose-check compose-up compose-down compose-test systemd-check systemd-boot-test

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

build: ## bin/sw-listener, bin/sw-connector, bin/sw-devca and the demo tools (static binaries)
	@mkdir -p $(BIN)
	$(GOBUILD) -o $(BIN)/sw-listener ./listener/cmd/sw-listener
	$(GOBUILD) -o $(BIN)/sw-connector ./connector/cmd/sw-connector
	$(GOBUILD) -o $(BIN)/sw-devcerts ./example/cmd/sw-devcerts
	$(GOBUILD) -o $(BIN)/sw-echo ./example/cmd/sw-echo
	$(GOBUILD) -o $(BIN)/sw-devca ./example/devca/cmd/sw-devca
	$(GOBUILD) -o $(BIN)/sw-bench ./example/bench
	$(GOBUILD) -o $(BIN)/sw-hello ./example/cmd/sw-hello
	$(GOBUILD) -o $(BIN)/sw-open ./example/cmd/sw-open

test: test-unit fuzz bench-micro ## every module's tests with -race, a short fuzz run of the parsers, the micro-benchmarks once

# The NAT fault tests run apart and with -v: go test shows a passing
# package's output only so, and when they cannot run (not root, ip, nft or
# conntrack missing) their one line saying why must be seen. A failure shows
# everything.
test-unit:
	$(GO) test -race -count=1 $$($(GO) list $(PKGS) | grep -v '/example/nat$$')
	@out=$$($(GO) test -race -count=1 -v ./example/nat 2>&1); status=$$?; \
	if [ $$status -ne 0 ]; then printf '%s\n' "$$out"; else printf '%s\n' "$$out" | grep -E '^(nat: |ok )'; fi; exit $$status

fuzz: ## fuzz the stream header parser (200,000 inputs) and the API request decoding (100,000); FUZZTIME overrides
	$(GO) test -run=NONE -fuzz=FuzzReadHeader -fuzztime=$(or $(FUZZTIME),$(FUZZ_HEADER_RUNS)) ./shared/wire
	$(GO) test -run=NONE -fuzz=FuzzOpenRequest -fuzztime=$(or $(FUZZTIME),$(FUZZ_API_RUNS)) ./listener/api

bench-micro: ## the codec and relay micro-benchmarks, 100 iterations each: they must run, no figure is checked
	$(GO) test -run=NONE -bench=. -benchtime=100x -benchmem ./shared/wire ./shared/relay

$(STATICCHECK):
	GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

tools: $(STATICCHECK)

lint: $(STATICCHECK) ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l shared listener connector example); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

demo: build ## run the local demo: CA, echo target, listener, connector, curl, text through the tunnel
	BIN=$(BIN) bash example/demo/demo.sh

soak: build ## soak test: 1000 tunnelled connections for 60s through the built daemons, writes soak.json
	$(GO) run ./example/soak -bin $(BIN) -conns 1000 -duration 60s

soak-quick: build ## short soak test: 100 connections for 10s
	$(GO) run ./example/soak -bin $(BIN) -conns 100 -duration 10s

bench: build ## benchmark: direct TCP vs raw quic-go vs the tunnel, 5 rounds, 10,000 idle conns; writes bench.json (BENCHFLAGS for options)
	$(BIN)/sw-bench -bin $(BIN) $(BENCHFLAGS)

bench-quick: build ## the same in under a minute: 3 short rounds, 1,000 idle conns
	$(BIN)/sw-bench -bin $(BIN) -quick $(BENCHFLAGS)

images: build ## container images FROM scratch (static binary, uid 65532): socket-warp/NAME:dev
	@for i in $(IMAGES); do \
		ctx=$(BIN)/image-context/$$i; rm -rf $$ctx; mkdir -p $$ctx/data && cp $(BIN)/$$i $$ctx/ && \
		echo "$(DOCKER) build -t $(IMAGE_PREFIX)$$i:$(IMAGE_TAG) -f images/$$i/Dockerfile $$ctx" && \
		{ out=$$($(DOCKER) build -q -t $(IMAGE_PREFIX)$$i:$(IMAGE_TAG) -f images/$$i/Dockerfile $$ctx 2>&1) || \
			{ echo "$$out"; exit 1; }; }; \
	done
	@for i in $(IMAGES); do $(DOCKER) image inspect -f "{{index .RepoTags 0}} {{.Size}}" $(IMAGE_PREFIX)$$i:$(IMAGE_TAG); done | \
		awk '{ printf "%-34s %5.1f MB\n", $$1, $$2/1e6 }'

compose-check:
	@[ -n "$(COMPOSE)" ] || { echo "make: neither '$(DOCKER) compose' nor docker-compose is installed" >&2; exit 1; }

# .env beside docker-compose.yml, read by Compose itself: the API token once,
# random, in a file only its owner reads. An existing token is kept.
# IMAGE_PREFIX and IMAGE_TAG reach Compose only when given (make's command
# line, the environment or .env); docker-compose.yml has the same defaults.
compose-up: compose-check ## the Docker Compose demo (after make images): a random SW_API_TOKEN into .env (0600) if it has none, then up -d
	@if ! grep -qs '^SW_API_TOKEN=.' .env; then \
		touch .env && chmod 600 .env && \
		printf 'SW_API_TOKEN=%s\n' "$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" >>.env && \
		echo "make: wrote a random SW_API_TOKEN to .env (mode 0600)"; fi
	$(COMPOSE) up -d

compose-down: compose-check ## stop the Docker Compose demo and delete its containers, networks and volumes (.env is kept)
	$(COMPOSE) down -v --remove-orphans

compose-test: images compose-check ## docker-compose.yml: bring the demo up (make compose-up), fetch the target's page through the tunnel, tear it down
	MAKE="$(MAKE)" COMPOSE="$(COMPOSE)" IMAGE_PREFIX=$(IMAGE_PREFIX) IMAGE_TAG=$(IMAGE_TAG) bash example/demo/compose-test.sh

systemd-check: build ## example/systemd units: systemd-analyze verify and security
	BIN=$(BIN) bash example/systemd/check.sh

systemd-boot-test: build ## systemd-check, then the units run for real under systemd as PID 1 in a container (debootstrap)
	BIN=$(BIN) SYSTEMD_BOOT=1 bash example/systemd/check.sh

clean:
	rm -rf $(BIN)
