# Tether -- one top-level GNU Makefile.
#
#   make            build every daemon, the CLI and the tests (into build/)
#   make run        bootstrap, build, start Redis + the suite on loopback
#   make stop       stop what 'make run' started
#   make test       bootstrap, build, run every test (unit, fuzz smoke, integration)
#   make SANITIZE=address,undefined   an instrumented tree in build-san/
#   make fuzz       every libFuzzer target (tests/fuzz/), FUZZ_SECONDS (60) each
#
# Sources are discovered: lib/*.c is the shared library, <daemon>/*.c a daemon,
# client/*.c the SDK + CLI, tests/unit/test_*.c one cmocka binary each.

SHELL := /bin/bash
CC ?= cc
ifeq ($(origin CC),default)
CC := cc
endif

ifdef SANITIZE
B := build-san
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
else
B := build
SANFLAGS :=
endif

PKGS := libzmq libwebsockets hiredis libprotobuf-c libjwt jansson openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
MEDIA_PKGS := glib-2.0 nice libsrtp2 opus
MEDIA_CFLAGS = $(shell pkg-config --cflags $(MEDIA_PKGS) 2>/dev/null)
MEDIA_LIBS = $(shell pkg-config --libs $(MEDIA_PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wformat=2 -Wwrite-strings -Wno-format-nonliteral
OPT ?= -O2 -g
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(OPT) $(SANFLAGS) -MMD -MP -I. -Ilib -I$(B)/gen $(PKG_CFLAGS)
CFLAGS_ALL := $(CFLAGS_BASE) $(WARN) $(CFLAGS)
LDFLAGS_ALL := $(SANFLAGS) $(LDFLAGS)

PROTOS := $(wildcard protos/*.proto)
GEN_C := $(patsubst protos/%.proto,$(B)/gen/%.pb-c.c,$(PROTOS))
GEN_H := $(GEN_C:.c=.h)
GEN_O := $(patsubst $(B)/gen/%.c,$(B)/obj/gen/%.o,$(GEN_C))

LIB_SRC := $(wildcard lib/*.c)
LIB_O := $(patsubst %.c,$(B)/obj/%.o,$(LIB_SRC))
LIBA := $(B)/lib/libtether.a

DAEMONS := gateway replayd sessiond mediad busd
DAEMON_BINS := $(foreach d,$(DAEMONS),$(if $(wildcard $(d)/*.c),$(B)/bin/$(d)))

CLIENT_LIB_SRC := $(filter-out client/cli%.c,$(wildcard client/*.c))
CLIENT_CLI_SRC := $(wildcard client/cli*.c)
CLIENT_LIB_O := $(patsubst %.c,$(B)/obj/%.o,$(CLIENT_LIB_SRC))
CLIENT_CLI_O := $(patsubst %.c,$(B)/obj/%.o,$(CLIENT_CLI_SRC))
CLIENTA := $(B)/lib/libtetherclient.a
CLI_BIN := $(if $(CLIENT_CLI_SRC),$(B)/bin/tether)

EXAMPLE_SRC := $(wildcard examples/*/*.c)
EXAMPLE_BINS := $(patsubst examples/%/,$(B)/bin/example-%,$(sort $(dir $(EXAMPLE_SRC))))

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))

BENCH_SRC := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRC))

.PHONY: all bootstrap run stop test test-unit test-integration test-fuzz fuzz fuzz-build test-chaos test-browser test-deploy soak bench clean
.DEFAULT_GOAL := all
.SECONDARY:

all: $(DAEMON_BINS) $(CLI_BIN) $(EXAMPLE_BINS) $(UNIT_BINS) $(BENCH_BINS)

bootstrap:
	@bash scripts/bootstrap.sh

# ---- generated protobuf code -------------------------------------------------
$(B)/gen/%.pb-c.c $(B)/gen/%.pb-c.h: protos/%.proto
	@mkdir -p $(B)/gen
	protoc-c --c_out=$(B)/gen -Iprotos $<

$(B)/obj/gen/%.o: $(B)/gen/%.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -w -c $< -o $@

# ---- our objects (all depend on generated headers existing) ------------------
$(B)/obj/mediad/%.o: mediad/%.c | $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(MEDIA_CFLAGS) -c $< -o $@

