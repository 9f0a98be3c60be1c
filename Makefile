# vtpmboot. `make test` is what CI runs (after scripts/deps.sh); `make demo`
# is the end-to-end show. See README.md.
GO      ?= go
GOFLAGS ?=
export CGO_ENABLED ?= 0

.PHONY: all build test test-xen test-short deps vet staticcheck fmt-check bench demo fuzz fuzz-grub clean install uninstall deb commands FORCE

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
# It runs once: a failure is a failure. No failure here has been proven
# to lie outside the project (docs/xen.md, "When a guest prints nothing"),
# so none is retried.
test-xen:
	$(GO) test -count=1 -v -timeout 60m ./e2e/xen

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
# 500-guest xl prediction vs hashing its files once, the loader vs pygrub,
# and one stub boot's phase timings. BENCH_SHORT=1 (what CI runs) uses
# small sizes and leaves out the stub's QEMU boot, so it runs in about a
# minute and cannot break unnoticed.
bench:
	BENCH_SHORT=$(BENCH_SHORT) bench/run.sh
	BENCH_SHORT=$(BENCH_SHORT) bench/loader.sh
	if [ -z "$(BENCH_SHORT)" ]; then bench/stub.sh; fi

demo:
	scripts/demo.sh

# Installs the commands, their man pages and pcrsim's bash completion
# where Debian expects them (PREFIX=/usr for a package; DESTDIR for
# staging), the stub's prebuilt /init that mkstub packs when it is not run
# from the source tree, and the optional hooks that write the next boot's
# prediction (docs/pcrsim.md, "In the guest"). The hooks do nothing until
# /etc/default/vtpmboot-predict says so. vtpmback comes with
# vtpmback.service and /etc/vtpmboot/vtpm.conf (kept if present; uninstall
# leaves it and vTPM state alone). debian/rules calls this target:
# a new command or unit is one word in COMMANDS, SBIN_COMMANDS or UNITS.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBDIR  ?= $(PREFIX)/lib/vtpmboot
MANDIR  ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
SYSCONFDIR  ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
# What --version prints; the package passes its Debian version.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
# Commands for everyone (man section 1) and for root in dom0 (section 8);
# each needs packaging/man/<command>.<section>.
COMMANDS      = pcrsim mkstub
SBIN_COMMANDS = vtpmback
# Commands only a toolstack runs (xl's bootloader=), in LIBDIR, man section 8.
LIB_COMMANDS  = vtpmboot-loader
# systemd units; @BINDIR@ and @SBINDIR@ in them become the install paths.
UNITS = packaging/hooks/vtpmboot-predict.service packaging/hooks/vtpmboot-predict.path packaging/systemd/vtpmback.service
# The stub's /init exactly as images.GoBuild builds it (images/build.go:
# buildEnv and Binary's flags), so that mkstub with the installed /init and
# mkstub in the source tree give the same initramfs (e2e/deb compares them).
INIT_ENV = CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOAMD64=v1 GOFLAGS= GOEXPERIMENT= GOTOOLCHAIN=local
out/vtpmboot-init: FORCE
	mkdir -p out
	$(INIT_ENV) $(GO) build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o $@ ./cmd/vtpmboot
FORCE:

commands: out/vtpmboot-init
	for c in $(COMMANDS) $(SBIN_COMMANDS) $(LIB_COMMANDS); do \
	  GOTOOLCHAIN=local $(GO) build -trimpath -ldflags='-s -w -buildid= -X github.com/vtpmboot/vtpmboot/host/buildinfo.Version=$(VERSION)' -o out/$$c ./cmd/$$c || exit 1; done

