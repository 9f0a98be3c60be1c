# vtpmboot. `make test` is what CI runs (after scripts/deps.sh); `make demo`
# is the end-to-end show. See README.md.
GO      ?= go
GOFLAGS ?=
export CGO_ENABLED ?= 0

.PHONY: all build test test-xen test-short deps vet staticcheck fmt-check bench demo fuzz fuzz-grub clean install uninstall

# Pinned so that a new release's checks cannot turn a green tree red.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

all: build

build:
	$(GO) build ./...

deps:
	scripts/deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) run $(STATICCHECK) ./...

# The whole suite: unit, swtpm cross-checks, real filesystem images and the
# QEMU end-to-end boots. It installs what it needs first (scripts/deps.sh is
# idempotent and quiet when everything is there), so it is the first command
# a newcomer can run. The race detector needs cgo.
test: deps fmt-check vet staticcheck
	CGO_ENABLED=1 $(GO) test -race -timeout 50m $$($(GO) list ./... | grep -v '/e2e/xen$$')
	$(MAKE) test-xen
	scripts/fuzz.sh $(FUZZTIME_CI)

# The Xen suite (docs/xen.md): one Xen boot under QEMU running every guest,
# after the other tests rather than beside their QEMU boots (two cores).
# VTPMBOOT_XEN_GUESTS=a,b runs some guests only.
# Nested emulation fails now and then after the stub has done its part
# (docs/xen.md, "When a guest prints nothing"): a failed suite is run once
# more, and the first run's per-guest summary stays in the log above.
test-xen:
	$(GO) test -count=1 -v -timeout 60m ./e2e/xen || { \
	  echo "test-xen: the Xen suite FAILED; running it once more (docs/xen.md)"; \
	  $(GO) test -count=1 -v -timeout 60m ./e2e/xen; }

# Unit tests only (no QEMU boots), for quick iteration.
test-short:
	$(GO) test -short ./...

# Runs every fuzz target briefly; FUZZTIME=5m for a real session. make test
# runs each for FUZZTIME_CI (about a minute and a half for all of them).
FUZZTIME ?= 20s
FUZZTIME_CI ?= 3s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

# Differential fuzzing of boot/grub2 against GRUB 2.06 itself (grub-emu,
# internal/grubemu): GRUB_SCRIPTS generated scripts (about 2.7 a second on
# one core), added to the running count in testdata/grubemu/fuzz-count;
# a disagreement lands in testdata/grubemu/found/. make test runs 40.
GRUB_SCRIPTS ?= 2000
fuzz-grub:
	GRUBEMU_FUZZ_SCRIPTS=$(GRUB_SCRIPTS) GRUBEMU_FUZZ_COUNT=$(CURDIR)/testdata/grubemu/fuzz-count \
	  $(GO) test -count=1 -timeout 0 -run '^TestGeneratedScripts$$' -v ./internal/grubemu/

# Prints numbers, asserts nothing: pcrsim vs openssl on 512 MiB, the
# 500-guest xl prediction vs hashing its files once, and one stub boot's
# phase timings.
bench:
	bench/run.sh
	bench/stub.sh

demo:
	scripts/demo.sh

# Installs pcrsim, pcrsim(1) and its bash completion where Debian expects
# them (PREFIX=/usr for a package; DESTDIR for staging), and the optional
# hooks that write the next boot's prediction (docs/pcrsim.md, "In the
# guest"). The hooks do nothing until /etc/default/vtpmboot-predict says so.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
SYSCONFDIR  ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
install:
	mkdir -p out
	$(GO) build -trimpath -o out/pcrsim ./cmd/pcrsim
	install -D -m 0755 out/pcrsim $(DESTDIR)$(BINDIR)/pcrsim
	install -D -m 0644 packaging/man/pcrsim.1 $(DESTDIR)$(MANDIR)/man1/pcrsim.1
	gzip -9nf $(DESTDIR)$(MANDIR)/man1/pcrsim.1
	install -D -m 0644 packaging/completion/pcrsim $(DESTDIR)$(BASHCOMPDIR)/pcrsim
	sed 's|@BINDIR@|$(BINDIR)|' packaging/hooks/zz-vtpmboot-predict > out/zz-vtpmboot-predict
	install -D -m 0755 out/zz-vtpmboot-predict $(DESTDIR)$(SYSCONFDIR)/kernel/postinst.d/zz-vtpmboot-predict
	install -D -m 0755 out/zz-vtpmboot-predict $(DESTDIR)$(SYSCONFDIR)/kernel/postrm.d/zz-vtpmboot-predict
	sed 's|@BINDIR@|$(BINDIR)|' packaging/hooks/vtpmboot-predict.service > out/vtpmboot-predict.service
	install -D -m 0644 out/vtpmboot-predict.service $(DESTDIR)$(SYSTEMDUNITDIR)/vtpmboot-predict.service
	install -D -m 0644 packaging/hooks/vtpmboot-predict.path $(DESTDIR)$(SYSTEMDUNITDIR)/vtpmboot-predict.path
	[ -e $(DESTDIR)$(SYSCONFDIR)/default/vtpmboot-predict ] || \
	  install -D -m 0644 packaging/hooks/vtpmboot-predict.default $(DESTDIR)$(SYSCONFDIR)/default/vtpmboot-predict

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/pcrsim $(DESTDIR)$(MANDIR)/man1/pcrsim.1.gz \
	  $(DESTDIR)$(BASHCOMPDIR)/pcrsim \
	  $(DESTDIR)$(SYSCONFDIR)/kernel/postinst.d/zz-vtpmboot-predict \
	  $(DESTDIR)$(SYSCONFDIR)/kernel/postrm.d/zz-vtpmboot-predict \
	  $(DESTDIR)$(SYSTEMDUNITDIR)/vtpmboot-predict.service \
	  $(DESTDIR)$(SYSTEMDUNITDIR)/vtpmboot-predict.path

clean:
	rm -rf out .cache/build
