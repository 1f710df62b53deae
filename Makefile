# Streamer — GNU Makefile (pkg-config). See README.md "Quickstart".
#
#   make run     install missing Debian packages, build, start streamerd in the foreground
#   make test    install test dependencies, build, run unit + sanitizer + end-to-end tests
#   make         build build/bin/streamerd and build/bin/streamer
#   make format  clang-format the C sources in place
#   make lint    clang-tidy + cppcheck (warnings are errors)
#   make bench   run the benchmarks under bench/ (not part of make test)
#
# Why make and not meson: the build is one static library plus two binaries and a
# handful of test programs; a 100-line Makefile that a newcomer can read end to end
# beats a second build language, and pkg-config gives the same dependency lookup.

BUILD    ?= build
SAN      ?=
CC       ?= cc
PKGS     := libmicrohttpd jansson sqlite3 libcurl libcrypt gnutls libpcre2-8 zlib ext2fs com_err
# Debian packages: build, run, test.
DEB_BUILD := build-essential pkg-config libmicrohttpd-dev libjansson-dev libsqlite3-dev \
             libcurl4-gnutls-dev libcrypt-dev libgnutls28-dev libpcre2-dev zlib1g-dev \
             libext2fs-dev
# Run time: the plan-script host shell's sandbox (bubblewrap) and the tools scripts call there.
DEB_RUN   := bubblewrap dos2unix libxml2-utils gawk python3
# iSCSI tests: libiscsi's tools and conformance suite, qemu's iscsi driver, qemu + its
# iPXE ROM for the boot tests (OVMF: the UEFI boot of test_boot_developer), and what
# tests/iscsi/mkbootdisk.py builds the boot disk from.
DEB_ISCSI_TEST := libiscsi-bin qemu-block-extra qemu-system-x86 ipxe-qemu ovmf syslinux \
             syslinux-common mtools dosfstools busybox-static linux-image-amd64
# make run, test_examples, test_boot_linux, boot_bench: what
# examples/images/build-debian-tiny.sh builds the sample golden image with.
DEB_SAMPLES := apt dpkg binutils dosfstools syslinux syslinux-common mtools e2fsprogs openssh-client
# Disk-layer tests (test_fs_disk): images made by sfdisk, lvm2 and each filesystem's mkfs.
# libguestfs-tools: the differential tests against real guestfish (output formats, delegation).
DEB_FS_TEST := fdisk lvm2 xfsprogs btrfs-progs squashfs-tools genisoimage ntfs-3g libguestfs-tools
DEB_TEST  := $(DEB_BUILD) $(DEB_RUN) libcmocka-dev qemu-utils clang libclang-rt-14-dev e2fsprogs \
             $(DEB_ISCSI_TEST) $(DEB_FS_TEST) $(DEB_SAMPLES)
# make bench only: tgtd (the iSCSI peer), fio, libiscsi-dev (bench/iscsi_load.c); guestfish
# (the plan-script peer) and what bench/script_bench.py builds its images with; unzip (the
# bundle peer).
DEB_BENCH := $(DEB_BUILD) $(DEB_ISCSI_TEST) tgt fio libiscsi-dev \
             $(DEB_RUN) libguestfs-tools lvm2 fdisk e2fsprogs $(DEB_SAMPLES) unzip
DEB_LINT  := clang-format clang-tidy cppcheck

CFLAGS_BASE := -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
               -Wformat=2 -Wno-format-nonliteral -D_GNU_SOURCE -fno-strict-aliasing \
               -Isrc
ifeq ($(SAN),1)
  CFLAGS_BASE += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS_SAN := -fsanitize=address,undefined
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  := $(CFLAGS_BASE) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lpthread -lm
LDFLAGS := $(LDFLAGS_SAN) $(EXTRA_LDFLAGS)

