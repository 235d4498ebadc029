# rayo's tasks. `make test` is what CI runs: it installs what the tests
# need (redis-server; chromium for the dashboard's browser tests), then
# vets and runs every test (examples included) with -race.

GO ?= go
PKGS := ./...

.PHONY: test test-chart chaos deps vet lint fix generate protogen verify-generate bench tour fuzz vuln release image

test: deps vet verify-generate
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(MAKE) test-chart

# The Helm chart deploy/helm/rayo, rendered by Helm's Go library in a test
# module of its own (deploy/helm/charttest), so that rayo's module does not
# depend on Helm and Kubernetes.
test-chart:
	cd deploy/helm/charttest && $(GO) vet ./... && $(GO) test -count=1 ./...

# The chaos suite at full size (internal/chaos): real multi-node clusters
# on this machine under node, worker, control-store and RPC faults; it
# prints a table of scenario, faults injected, work done, work lost and
# time. `make test` runs its short version.
chaos: deps
	RAYO_CHAOS=full $(GO) test -count=1 -timeout 20m -v -run '^TestChaos$$' ./internal/chaos/

deps:
	$(GO) mod download
	@command -v protoc >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null)
	@command -v redis-server >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting (make fix)"; exit 1; }
	$(GO) vet $(PKGS)

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: vet
	$(GO) run $(STATICCHECK) ./...

fix:
	gofmt -w $$(git ls-files '*.go')

# The protobuf code is made by pinned tools: protoc from the distribution's
# protobuf-compiler package (its version is checked, since it is written
# into rayo.pb.go's header) and protoc-gen-go as a tool dependency in
# go.mod (so its version is the protobuf module's).
PROTOC_VERSION := libprotoc 3.21.12
PROTO_OUT := internal/rpc/pb/rayo.pb.go

# protogen DIR writes DIR/$(PROTO_OUT) from proto/rayo.proto.
define protogen
	@command -v protoc >/dev/null || { echo "protoc not installed: run make deps (apt-get install protobuf-compiler)" >&2; exit 1; }
	@test "$$(protoc --version)" = "$(PROTOC_VERSION)" || { echo "protoc is $$(protoc --version), want $(PROTOC_VERSION) (Debian's protobuf-compiler)" >&2; exit 1; }
	@mkdir -p $(1)/bin
	$(GO) build -o $(1)/bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	protoc --plugin=protoc-gen-go=$(1)/bin/protoc-gen-go --go_out=$(1) --go_opt=module=github.com/rayo-dev/rayo -I proto proto/rayo.proto
endef

# Regenerates the protobuf code and the typed remote-function wrappers.
generate:
	@tmp=$$(mktemp -d); $(MAKE) --no-print-directory protogen DIR=$$tmp && cp $$tmp/$(PROTO_OUT) $(PROTO_OUT); rc=$$?; rm -rf $$tmp; exit $$rc
	$(GO) generate .

protogen:
	$(call protogen,$(DIR))

# Generated code is committed; this checks that it is what the pinned
# tools make from its sources now.
verify-generate:
	@tmp=$$(mktemp); $(GO) run ./internal/gen/funcs -out $$tmp && cmp -s $$tmp funcs_gen.go || { echo "funcs_gen.go is stale: run make generate"; rm -f $$tmp; exit 1; }; rm -f $$tmp
	@tmp=$$(mktemp -d); $(MAKE) --no-print-directory protogen DIR=$$tmp >/dev/null && cmp -s $$tmp/$(PROTO_OUT) $(PROTO_OUT); rc=$$?; rm -rf $$tmp; [ $$rc -eq 0 ] || { echo "$(PROTO_OUT) is stale or protoc failed: run make generate"; exit 1; }

bench:
	$(GO) run ./cmd/rayo microbenchmark

tour:
	$(GO) run ./examples/tour

# Every Fuzz target in the repository, FUZZTIME each (go test -list finds
# them, so new targets are picked up without editing this file).
FUZZTIME ?= 20s

fuzz:
	@set -e; n=0; \
	for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for target in $$($(GO) test -list '^Fuzz' $$dir | grep '^Fuzz'); do \
			echo "fuzz: $$target in $$dir for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$dir; \
			n=$$((n+1)); \
		done; \
	done; \
	test $$n -gt 0 || { echo "fuzz: no Fuzz targets found"; exit 1; }; \
	echo "fuzz: $$n targets ran"

# govulncheck (a tool in go.mod) against a vulnerability database built
# offline from the pinned golang.org/x/vulndb module by internal/tools/vulndb;
# then every finding reachable by symbol must be reviewed in
# docs/vulnerabilities.md (closed, mitigated in code, or not exposed), and
# nothing reviewed may have gone stale. Not part of `make test` (it takes a
# few minutes); .ci/run runs it after the tests.
vuln:
	@db=$$(mktemp -d) && trap 'rm -rf "$$db"' EXIT && \
	$(GO) run ./internal/tools/vulndb -go $(GO) -out "$$db/db" && \
	$(GO) tool govulncheck -db "file://$$db/db" -format json ./... > "$$db/report.json" && \
	$(GO) run ./internal/tools/vulndb -check docs/vulnerabilities.md "$$db/report.json"

# Release archives in dist/: static linux/amd64 and linux/arm64 binaries
# with VERSION stamped (default: git describe), and SHA256SUMS. See
# deploy/release.sh for its settings (VERSION, PLATFORMS, DIST).
release:
	GO=$(GO) deploy/release.sh

# The container image (deploy/Containerfile: the static binary FROM
# scratch, with a /tmp), built with podman or docker; it fetches nothing.
# IMAGE names it (default rayo:VERSION).
image:
	GO=$(GO) deploy/image.sh
