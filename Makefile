# edgetrace top-level build.
#
#   make [BOARD=x86_64]     static musl agent for one board -> build/<board>/edgetrace-agent
#   make boards             list the boards
#   make all-boards         agent for every board
#   make collector          build/host/edgetrace-collector (glibc, this machine)
#   make size               stripped agent size per board against its budget
#   make test | demo | bench | setup | clean
#
# Dependencies are built from Debian source packages by tools/deps.sh into a cache outside
# the checkout ($(CACHE)/deps/<board>-<key>), keyed by a hash of the dependency script, the
# board file and the compiler flags, so a second build reuses them.

SHELL := /bin/bash
BOARD ?= x86_64
CACHE ?= /var/cache/edgetrace
export EDGETRACE_CACHE := $(CACHE)
JOBS ?= 2
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV := $(shell git rev-parse --short=10 HEAD 2>/dev/null || echo unknown)

BOARDS := $(sort $(basename $(notdir $(wildcard boards/*.mk))))
ifeq ($(filter $(BOARD),$(BOARDS)),)
$(error unknown BOARD '$(BOARD)'; known boards: $(BOARDS))
endif
include boards/$(BOARD).mk
export BOARD BOARD_CROSS BOARD_MUSL_SPECS BOARD_CPU_FLAGS BOARD_CMAKE_PROC BOARD_TRIPLE

# ---- sources ---------------------------------------------------------------------------
AGENT_SRCS := $(sort $(wildcard firmware/src/*.c))
WIRE_SRCS := $(sort $(wildcard wire/*.c))
COLL_SRCS := $(sort $(wildcard collector/src/*.c))
UNIT_TESTS := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_TESTS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
HEADERS := $(wildcard firmware/src/*.h wire/*.h collector/src/*.h)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
STD := -std=c11 -D_GNU_SOURCE
INCS := -Ifirmware/src -Iwire

# ---- dependency prefixes -----------------------------------------------------------------
deps_key = $(shell cat tools/deps.sh $(if $(filter host,$(1)),,boards/$(1).mk) | sha256sum | cut -c1-12)
DEPS := $(CACHE)/deps/$(BOARD)-$(call deps_key,$(BOARD))
HOST_DEPS := $(CACHE)/deps/host-$(call deps_key,host)
# The collector's host-only libraries (HTTP server, JSON) have their own script and key, so
# adding one does not rebuild every board's dependencies.
COLL_DEPS := $(CACHE)/deps/collector-$(shell sha256sum tools/deps_collector.sh | cut -c1-12)
SETUP_STAMP := $(CACHE)/setup-$(shell sha256sum tools/setup.sh | cut -c1-16).done

# ---- agent for $(BOARD) ----------------------------------------------------------------
B := build/$(BOARD)
AGENT_CC := $(BOARD_CROSS)gcc -specs $(BOARD_MUSL_SPECS)
AGENT_STRIP := $(BOARD_CROSS)strip
AGENT_OBJCOPY := $(BOARD_CROSS)objcopy
AGENT_CFLAGS := $(STD) $(WARN) -Os -g $(BOARD_CPU_FLAGS) -ffp-contract=off -ffunction-sections -fdata-sections \
	-fno-asynchronous-unwind-tables $(INCS) -I$(DEPS)/include \
	-DET_VERSION='"$(VERSION)"' -DET_GIT_REV='"$(GIT_REV)"' -DET_BOARD='"$(BOARD)"' \
	-DET_BOARD_ARCH='"$(BOARD_ARCH)"' -DET_BOARD_CPU='"$(BOARD_CPU)"' \
	-DET_DEFAULT_SPOOL_DIR='"$(BOARD_SPOOL_DIR)"' -DET_DEFAULT_SPOOL_MAX=$(BOARD_SPOOL_MAX_BYTES) \
	-DET_DEFAULT_INTERVAL_S=$(BOARD_SAMPLE_INTERVAL_S) -DET_DEFAULT_DEEP_INTERVAL_S=$(BOARD_DEEP_INTERVAL_S)
DEP_LIBS := -lcoap-3 -lmbedtls -lmbedx509 -lmbedcrypto -ltinycbor -lzstd -lz -linih
# -ffp-contract=off: no fused multiply-add on aarch64/armv7, so the analyzer's statistics
# (slopes, Mann-Kendall) give bit-identical verdicts on every board and on the host.
AGENT_LDFLAGS := -static -Wl,--gc-sections -L$(DEPS)/lib
AGENT_OBJS := $(patsubst %.c,$(B)/obj/%.o,$(AGENT_SRCS) $(WIRE_SRCS))

.PHONY: host-tools all agent boards all-boards collector size test unit demo bench setup deps host-deps clean fuzz testsvc lossy-link
# Object files built by pattern rules are not throwaway intermediates: keep them, so a
# second build (or the next test binary) does not recompile the whole agent.
.SECONDARY:
.DEFAULT_GOAL := agent
all: agent

agent: $(B)/edgetrace-agent

$(SETUP_STAMP):
	@bash tools/setup.sh
setup: $(SETUP_STAMP)

$(DEPS)/.ready: $(SETUP_STAMP) tools/deps.sh boards/$(BOARD).mk
	@JOBS=$(JOBS) bash tools/deps.sh $(BOARD) $(DEPS) && touch $@
deps: $(DEPS)/.ready

$(HOST_DEPS)/.ready: $(SETUP_STAMP) tools/deps.sh
	@JOBS=$(JOBS) bash tools/deps.sh host $(HOST_DEPS) && touch $@
host-deps: $(HOST_DEPS)/.ready $(COLL_DEPS)/.ready

$(COLL_DEPS)/.ready: $(SETUP_STAMP) tools/deps_collector.sh
	@JOBS=$(JOBS) bash tools/deps_collector.sh $(COLL_DEPS) && touch $@

$(B)/obj/%.o: %.c $(HEADERS) $(DEPS)/.ready
	@mkdir -p $(dir $@)
	$(AGENT_CC) $(AGENT_CFLAGS) -c $< -o $@

# The unstripped binary stays beside the stripped one for crash analysis (addr2line, gdb).
$(B)/edgetrace-agent: $(AGENT_OBJS)
	$(AGENT_CC) $(AGENT_CFLAGS) $(AGENT_LDFLAGS) $^ $(DEP_LIBS) -o $@.debug
	$(AGENT_STRIP) --strip-all -o $@ $@.debug
	@file $@ | grep -q 'statically linked' || { echo "error: $@ is not static"; exit 1; }

boards:
	@printf '%-8s %-8s %-22s %-22s %-8s %s\n' BOARD ARCH CPU TRIPLE BUDGET DESCRIPTION
	@for b in $(BOARDS); do $(MAKE) -s --no-print-directory BOARD=$$b board-line; done

.PHONY: board-line
board-line:
	@printf '%-8s %-8s %-22s %-22s %-8s %s\n' '$(BOARD)' '$(BOARD_ARCH)' '$(BOARD_CPU)' '$(BOARD_TRIPLE)' \
		'$(shell echo $$(( $(BOARD_SIZE_BUDGET) / 1024 )))K' '$(BOARD_DESC) ($(BOARD_ABI))'

all-boards:
	@for b in $(BOARDS); do $(MAKE) --no-print-directory BOARD=$$b agent || exit 1; done

size: all-boards
	@printf '%-8s %10s %10s %s\n' BOARD STRIPPED BUDGET VERDICT
	@for b in $(BOARDS); do $(MAKE) -s --no-print-directory BOARD=$$b size-line || exit 1; done

.PHONY: size-line
size-line:
	@s=$$(stat -c %s $(B)/edgetrace-agent); \
	 if [ $$s -le $(BOARD_SIZE_BUDGET) ]; then v=ok; else v=OVER; fi; \
	 printf '%-8s %10s %10s %s\n' $(BOARD) $$s $(BOARD_SIZE_BUDGET) $$v; [ $$v = ok ]

# ---- host builds: collector, tools, tests -------------------------------------------------
H := build/host
WEB_ASSETS_C := $(H)/gen/web_assets.c
HOST_CC := gcc
HOST_CFLAGS := $(STD) $(WARN) -O2 -g $(INCS) -I$(HOST_DEPS)/include -I$(COLL_DEPS)/include -Icollector/src \
	-DET_VERSION='"$(VERSION)"' -DET_GIT_REV='"$(GIT_REV)"' -DET_BOARD='"host"' -DET_BOARD_ARCH='"x86_64"' \
	-DET_BOARD_CPU='"host"' -DET_DEFAULT_SPOOL_DIR='"/var/lib/edgetrace/spool"' -DET_DEFAULT_SPOOL_MAX=16777216 \
	-DET_DEFAULT_INTERVAL_S=30 -DET_DEFAULT_DEEP_INTERVAL_S=600
# libpq (the PostgreSQL backend, store_pg*.c) is linked statically, like every other library of
# the collector: the image holds the binary and libc6's files only, so a libpq5 it would load
# at run time is not there. It is built from bookworm's postgresql-15 source by
# tools/deps_collector.sh (libpq.a needs PostgreSQL's libpgcommon_shlib.a and libpgport_shlib.a).
# Its TLS is Debian's OpenSSL, static too (libssl-dev ships libssl.a/libcrypto.a): the database
# is reached over the network, so `sslmode=require|verify-full` must work; mbedTLS (the DTLS
# side) has no libpq backend.
PG_LIBS := $(COLL_DEPS)/lib/libpq.a $(COLL_DEPS)/lib/libpgcommon_shlib.a $(COLL_DEPS)/lib/libpgport_shlib.a \
	-Wl,-Bstatic -lssl -lcrypto -Wl,-Bdynamic
HOST_LIBS := -L$(HOST_DEPS)/lib -L$(COLL_DEPS)/lib -lmicrohttpd -ljansson -lcoap-3 -lmbedtls -lmbedx509 -lmbedcrypto -ltinycbor -lzstd -lz -linih \
	$(HOST_DEPS)/lib/libsqlite3.a $(PG_LIBS) -lpthread -lm -ldl
COLL_OBJS := $(patsubst %.c,$(H)/obj/%.o,$(COLL_SRCS) $(WIRE_SRCS) $(WEB_ASSETS_C))

# The web page's assets, built into the collector: collector/web/ plus uPlot, fetched by npm ci
# (pinned version and integrity hash in package-lock.json) into build/, never committed.
WEB_FILES := $(sort $(wildcard collector/web/*.html collector/web/*.js collector/web/*.css))
WEB_NPM := $(H)/web
WEB_UPLOT := $(WEB_NPM)/node_modules/uplot/dist
$(WEB_NPM)/.ready: collector/web/package.json collector/web/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found: the collector's web page needs it to fetch uPlot (install Node.js and npm, e.g. apt-get install npm)" >&2; exit 1; }
	@mkdir -p $(WEB_NPM) && cp $^ $(WEB_NPM)/
	cd $(WEB_NPM) && npm ci --ignore-scripts --prefer-offline --no-audit --no-fund --cache $(CACHE)/npm
	@touch $@
$(WEB_ASSETS_C): collector/web/gen_assets.py $(WEB_FILES) $(WEB_NPM)/.ready
	@mkdir -p $(dir $@)
	/usr/bin/python3 collector/web/gen_assets.py $@ $(foreach f,$(WEB_FILES),/$(if $(filter %.html,$(f)),,assets/)$(notdir $(f))=$(f)) \
		/assets/uPlot.min.js=$(WEB_UPLOT)/uPlot.iife.min.js /assets/uPlot.min.css=$(WEB_UPLOT)/uPlot.min.css

$(H)/obj/%.o: %.c $(HEADERS) $(HOST_DEPS)/.ready $(COLL_DEPS)/.ready
	@mkdir -p $(dir $@)
	$(HOST_CC) $(HOST_CFLAGS) -c $< -o $@

collector: $(H)/edgetrace-collector
$(H)/edgetrace-collector: $(COLL_OBJS)
	@if [ -z "$(COLL_SRCS)" ]; then echo "collector: no sources yet"; exit 1; fi
	$(HOST_CC) $(HOST_CFLAGS) $^ $(HOST_LIBS) -o $@

# Host tools and benchmarks (tools/*.c, tools/bench/*.c) link the agent's stages, built for
# this machine without sanitizers.
H_AGENT_OBJS := $(patsubst %.c,$(H)/obj/%.o,$(filter-out firmware/src/main.c,$(AGENT_SRCS)) $(WIRE_SRCS))
HOST_TOOL_SRCS := $(wildcard tools/*.c tools/bench/*.c)
HOST_TOOLS := $(patsubst %.c,$(H)/%,$(notdir $(HOST_TOOL_SRCS)))
define host_tool_rule
$(H)/$(basename $(notdir $(1))): $(1) $$(H_AGENT_OBJS)
	$$(HOST_CC) $$(HOST_CFLAGS) -Itools/bench $$^ $$(HOST_LIBS) -o $$@
endef
$(foreach t,$(HOST_TOOL_SRCS),$(eval $(call host_tool_rule,$(t))))
host-tools: $(HOST_TOOLS)
# The API bench's database generator writes through the collector's own store (tools/bench/api/).
$(H)/api_dbgen: tools/bench/api/api_dbgen.c $(filter-out $(H)/obj/collector/src/main.o,$(COLL_OBJS))
	$(HOST_CC) $(HOST_CFLAGS) $^ $(HOST_LIBS) -o $@

lossy-link: $(H)/lossy-link
$(H)/lossy-link: tools/lossy-link/lossy-link.c
	@mkdir -p $(H)
	$(HOST_CC) $(STD) $(WARN) -O2 -g $< -o $@

# Sanitized host build of agent + collector objects for unit tests (ASan + UBSan).
HS := build/host-asan
SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
HS_CFLAGS := $(STD) $(WARN) -O1 -g $(SAN) $(INCS) -Icollector/src -I$(HOST_DEPS)/include -I$(COLL_DEPS)/include -D_UINTPTR_T_DEFINED \
	-DET_VERSION='"$(VERSION)"' -DET_GIT_REV='"$(GIT_REV)"' -DET_BOARD='"host"' -DET_BOARD_ARCH='"x86_64"' \
	-DET_BOARD_CPU='"host"' -DET_DEFAULT_SPOOL_DIR='"/tmp/edgetrace-spool"' -DET_DEFAULT_SPOOL_MAX=8388608 \
	-DET_DEFAULT_INTERVAL_S=30 -DET_DEFAULT_DEEP_INTERVAL_S=600
HS_AGENT_OBJS := $(patsubst %.c,$(HS)/obj/%.o,$(filter-out firmware/src/main.c,$(AGENT_SRCS)) $(WIRE_SRCS))
HS_COLL_OBJS := $(patsubst %.c,$(HS)/obj/%.o,$(filter-out collector/src/main.c,$(COLL_SRCS)) $(WIRE_SRCS) $(WEB_ASSETS_C))
HS_LIBS := -L$(HOST_DEPS)/lib -lcmocka-static $(HOST_LIBS)
UNIT_BINS := $(patsubst tests/unit/%.c,$(HS)/%,$(UNIT_TESTS))

$(HS)/obj/%.o: %.c $(HEADERS) $(HOST_DEPS)/.ready $(COLL_DEPS)/.ready
	@mkdir -p $(dir $@)
	$(HOST_CC) $(HS_CFLAGS) -c $< -o $@

# Explicit rules per test (not pattern rules): make would silently fall back from the
# collector pattern to the agent one while the collector's objects do not exist yet.
define unit_host_rule
$(HS)/$(1): tests/unit/$(1).c $(if $(filter test_collector_%,$(1)),$$(HS_COLL_OBJS),$$(HS_AGENT_OBJS))
	$$(HOST_CC) $$(HS_CFLAGS) $$^ $$(HS_LIBS) -o $$@
endef
$(foreach t,$(basename $(notdir $(UNIT_TESTS))),$(eval $(call unit_host_rule,$(t))))

unit-host: $(UNIT_BINS)

# Cross-compiled unit tests (agent tests only) for running under qemu-user: the 32-bit
# armv7 build catches time_t, size_t and alignment bugs the 64-bit host hides.
XT := $(B)/unit
XT_AGENT_OBJS := $(patsubst %.c,$(B)/obj/%.o,$(filter-out firmware/src/main.c,$(AGENT_SRCS)) $(WIRE_SRCS))
XT_BINS := $(patsubst tests/unit/%.c,$(XT)/%,$(filter-out tests/unit/test_collector_%,$(UNIT_TESTS)))
define unit_cross_rule
$(XT)/$(1): tests/unit/$(1).c $$(XT_AGENT_OBJS)
	@mkdir -p $(XT)
	$$(AGENT_CC) $$(AGENT_CFLAGS) -D_UINTPTR_T_DEFINED $$(AGENT_LDFLAGS) $$^ -lcmocka-static $$(DEP_LIBS) -o $$@
endef
$(foreach t,$(filter-out test_collector_%,$(basename $(notdir $(UNIT_TESTS)))),$(eval $(call unit_cross_rule,$(t))))
# Test drivers (tools/et-push.c, tools/spool-crashtest.c) cross-built for qemu-user: the test
# harness runs on the board's architecture without being part of the device binary.
XT_TOOLS := $(XT)/et-push $(XT)/spool-crashtest
$(XT)/et-push $(XT)/spool-crashtest: $(XT)/%: tools/%.c $(XT_AGENT_OBJS)
	@mkdir -p $(XT)
	$(AGENT_CC) $(AGENT_CFLAGS) $(AGENT_LDFLAGS) $^ $(DEP_LIBS) -o $@
unit-cross: $(XT_BINS) $(XT_TOOLS)

# libFuzzer targets (clang), same linking rule as the unit tests.
FZ := build/fuzz
FZ_CFLAGS := $(STD) -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
	$(INCS) -Icollector/src -I$(HOST_DEPS)/include -I$(COLL_DEPS)/include -DET_VERSION='"$(VERSION)"' -DET_GIT_REV='"fuzz"' \
	-DET_BOARD='"host"' -DET_BOARD_ARCH='"x86_64"' -DET_BOARD_CPU='"host"' \
	-DET_DEFAULT_SPOOL_DIR='"/tmp/edgetrace-spool"' -DET_DEFAULT_SPOOL_MAX=8388608 \
	-DET_DEFAULT_INTERVAL_S=30 -DET_DEFAULT_DEEP_INTERVAL_S=600
FZ_AGENT_OBJS := $(patsubst %.c,$(FZ)/obj/%.o,$(filter-out firmware/src/main.c,$(AGENT_SRCS)) $(WIRE_SRCS))
FZ_COLL_OBJS := $(patsubst %.c,$(FZ)/obj/%.o,$(filter-out collector/src/main.c,$(COLL_SRCS)) $(WIRE_SRCS) $(WEB_ASSETS_C))
FZ_BINS := $(patsubst tests/fuzz/%.c,$(FZ)/%,$(FUZZ_TESTS))
$(FZ)/obj/%.o: %.c $(HEADERS) $(HOST_DEPS)/.ready $(COLL_DEPS)/.ready
	@mkdir -p $(dir $@)
	clang $(FZ_CFLAGS) -c $< -o $@
define fuzz_rule
$(FZ)/$(1): tests/fuzz/$(1).c $(if $(filter fuzz_collector_%,$(1)),$$(FZ_COLL_OBJS),$$(FZ_AGENT_OBJS))
	clang $$(FZ_CFLAGS) -fsanitize=fuzzer $$^ $$(HOST_LIBS) -o $$@
endef
$(foreach t,$(basename $(notdir $(FUZZ_TESTS))),$(eval $(call fuzz_rule,$(t))))
fuzz: $(FZ_BINS)

# Go test services, built per Go version into the cache (keyed by their sources).
GO_VERSIONS ?= 1.21 1.23 1.27
TESTSVC := $(CACHE)/testsvc
testsvc: $(SETUP_STAMP)
	@for v in $(GO_VERSIONS); do bash tools/testsvc/build.sh $$v $(TESTSVC)/$$v || exit 1; done

# Container images without a container engine (umoci + skopeo): build/image/ (tools/image/build.sh).
.PHONY: image
image: all-boards collector
	@bash tools/image/build.sh build/image

# ---- the two commands ------------------------------------------------------------------------
TEST_BOARDS_QEMU := rpi4 bbb
PYTEST := /usr/bin/python3 -m pytest
PYTEST_PATHS ?= tests/integration

test: test-build
	@$(MAKE) --no-print-directory run-tests

# Everything the tests need, built (and installed on a fresh machine) once.
.PHONY: test-build test-unit test-integration
test-build: setup
	@$(MAKE) --no-print-directory host-deps
	@$(MAKE) --no-print-directory -j$(JOBS) all-boards
	@$(MAKE) --no-print-directory -j$(JOBS) collector lossy-link host-tools unit-host fuzz
	@for b in $(TEST_BOARDS_QEMU); do $(MAKE) --no-print-directory -j$(JOBS) BOARD=$$b unit-cross || exit 1; done
	@$(MAKE) --no-print-directory testsvc
	@$(MAKE) --no-print-directory -s size

# Quick loops: the unit tests (host ASan/UBSan, qemu cross builds) and fuzz smoke runs, or
# every test with real processes; `make run-tests PYTEST_PATHS=tests/integration/test_web.py`
# runs one module.
test-unit: test-build
	@$(MAKE) --no-print-directory run-tests PYTEST_PATHS=tests/integration/test_unit.py
test-integration: test-build
	@$(MAKE) --no-print-directory run-tests PYTEST_ARGS="--ignore=tests/integration/test_unit.py $(PYTEST_ARGS)"

.PHONY: run-tests unit-host unit-cross
run-tests:
	ET_ROOT=$(CURDIR) ET_BUILD=$(CURDIR)/build ET_CACHE=$(CACHE) ET_HOST_DEPS=$(HOST_DEPS) ET_COLL_DEPS=$(COLL_DEPS) \
	ET_AGENT=$(CURDIR)/build/x86_64/edgetrace-agent \
	ET_AGENT_RPI4=$(CURDIR)/build/rpi4/edgetrace-agent ET_QEMU_RPI4="$(shell $(MAKE) -s --no-print-directory BOARD=rpi4 print-qemu)" \
	ET_AGENT_BBB=$(CURDIR)/build/bbb/edgetrace-agent ET_QEMU_BBB="$(shell $(MAKE) -s --no-print-directory BOARD=bbb print-qemu)" \
	ET_COLLECTOR=$(CURDIR)/build/host/edgetrace-collector ET_LOSSY_LINK=$(CURDIR)/build/host/lossy-link \
	ET_TESTSVC=$(TESTSVC) ET_GO_VERSIONS="$(GO_VERSIONS)" \
	$(PYTEST) -q -p no:cacheprovider $(PYTEST_PATHS) $(PYTEST_ARGS)

.PHONY: print-qemu
print-qemu:
	@echo '$(BOARD_QEMU)'

demo: setup
	@$(MAKE) --no-print-directory host-deps
	@$(MAKE) --no-print-directory -j$(JOBS) agent collector lossy-link
	@$(MAKE) --no-print-directory -j$(JOBS) BOARD=rpi4 agent
	@$(MAKE) --no-print-directory testsvc GO_VERSIONS=1.23
	@KEEP=$(KEEP) bash tools/demo.sh

bench: setup
	@$(MAKE) --no-print-directory host-deps
	@$(MAKE) --no-print-directory -j$(JOBS) all-boards
	@$(MAKE) --no-print-directory -j$(JOBS) collector lossy-link host-tools
	@$(MAKE) --no-print-directory testsvc GO_VERSIONS="1.21 1.23 1.27"
	@bash tools/bench/run.sh

clean:
	rm -rf build
