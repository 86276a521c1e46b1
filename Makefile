# hbshim - LD_PRELOAD heartbeat and deadline shim.
#
#   make                 build/libhbshim.so, build/libhbshim-noop.so, build/hbshim
#   make check           unit tests (cmocka) + integration tests (bats); installs
#                        missing Debian test packages first when run as root
#   make deps            only that install (make unit / make integration never
#                        install anything)
#   make unit            the cmocka unit tests, then scripts/layers.py (no
#                        dependency circle between shim/ files, none over
#                        800 lines)
#   make check SAN=address|undefined|thread
#   make demo            the dead-peer demo (README)
#   make deb             Debian packages in build/deb (dpkg-buildpackage, lintian)
#   make check-deb       make deb, then install the packages and use them (root)
#   make install PREFIX=/usr/local DESTDIR=
#   make bench           benchmarks (never part of check)
#   make musl            build/musl: the same with musl-gcc (Debian musl-tools)
#   make arm64           build/arm64: the same with aarch64-linux-gnu-gcc
#   make check-cross     both, their unit tests (musl: cmocka compiled from
#                        Debian's source package, scripts/musl-cmocka.sh;
#                        arm64: libcmocka-dev:arm64) and tests/cross (musl
#                        natively, arm64 under qemu-aarch64-static)

CC      ?= cc
CFLAGS  ?= -O2 -g
PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
BINDIR  ?= $(PREFIX)/bin
INCDIR  ?= $(PREFIX)/include
MANDIR  ?= $(PREFIX)/share/man
# Where libhbshim.so goes; the wrapper looks there. A distribution package
# puts it in a private folder of the multiarch directory, as torsocks and
# libfaketime do (it is only ever preloaded, never linked).
PRELOADDIR ?= $(LIBDIR)
DESTDIR ?=
B       := build

override CFLAGS += -std=gnu11 -fPIC -fvisibility=hidden -D_GNU_SOURCE \
	-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wno-unused-parameter -Iinclude -Ishim -MMD -MP \
	-fstack-protector-strong -fstack-clash-protection
# Hardening of the library and the wrapper (tests/bats/hardening.bats).
HARDEN_LD := -Wl,-z,relro,-z,now
LIB_LDFLAGS := -shared -Wl,--version-script=shim/hbshim.map -Wl,-z,nodelete $(HARDEN_LD)
LIBS := -ldl -lpthread

ifeq ($(SAN),address)
  override CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer
  SAN_LD := -fsanitize=address,undefined
else ifeq ($(SAN),undefined)
  override CFLAGS += -fsanitize=undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  SAN_LD := -fsanitize=undefined
else ifeq ($(SAN),thread)
  override CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
  SAN_LD := -fsanitize=thread
else ifneq ($(SAN),)
  $(error SAN must be address, undefined or thread)
else
  LIB_LDFLAGS += -Wl,-z,defs
endif