$(B)/obj/%.o: %.c | $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(LIBA): $(LIB_O) $(GEN_O)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CLIENTA): $(CLIENT_LIB_O)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Objects of a source directory (a function, so that '%' is not taken for the
# pattern rules' stem).
objs_of = $(patsubst %.c,$(B)/obj/%.o,$(wildcard $(1)/*.c))

.SECONDEXPANSION:
$(B)/bin/mediad: $$(call objs_of,mediad) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(MEDIA_LIBS) $(PKG_LIBS) -lm

# A static pattern rule: it applies to the daemons only, never to
# build/bin/example-* or build/bin/tether.
$(filter-out $(B)/bin/mediad,$(DAEMON_BINS)): $(B)/bin/%: $$(call objs_of,$$*) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(PKG_LIBS) $(if $(filter gateway,$*),-lev) -lm

$(B)/bin/tether: $(CLIENT_CLI_O) $(CLIENTA) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(PKG_LIBS) -lm

$(B)/bin/example-%: $$(call objs_of,examples/$$*) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(PKG_LIBS) -lm

# Only the client's own tests link the client library, so a broken client
# file never stops the other tests from building.
$(B)/tests/test_client_%: $(B)/obj/tests/unit/test_client_%.o $(CLIENTA) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(PKG_LIBS) $(shell pkg-config --libs cmocka) -lm

$(B)/tests/test_%: $(B)/obj/tests/unit/test_%.o $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(PKG_LIBS) $(shell pkg-config --libs cmocka) -lm

$(B)/bench/%: $(B)/obj/bench/%.o $(if $(CLIENT_LIB_O),$(CLIENTA)) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(PKG_LIBS) -lm

# ---- fuzzing (libFuzzer via clang) ---------------------------------------------
# Every tests/fuzz/fuzz_<name>.c is a target, build-fuzz/fuzz_<name>. The shared
# sources (lib/, the gateway's frame codecs, the generated protobuf code) are
# compiled once into build-fuzz/obj/ with coverage and sanitizers; a target
# that needs more names them in FUZZ_EXTRA_fuzz_<name> (sources) and
# FUZZ_LIBS_fuzz_<name> (link flags).
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(FUZZ_SRC))
FUZZ_LIB_SRC := $(LIB_SRC) $(wildcard gateway/gw_frame*.c)
# Undefined behaviour stops the run like a crash does.
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -MMD -MP -DTETHER_FUZZ -I. -Ilib -Igateway -Ibuild/gen $(PKG_CFLAGS)
fuzz_objs = $(patsubst %.c,build-fuzz/obj/%.o,$(1))
# Harnesses get the project's warnings, reported but not fatal: clang's set
# differs from gcc's, and a warning must not hide a crash from make test.
FUZZ_WARN := $(filter-out -Werror,$(WARN))

FUZZ_EXTRA_fuzz_rtp := mediad/md_rtp.c
FUZZ_LIBS_fuzz_rtp = $(MEDIA_LIBS)
FUZZ_EXTRA_fuzz_replayd := replayd/rd_reply.c
FUZZ_EXTRA_fuzz_sessiond := sessiond/ss_reply.c sessiond/ss_record.c
FUZZ_EXTRA_fuzz_client := client/tc_frame.c

build-fuzz/obj/tests/fuzz/%.o: tests/fuzz/%.c Makefile | $(GEN_H)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) $(FUZZ_WARN) $(MEDIA_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c $< -o $@

build-fuzz/obj/%.o: %.c Makefile | $(GEN_H)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) $(MEDIA_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -w -c $< -o $@

build-fuzz/%: build-fuzz/obj/tests/fuzz/%.o $(call fuzz_objs,$(FUZZ_LIB_SRC) $(GEN_C)) $$(call fuzz_objs,$$(FUZZ_EXTRA_$$*))
	clang -fsanitize=fuzzer $(FUZZ_SAN) $^ -o $@ $(FUZZ_LIBS_$*) $(PKG_LIBS) -lm

fuzz-build: $(FUZZ_BINS)

# Every target for FUZZ_SECONDS each (make fuzz FUZZ_SECONDS=600 for a long run).
fuzz:
	@$(MAKE) --no-print-directory -j$$(nproc) fuzz-build
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-60} bash tests/run_all.sh fuzz

# ---- running and testing -------------------------------------------------------
# run and test bootstrap first, then build in a fresh make: on a new machine
# the pkg-config flags above are empty until the packages are installed.
run:
	@bash scripts/bootstrap.sh
	@$(MAKE) --no-print-directory -j$$(nproc) all
	@bash deploy/local/run.sh start

stop:
	@bash deploy/local/run.sh stop

test:
	@bash scripts/bootstrap.sh
	@$(MAKE) --no-print-directory -j$$(nproc) all
	@bash tests/run_all.sh

test-unit: all
	@bash tests/run_all.sh unit

test-integration: all
	@bash tests/run_all.sh integration

test-fuzz: all
	@bash tests/run_all.sh fuzz

test-chaos: all
	@bash tests/run_all.sh chaos

test-browser: all
	@bash tests/run_all.sh browser

test-deploy: all
	@bash tests/run_all.sh deploy

# 30 minutes of churn and kills (tests/chaos/README.md); not part of make test.
# SOAK_MINUTES=3 make soak for a short one.
soak: all
	@SOAK_MINUTES=$${SOAK_MINUTES:-30} /usr/bin/python3 tests/chaos/chaos.py soak

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
-include $(shell find build-fuzz/obj -name '*.d' 2>/dev/null)
