# sendfs build and test entry points. `make test` is what CI runs.
GO        ?= go
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
TIMEOUT   ?= 40m
FUZZTIME  ?= 10s
FUZZTIME_LONG ?= 5m
SEEDS     ?= 2000
DEEP_SEEDS ?= 200
APT_PKGS  := btrfs-progs fuse3 attr acl libcap2-bin rsync xfsprogs util-linux e2fsprogs python3 time \
	     libglib2.0-bin shared-mime-info zstd rclone restic
PREFIX    ?= /usr/local
DESTDIR   ?=

.PHONY: all build deps test unit lint vet fmt-check staticcheck fuzz fuzz-long bench bench-table demo soak clean install

all: build

build:
	$(GO) build -o bin/sendfs ./cmd/sendfs

# deps installs the tools the kernel-oracle tests run, when they are missing.
deps:
	@if ! command -v mkfs.btrfs >/dev/null || ! command -v setfacl >/dev/null || \
	    ! command -v setfattr >/dev/null || ! command -v fusermount3 >/dev/null || \
	    ! [ -x /usr/bin/time ] || ! command -v gio >/dev/null || \
	    ! command -v update-mime-database >/dev/null || ! command -v zstd >/dev/null || \
	    ! command -v rclone >/dev/null || ! command -v restic >/dev/null; then \
		echo "installing $(APT_PKGS)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(APT_PKGS); \
	fi
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@latest

test: deps lint unit fuzz

# unit runs the library packages under the race detector (they are where
# the concurrency is: node cache, read-ahead workers, FUSE handles) and the
# kernel-oracle tests in test/ without it (they spend their time in the
# kernel and in btrfs-progs, and -race would triple their wall time).
unit:
	$(GO) test -count=1 -race -timeout $(TIMEOUT) $$($(GO) list ./... | grep -v '^sendfs/test$$')
	$(GO) test -count=1 -timeout $(TIMEOUT) ./test/

lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	staticcheck ./...

# fuzz runs every Fuzz target of every package briefly (FUZZTIME each).
fuzz:
	GO=$(GO) bash test/fuzz.sh $(FUZZTIME)

# fuzz-long is fuzz with FUZZTIME_LONG per target, for a longer hunt.
fuzz-long:
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME_LONG)

# bench runs every Go benchmark once: test/ prints sendfs against the
# kernel (send, FUSE), btrfsread and sendgen their own; then, last, the
# table of issue 13 (bench-table alone; SENDFS_BENCH_SCALE=N divides its
# corpus by N).
bench: deps build
	$(GO) test -count=1 -timeout 60m -run '^$$' -bench . -skip '^BenchmarkTable$$' -benchtime 1x ./...
	$(MAKE) bench-table

bench-table: deps build
	$(GO) test -count=1 -timeout 90m -run '^$$' -bench '^BenchmarkTable$$' -benchtime 1x ./test/

# demo runs the main job on the bundled image test/testdata/demo.img.gz.
demo: deps build
	test/demo.sh

# soak runs the randomized incremental round trips with more seeds: the
# general mix (SEEDS) and the directory-heavy one at 1,000 operations per
# snapshot (DEEP_SEEDS).
soak: deps
	SENDFS_SEEDS=$(SEEDS) SENDFS_DEEP_SEEDS=$(DEEP_SEEDS) $(GO) test -count=1 -timeout 8h -run '^(TestRandomIncremental|TestRandomDeepMoves)$$' -v ./test/

# install puts sendfs in $(PREFIX)/bin (where mount.fuse3 finds it for
# fuse.sendfs mounts) and the shared-mime-info definition of send streams in
# $(PREFIX)/share/mime, so that file managers name them.
install: build
	install -D -m 0755 bin/sendfs $(DESTDIR)$(PREFIX)/bin/sendfs
	install -D -m 0644 data/sendfs-mime.xml $(DESTDIR)$(PREFIX)/share/mime/packages/sendfs.xml
	@if command -v update-mime-database >/dev/null; then \
		update-mime-database $(DESTDIR)$(PREFIX)/share/mime; \
	else \
		echo "update-mime-database not found (package shared-mime-info): file managers will not name send streams"; \
	fi

clean:
	rm -rf bin
