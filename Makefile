# hbshim - LD_PRELOAD heartbeat and deadline shim.
#
#   make                 build/libhbshim.so, build/libhbshim-noop.so, build/hbshim
#   make check           unit tests (cmocka) + integration tests (bats); installs
#                        missing Debian test packages first when run as root
#   make check SAN=address|undefined|thread
#   make demo            the dead-peer demo (README)
#   make install PREFIX=/usr/local DESTDIR=
#   make bench           benchmarks (never part of check)

CC      ?= cc
CFLAGS  ?= -O2 -g
PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
BINDIR  ?= $(PREFIX)/bin
INCDIR  ?= $(PREFIX)/include
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
WRAP_OBJS := $(B)/obj/wrapper.o $(B)/obj/config.o $(B)/obj/fmt.o
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_BINS := $(HELPER_SRCS:tests/helpers/%.c=$(B)/tests/%)

.PHONY: all check unit integration demo install uninstall clean bench fuzz deps
all: $(B)/libhbshim.so $(B)/libhbshim-noop.so $(B)/hbshim

$(B)/obj/%.o: shim/%.c | $(B)/obj
	$(CC) $(CFLAGS) -c -o $@ $<
$(B)/obj/wrapper.o: wrapper/hbshim.c | $(B)/obj
	$(CC) $(CFLAGS) -DHB_LIBDIR='"$(LIBDIR)"' -c -o $@ $<
$(B)/obj/noop.o: shim/stub/noop.c | $(B)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libhbshim.so: $(LIB_OBJS) shim/hbshim.map
	$(CC) $(CFLAGS) $(SAN_LD) $(LIB_LDFLAGS) -o $@ $(LIB_OBJS) $(LIBS)
$(B)/libhbshim-noop.so: $(B)/obj/noop.o
	$(CC) $(CFLAGS) -shared -Wl,--version-script=shim/stub/noop.map $(HARDEN_LD) -o $@ $<
$(B)/libhbcore.a: $(CORE_OBJS)
	rm -f $@ && ar rcs $@ $^
$(B)/hbshim: $(WRAP_OBJS)
	$(CC) $(CFLAGS) $(SAN_LD) $(HARDEN_LD) -o $@ $^

$(B)/tests/%: tests/unit/%.c $(B)/libhbcore.a | $(B)/tests
	$(CC) $(CFLAGS) $(SAN_LD) -fPIE -o $@ $< $(B)/libhbcore.a -lcmocka $(LIBS)
$(B)/tests/%: tests/helpers/%.c | $(B)/tests
	$(CC) $(CFLAGS) -o $@ $< $(LIBS)

$(B)/obj $(B)/tests:
	mkdir -p $@

deps:
	@scripts/install-test-deps.sh

# UNIT_ONLY="test_fdtable test_wheel" runs a subset.
UNIT_RUN := $(if $(UNIT_ONLY),$(addprefix $(B)/tests/,$(UNIT_ONLY)),$(UNIT_BINS))
unit: deps $(UNIT_RUN)
	@scripts/run-unit.sh $(UNIT_RUN)

# BATS="tests/bats/a.bats tests/bats/b.bats" runs a subset.
integration: deps all $(HELPER_BINS)
	@SAN=$(SAN) scripts/run-bats.sh $(BATS)

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
	@B=$(B) scripts/fuzz-smoke.sh

demo: all
	@scripts/demo.sh

fuzz:
	@B=$(B) scripts/fuzz.sh

bench: all
	@$(MAKE) --no-print-directory -C bench

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCDIR)
	install -m 0755 $(B)/libhbshim.so $(DESTDIR)$(LIBDIR)/libhbshim.so
	install -m 0755 $(B)/libhbshim-noop.so $(DESTDIR)$(LIBDIR)/libhbshim-noop.so
	install -m 0755 $(B)/hbshim $(DESTDIR)$(BINDIR)/hbshim
	install -m 0644 include/hbshim.h $(DESTDIR)$(INCDIR)/hbshim.h

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libhbshim.so $(DESTDIR)$(LIBDIR)/libhbshim-noop.so \
	      $(DESTDIR)$(BINDIR)/hbshim $(DESTDIR)$(INCDIR)/hbshim.h

clean:
	rm -rf $(B)

-include $(wildcard $(B)/obj/*.d)