install: commands
	for c in $(COMMANDS); do \
	  install -D -m 0755 out/$$c $(DESTDIR)$(BINDIR)/$$c && \
	  install -D -m 0644 packaging/man/$$c.1 $(DESTDIR)$(MANDIR)/man1/$$c.1 && \
	  gzip -9nf $(DESTDIR)$(MANDIR)/man1/$$c.1 || exit 1; done
	for c in $(SBIN_COMMANDS); do \
	  install -D -m 0755 out/$$c $(DESTDIR)$(SBINDIR)/$$c && \
	  install -D -m 0644 packaging/man/$$c.8 $(DESTDIR)$(MANDIR)/man8/$$c.8 && \
	  gzip -9nf $(DESTDIR)$(MANDIR)/man8/$$c.8 || exit 1; done
	for c in $(LIB_COMMANDS); do \
	  install -D -m 0755 out/$$c $(DESTDIR)$(LIBDIR)/$$c && \
	  install -D -m 0644 packaging/man/$$c.8 $(DESTDIR)$(MANDIR)/man8/$$c.8 && \
	  gzip -9nf $(DESTDIR)$(MANDIR)/man8/$$c.8 || exit 1; done
	install -D -m 0755 out/vtpmboot-init $(DESTDIR)$(LIBDIR)/init
	install -D -m 0644 packaging/completion/pcrsim $(DESTDIR)$(BASHCOMPDIR)/pcrsim
	sed 's|@BINDIR@|$(BINDIR)|' packaging/hooks/zz-vtpmboot-predict > out/zz-vtpmboot-predict
	install -D -m 0755 out/zz-vtpmboot-predict $(DESTDIR)$(SYSCONFDIR)/kernel/postinst.d/zz-vtpmboot-predict
	install -D -m 0755 out/zz-vtpmboot-predict $(DESTDIR)$(SYSCONFDIR)/kernel/postrm.d/zz-vtpmboot-predict
	install -D -m 0755 packaging/hooks/vtpmboot-initramfs $(DESTDIR)$(SYSCONFDIR)/initramfs/post-update.d/zz-vtpmboot-predict
	for u in $(UNITS); do \
	  sed 's|@BINDIR@|$(BINDIR)|g; s|@SBINDIR@|$(SBINDIR)|g' $$u > out/$$(basename $$u) && \
	  install -D -m 0644 out/$$(basename $$u) $(DESTDIR)$(SYSTEMDUNITDIR)/$$(basename $$u) || exit 1; done
	[ -e $(DESTDIR)$(SYSCONFDIR)/default/vtpmboot-predict ] || \
	  install -D -m 0644 packaging/hooks/vtpmboot-predict.default $(DESTDIR)$(SYSCONFDIR)/default/vtpmboot-predict
	[ -e $(DESTDIR)$(SYSCONFDIR)/vtpmboot/vtpm.conf ] || \
	  install -D -m 0644 packaging/systemd/vtpm.conf $(DESTDIR)$(SYSCONFDIR)/vtpmboot/vtpm.conf

uninstall:
	for c in $(COMMANDS); do rm -f $(DESTDIR)$(BINDIR)/$$c $(DESTDIR)$(MANDIR)/man1/$$c.1.gz; done
	for c in $(SBIN_COMMANDS); do rm -f $(DESTDIR)$(SBINDIR)/$$c $(DESTDIR)$(MANDIR)/man8/$$c.8.gz; done
	for c in $(LIB_COMMANDS); do rm -f $(DESTDIR)$(LIBDIR)/$$c $(DESTDIR)$(MANDIR)/man8/$$c.8.gz; done
	for u in $(UNITS); do rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/$$(basename $$u); done
	rm -f $(DESTDIR)$(LIBDIR)/init $(DESTDIR)$(BASHCOMPDIR)/pcrsim \
	  $(DESTDIR)$(SYSCONFDIR)/kernel/postinst.d/zz-vtpmboot-predict \
	  $(DESTDIR)$(SYSCONFDIR)/kernel/postrm.d/zz-vtpmboot-predict \
	  $(DESTDIR)$(SYSCONFDIR)/initramfs/post-update.d/zz-vtpmboot-predict

# vtpmboot_VERSION_amd64.deb in out/, built with Debian's own tooling
# (dpkg-buildpackage, debhelper) from a copy of this tree, then checked
# with lintian. Needs the Go on PATH to be go.mod's (README, "Install").
deb:
	packaging/mkdeb.sh

clean:
	rm -rf out .cache/build