# Core modules (no interposers, no constructor): linked into unit tests too.
CORE_SRCS := $(filter-out shim/i_%.c shim/init.c,$(wildcard shim/*.c))
LIB_SRCS  := $(wildcard shim/*.c)
CORE_OBJS := $(CORE_SRCS:shim/%.c=$(B)/obj/%.o)
LIB_OBJS  := $(LIB_SRCS:shim/%.c=$(B)/obj/%.o)
WRAP_OBJS := $(B)/obj/wrapper.o $(B)/obj/config.o $(B)/obj/parse.o $(B)/obj/fault.o $(B)/obj/fmt.o
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/unit/%)
HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_BINS := $(HELPER_SRCS:tests/helpers/%.c=$(B)/helpers/%)

.PHONY: all check unit integration demo install uninstall clean bench fuzz deps man deb check-deb \
	musl arm64 check-cross
all: $(B)/libhbshim.so $(B)/libhbshim-noop.so $(B)/hbshim man

VERSION := $(shell sed -n 's/^\#define HBSHIM_VERSION_STRING "\(.*\)"/\1/p' include/hbshim.h)
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# pkg-config file for the query API (include/hbshim.h, linked against the
# no-op stub), written by install with the paths install uses.
PC_SUBST := -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|'

# Man pages: templates in man/, the options and variables filled in from the
# config table by a build-time tool, so they cannot drift from --help.
MAN_PAGES := $(B)/man/hbshim.1 $(B)/man/hbshim.7
man: $(MAN_PAGES)
# A build-time tool: compiled for the build machine (HOSTCC), so cross and
# musl builds can run it.
HOSTCC ?= cc
$(B)/genman: man/genman.c shim/config.c shim/parse.c shim/fault.c shim/fmt.c shim/hb.h \
	    shim/hb_types.h shim/hb_os.h include/hbshim.h | $(B)/obj
	$(HOSTCC) -std=gnu11 -D_GNU_SOURCE -O1 -Iinclude -Ishim -o $@ man/genman.c shim/config.c \
	    shim/parse.c shim/fault.c shim/fmt.c
$(B)/man/%: man/%.in $(B)/genman
	@mkdir -p $(B)/man
	$(B)/genman <$< >$@.tmp && mv $@.tmp $@

# musl-gcc (Debian musl-tools) has no kernel headers on its include path:
# a folder of links to the build machine's (linux/, asm/, asm-generic/).
# Debian has cmocka built for glibc only: with musl-gcc the unit tests link a
# static cmocka compiled from Debian's cmocka source package.
CMOCKA_DEP :=
CMOCKA_CFLAGS :=
CMOCKA_LIBS := -lcmocka
ifneq ($(filter %musl-gcc,$(CC)),)
  KINC := $(B)/kinc/.done
  override CFLAGS += -isystem $(B)/kinc
  CMOCKA_DEP := $(B)/cmocka/lib/libcmocka.a
  CMOCKA_CFLAGS := -isystem $(B)/cmocka/include
  CMOCKA_LIBS := $(CMOCKA_DEP)
endif
$(B)/cmocka/lib/libcmocka.a: scripts/musl-cmocka.sh
	CC=$(CC) scripts/musl-cmocka.sh $(B)/cmocka
$(B)/kinc/.done:
	mkdir -p $(B)/kinc
	ln -sfn /usr/include/linux $(B)/kinc/linux
	ln -sfn /usr/include/asm-generic $(B)/kinc/asm-generic
	ln -sfn /usr/include/$$($(HOSTCC) -print-multiarch)/asm $(B)/kinc/asm
	touch $@

$(B)/obj/%.o: shim/%.c | $(B)/obj $(KINC)
	$(CC) $(CFLAGS) -c -o $@ $<
$(B)/obj/wrapper.o: wrapper/hbshim.c | $(B)/obj $(KINC)
	$(CC) $(CFLAGS) -DHB_LIBDIR='"$(PRELOADDIR)"' -c -o $@ $<
$(B)/obj/noop.o: shim/stub/noop.c | $(B)/obj $(KINC)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libhbshim.so: $(LIB_OBJS) shim/hbshim.map
	$(CC) $(CFLAGS) $(SAN_LD) $(LIB_LDFLAGS) -o $@ $(LIB_OBJS) $(LIBS)
$(B)/libhbshim-noop.so: $(B)/obj/noop.o
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,libhbshim-noop.so.0 \
	    -Wl,--version-script=shim/stub/noop.map $(HARDEN_LD) -o $@ $<
	ln -sf libhbshim-noop.so $(B)/libhbshim-noop.so.0
$(B)/libhbcore.a: $(CORE_OBJS)
	rm -f $@ && ar rcs $@ $^
$(B)/hbshim: $(WRAP_OBJS)
	$(CC) $(CFLAGS) $(SAN_LD) $(HARDEN_LD) -o $@ $^

# Unit-test binaries in $(B)/unit/, the programs the bats tests drive
# (tests/helpers, tests/cross) in $(B)/helpers/.
$(B)/unit/%: tests/unit/%.c $(B)/libhbcore.a $(CMOCKA_DEP) | $(B)/unit
	$(CC) $(CFLAGS) $(CMOCKA_CFLAGS) $(SAN_LD) -fPIE -o $@ $< $(B)/libhbcore.a $(CMOCKA_LIBS) $(LIBS)
$(B)/helpers/%: tests/helpers/%.c tests/helpers/loopback.h | $(B)/helpers
	$(CC) $(CFLAGS) -o $@ $< $(LIBS)
$(B)/helpers/%: tests/cross/%.c | $(B)/helpers $(KINC)
	$(CC) $(CFLAGS) -o $@ $< $(LIBS)

$(B)/obj $(B)/unit $(B)/helpers:
	mkdir -p $@

deps:
	@scripts/install-test-deps.sh

# UNIT_ONLY="test_fdtable test_wheel" runs a subset. Then scripts/layers.py:
# no dependency circle between the library's files, no source over 800 lines.
UNIT_RUN := $(if $(UNIT_ONLY),$(addprefix $(B)/unit/,$(UNIT_ONLY)),$(UNIT_BINS))
unit: $(UNIT_RUN) $(LIB_OBJS)
	@scripts/run-unit.sh $(UNIT_RUN)
	@python3 scripts/layers.py $(B)/obj

# BATS="tests/bats/a.bats tests/bats/b.bats" runs a subset.
integration: all $(HELPER_BINS)
	@SAN=$(SAN) scripts/run-bats.sh $(BATS)

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
	@B=$(B) scripts/fuzz-smoke.sh

# Debian packages in build/deb/ (lintian errors fail it), and the test that
# installs them with dpkg and uses them (root; changes the system).
deb:
	@scripts/build-deb.sh
check-deb: deb
	@scripts/run-bats.sh tests/package/deb.bats

# The demo installs what it needs (as root) the way make check does; not
# root, or when apt-get fails (no network), it names what is missing and
# skips the case that needs it: the frozen-peer case needs none of them.
demo: all
	@scripts/install-test-deps.sh --best-effort nftables iproute2 python3
	@scripts/demo.sh

fuzz:
	@B=$(B) scripts/fuzz.sh

musl:
	@$(MAKE) --no-print-directory B=build/musl CC=musl-gcc all build/musl/helpers/xpair
arm64:
	@$(MAKE) --no-print-directory B=build/arm64 CC=aarch64-linux-gnu-gcc all build/arm64/helpers/xpair
check-cross: all musl arm64
	@scripts/check-cross.sh

bench: all
	@$(MAKE) --no-print-directory -C bench

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PRELOADDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCDIR)
	install -m 0644 $(B)/libhbshim.so $(DESTDIR)$(PRELOADDIR)/libhbshim.so
	install -m 0644 $(B)/libhbshim-noop.so $(DESTDIR)$(LIBDIR)/libhbshim-noop.so.0
	ln -sf libhbshim-noop.so.0 $(DESTDIR)$(LIBDIR)/libhbshim-noop.so
	install -m 0755 $(B)/hbshim $(DESTDIR)$(BINDIR)/hbshim
	install -m 0644 include/hbshim.h $(DESTDIR)$(INCDIR)/hbshim.h
	install -d $(DESTDIR)$(PKGCONFIGDIR)
	sed $(PC_SUBST) hbshim.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/hbshim.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/hbshim.pc
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7
	install -m 0644 $(B)/man/hbshim.1 $(DESTDIR)$(MANDIR)/man1/hbshim.1
	install -m 0644 $(B)/man/hbshim.7 $(DESTDIR)$(MANDIR)/man7/hbshim.7

uninstall:
	rm -f $(DESTDIR)$(PRELOADDIR)/libhbshim.so $(DESTDIR)$(LIBDIR)/libhbshim-noop.so \
	      $(DESTDIR)$(LIBDIR)/libhbshim-noop.so.0 \
	      $(DESTDIR)$(BINDIR)/hbshim $(DESTDIR)$(INCDIR)/hbshim.h \
	      $(DESTDIR)$(MANDIR)/man1/hbshim.1 $(DESTDIR)$(MANDIR)/man7/hbshim.7 \
	      $(DESTDIR)$(PKGCONFIGDIR)/hbshim.pc

clean:
	rm -rf $(B)

-include $(wildcard $(B)/obj/*.d)