LIB_SRCS := $(filter-out src/cli/%,$(wildcard src/*/*.c))
CLI_SRCS := $(wildcard src/cli/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_SRCS := $(wildcard tests/unit/test_*.c)
# HPE's public artifacts that tests read (never copied into the repo): beside
# the checkout as ../shared/research, else this workplace's /work/shared/research.
STREAMER_RESEARCH ?= $(firstword $(wildcard $(CURDIR)/../shared/research /work/shared/research) $(CURDIR)/../shared/research)
export STREAMER_RESEARCH
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all run test deps test-deps bench-deps lint-deps unit unit-asan e2e e2e-asan fuzz format lint bench clean

all: $(BUILD)/bin/streamerd $(BUILD)/bin/streamer

$(BUILD)/obj/%.o: %.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libstreamer.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/streamerd: $(BUILD)/obj/src/streamerd.o $(BUILD)/libstreamer.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/streamer: $(CLI_OBJS) $(BUILD)/libstreamer.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libstreamer.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libstreamer.a $(LDLIBS) -lcmocka

# --- Debian packages -------------------------------------------------------
# Installs only what is missing; needs root (or sudo) the first time.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; fi
endef

deps:
	$(call apt_install,$(DEB_BUILD) $(DEB_RUN))

test-deps:
	$(call apt_install,$(DEB_TEST))

bench-deps:
	$(call apt_install,$(DEB_BENCH))

lint-deps:
	$(call apt_install,$(DEB_LINT))

# --- run -------------------------------------------------------------------
RUN_ARGS ?=
# The samples of examples/ load at the first start (streamerd --samples), with the sample
# golden image, built here once (build/debian-tiny.img, Debian packages fetched by apt-get);
# the iPXE boot URL on plain HTTP for local VMs only (docs/boot.md; RUN_ARGS may override).
SAMPLE_IMAGE := build/debian-tiny.img
run: deps
	$(call apt_install,$(DEB_SAMPLES))
	$(MAKE) --no-print-directory all
	@[ -f $(SAMPLE_IMAGE) ] || examples/images/build-debian-tiny.sh $(SAMPLE_IMAGE) || \
	  echo "make run: the sample golden image was not built (above); the other samples load without it"
	./$(BUILD)/bin/streamerd --samples examples --boot-listen 127.0.0.1:8080 $(RUN_ARGS)

# --- tests -----------------------------------------------------------------
test: test-deps
	$(MAKE) --no-print-directory all
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory e2e
	# the sanitizer pass skips the differential runs of real guestfish (slow TCG
	# launches that test output formats, not memory safety; the first pass ran them)
	STREAMER_NO_GUESTFISH=1 $(MAKE) --no-print-directory BUILD=build/asan SAN=1 all unit e2e
	$(MAKE) --no-print-directory fuzz

unit: $(TEST_BINS)
	@set -e; for t in $(TEST_BINS); do echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 $$t; done

e2e: $(BUILD)/bin/streamerd $(BUILD)/bin/streamer
	STREAMER_BUILD=$(BUILD) /usr/bin/python3 tests/e2e/run.py

# --- fuzzing (libFuzzer, clang) ---------------------------------------------
# Each target runs FUZZ_SECONDS from its corpus in tests/fuzz/corpus/<name>
# (new inputs go to build/fuzz/corpus/<name>, the repo's corpus is read-only).
# tests/fuzz/make_corpus.py (make_corpus_bundle.py for fuzz_bundle) rewrites the seeds.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := fuzz_pdu fuzz_login_kv fuzz_script_parse fuzz_fs_vfat fuzz_fs_ext fuzz_fs_disk fuzz_bundle
FUZZ_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# The targets need only util, vol, iscsi, script, fs, store and artifact: those are built with clang here.
FUZZ_SRCS := $(wildcard src/util/*.c src/vol/*.c src/iscsi/*.c src/script/*.c src/fs/*.c src/store/*.c src/artifact/*.c)
FUZZ_OBJS := $(FUZZ_SRCS:%.c=build/fuzz/obj/%.o)
.SECONDARY: $(FUZZ_OBJS)
build/fuzz/obj/%.o: %.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	clang $(CFLAGS_BASE) $(PKG_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_FLAGS) -c $< -o $@
build/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJS)
	clang $(CFLAGS_BASE) $(PKG_CFLAGS) -fsanitize=fuzzer $(FUZZ_FLAGS) -o $@ $^ $(LDLIBS)
fuzz: $(FUZZ_TARGETS:%=build/fuzz/%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t; echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  rc=0; ASAN_OPTIONS=detect_leaks=0 build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=60 -print_final_stats=1 -artifact_prefix=build/fuzz/$$t- \
	    build/fuzz/corpus/$$t tests/fuzz/corpus/$$t >build/fuzz/$$t.log 2>&1 || rc=$$?; \
	  grep -v '^#' build/fuzz/$$t.log | tail -25; test $$rc -eq 0; \
	done

# --- quality ---------------------------------------------------------------
C_FILES = $(wildcard src/*.c src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c bench/*.c)
format:
	clang-format -i $(C_FILES)

lint: lint-deps
	clang-format --dry-run -Werror $(C_FILES)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
	  --suppress=missingIncludeSystem -Isrc $(wildcard src/*.c src/*/*.c)
	clang-tidy --quiet $(wildcard src/*.c src/*/*.c) -- -std=gnu11 -D_GNU_SOURCE -Isrc $(PKG_CFLAGS)

# bench/vol_bench.c: the volume benchmarks' C side (bench/vol_bench.py runs it).
$(BUILD)/bench/vol_bench: bench/vol_bench.c $(BUILD)/libstreamer.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libstreamer.a $(LDLIBS)

# bench/script_bench.c: the plan-script benchmark's native side (bench/script_bench.py runs it).
$(BUILD)/bench/script_bench: bench/script_bench.c $(BUILD)/libstreamer.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libstreamer.a $(LDLIBS)

# bench/iscsi_load.c: libiscsi load generator for bench/iscsi_bench.py. No -Isrc:
# <iscsi/iscsi.h> must be libiscsi's header, not src/iscsi/iscsi.h.
$(BUILD)/bench/iscsi_load: bench/iscsi_load.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Isrc,$(CFLAGS_BASE)) $(LDFLAGS) -o $@ $< -liscsi

bench: bench-deps all $(BUILD)/bench/vol_bench $(BUILD)/bench/iscsi_load $(BUILD)/bench/script_bench
	/usr/bin/python3 bench/api_bench.py
	/usr/bin/python3 bench/vol_bench.py
	/usr/bin/python3 bench/iscsi_bench.py
	/usr/bin/python3 bench/script_bench.py
	/usr/bin/python3 bench/boot_bench.py
	/usr/bin/python3 bench/capture_bench.py
	/usr/bin/python3 bench/deploy_bench.py
	/usr/bin/python3 bench/bundle_bench.py

clean:
	rm -rf build
