# socket-warp — build, test, lint and demo. `make help` lists the targets.
GO        ?= go
BIN       ?= bin
FUZZTIME  ?= 10s
PKGS      := ./shared/... ./listener/... ./connector/... ./example/... ./example/devca/...
LDFLAGS   := -s -w
GOBUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: all build test test-unit fuzz lint demo soak soak-quick clean help tools

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

build: ## bin/sw-listener, bin/sw-connector, bin/sw-devca and the demo tools (static binaries)
	@mkdir -p $(BIN)
	$(GOBUILD) -o $(BIN)/sw-listener ./listener/cmd/sw-listener
	$(GOBUILD) -o $(BIN)/sw-connector ./connector/cmd/sw-connector
	$(GOBUILD) -o $(BIN)/sw-devcerts ./example/cmd/sw-devcerts
	$(GOBUILD) -o $(BIN)/sw-echo ./example/cmd/sw-echo
	$(GOBUILD) -o $(BIN)/sw-devca ./example/devca/cmd/sw-devca
	$(GOBUILD) -o $(BIN)/sw-hello ./example/cmd/sw-hello
	$(GOBUILD) -o $(BIN)/sw-open ./example/cmd/sw-open

test: test-unit fuzz ## every module's tests with -race, then a short fuzz run of the header parser

test-unit:
	$(GO) test -race -count=1 $(PKGS)

fuzz: ## fuzz the stream header parser and the API request decoding, FUZZTIME each (default 10s)
	$(GO) test -run=NONE -fuzz=FuzzReadHeader -fuzztime=$(FUZZTIME) ./shared/wire
	$(GO) test -run=NONE -fuzz=FuzzOpenRequest -fuzztime=$(FUZZTIME) ./listener/api

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

clean:
	rm -rf $(BIN)
