# Mail gateway: filterd (SMTP), imapd (IMAP/POP3), mailctl (admin).
#
#   make            build bin/filterd bin/imapd bin/mailctl
#   make run        install missing packages, build, run the demo gateway
#   make check      install missing packages, build, run every test
#   make bench      install missing packages, build, run the benchmarks
#   make asan       build and run the unit and integration tests under ASan/UBSan
#
# Out-of-tree objects go to $(O); binaries to $(BIN).

O       ?= build
BIN     ?= bin
CC      ?= gcc
PYTHON  ?= /usr/bin/python3

# The prefilter's library (rules/prefilter.c): Intel's Hyperscan where
# Debian has it (amd64), vectorscan elsewhere.  Debian's vectorscan 5.4.9
# misses matches that Hyperscan 5.4.0 finds (README, Design decisions);
# the two conflict, so vectorscan is removed where Hyperscan goes in
# ("pkg-" is a removal to tests/deps.sh, as to apt-get).
ARCH := $(shell dpkg --print-architecture 2>/dev/null)
ifeq ($(ARCH),amd64)
HS_DEB = libhyperscan-dev libvectorscan-dev- libvectorscan5-
else
HS_DEB = libvectorscan-dev
endif

# Debian packages the build, the tests and the demo need.
DEB_PKGS = gcc make pkg-config libssl-dev libsqlite3-dev libcmocka-dev libcrypt-dev \
	   libgmime-3.0-dev libunbound-dev libspf2-dev libopendkim-dev libopendmarc-dev \
	   libpcre2-dev $(HS_DEB) publicsuffix python3-dkim python3-nacl spamassassin dnsmasq-base openssl python3 python3-pytest swaks curl procps isync mutt tmux

PKGS     = openssl sqlite3 gmime-3.0 opendkim libpcre2-8 libhs
OPTFLAGS ?= -O2
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS_ALL = -std=c17 -D_GNU_SOURCE -g $(OPTFLAGS) -Wall -Wextra -Werror -pthread -I. \
	     -fno-strict-aliasing $(PKG_CFLAGS) $(SANFLAGS) $(CFLAGS)
LDLIBS_ALL = $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lssl -lcrypto -lsqlite3 -lgmime-3.0 -lgobject-2.0 -lglib-2.0 -lopendkim -lpcre2-8 -lhs) \
	     -lspf2 -lopendmarc -lunbound -lcrypt -pthread $(SANFLAGS) $(LDFLAGS)
TEST_LIBS  = $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

COMMON_SRC  = $(wildcard common/*.c)
STORE_SRC   = $(wildcard store/*.c)
RBL_SRC     = $(wildcard rbl/*.c)
RULES_SRC   = $(wildcard rules/*.c)
FILTERD_SRC = $(filter-out filterd/main.c,$(wildcard filterd/*.c))
IMAPD_SRC   = $(filter-out imapd/main.c,$(wildcard imapd/*.c))
TOOLS_SRC   = $(filter-out tools/mailctl.c,$(wildcard tools/*.c))

LIBCOMMON  = $(O)/libcommon.a
LIBSTORE   = $(O)/libstore.a
LIBRBL     = $(O)/librbl.a
LIBRULES   = $(O)/librules.a
LIBFILTERD = $(O)/libfilterd.a
LIBIMAPD   = $(O)/libimapd.a

PROGS = $(BIN)/filterd $(BIN)/imapd $(BIN)/mailctl

UNIT_SRC   = $(wildcard tests/unit/*/test_*.c)
UNIT_TESTS = $(UNIT_SRC:%.c=$(O)/%)
BENCH_BIN  = $(O)/tests/bench/smtpbench
IMAPBENCH_BIN = $(O)/tests/bench/imapbench
POP3BENCH_BIN = $(O)/tests/bench/pop3bench
RULESBENCH_BIN = $(O)/tests/bench/rulesbench
BAYESBENCH_BIN = $(O)/tests/bench/bayesbench

.PHONY: all deps run check unit integration bench asan fuzz clean install
all: $(PROGS)

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(LIBCOMMON): $(COMMON_SRC:%.c=$(O)/%.o)
	$(AR) rcs $@ $^
$(LIBSTORE): $(STORE_SRC:%.c=$(O)/%.o)
	$(AR) rcs $@ $^
$(LIBRBL): $(RBL_SRC:%.c=$(O)/%.o)
	$(AR) rcs $@ $^
$(LIBRULES): $(RULES_SRC:%.c=$(O)/%.o)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
$(LIBFILTERD): $(FILTERD_SRC:%.c=$(O)/%.o)
	$(AR) rcs $@ $^
$(LIBIMAPD): $(IMAPD_SRC:%.c=$(O)/%.o)
	$(AR) rcs $@ $^

$(BIN)/filterd: $(O)/filterd/main.o $(LIBFILTERD) $(LIBRULES) $(LIBRBL) $(LIBSTORE) $(LIBCOMMON)
	@mkdir -p $(BIN)
	$(CC) -o $@ $^ $(LDLIBS_ALL)
$(BIN)/imapd: $(O)/imapd/main.o $(LIBIMAPD) $(LIBRULES) $(LIBSTORE) $(LIBCOMMON)
	@mkdir -p $(BIN)
	$(CC) -o $@ $^ $(LDLIBS_ALL)
$(BIN)/mailctl: $(O)/tools/mailctl.o $(TOOLS_SRC:%.c=$(O)/%.o) $(LIBRULES) $(LIBSTORE) $(LIBCOMMON)
	@mkdir -p $(BIN)
	$(CC) -o $@ $^ $(LDLIBS_ALL)

# Unit tests link every library (a test of filterd/ needs libfilterd).
$(O)/tests/unit/%: $(O)/tests/unit/%.o $(LIBFILTERD) $(LIBIMAPD) $(LIBRULES) $(LIBRBL) $(LIBSTORE) $(LIBCOMMON)
	$(CC) -o $@ $^ $(TEST_LIBS) $(LDLIBS_ALL)

$(BENCH_BIN): $(O)/tests/bench/smtpbench.o $(LIBCOMMON)
	$(CC) -o $@ $^ $(LDLIBS_ALL)
$(IMAPBENCH_BIN): $(O)/tests/bench/imapbench.o $(LIBCOMMON)
	$(CC) -o $@ $^ $(LDLIBS_ALL)
$(RULESBENCH_BIN): $(O)/tests/bench/rulesbench.o $(LIBRULES) $(LIBCOMMON)
	$(CC) -o $@ $^ $(LDLIBS_ALL)
$(BAYESBENCH_BIN): $(O)/tests/bench/bayesbench.o $(LIBRULES) $(LIBCOMMON)
	$(CC) -o $@ $^ $(LDLIBS_ALL)
$(POP3BENCH_BIN): $(O)/tests/bench/pop3bench.o
	$(CC) -o $@ $^ -pthread

# Install missing Debian packages (as root, or through sudo).
deps:
	@sh tests/deps.sh $(DEB_PKGS)

unit: $(UNIT_TESTS)
	@O=$(O) sh tests/run-unit.sh $(UNIT_TESTS)

integration: $(PROGS)
	@BIN_DIR=$(abspath $(BIN)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

check: deps
	@$(MAKE) --no-print-directory all $(UNIT_TESTS)
	@O=$(O) BIN=$(BIN) PYTHON=$(PYTHON) sh tests/run-all.sh $(UNIT_TESTS)

asan: deps
	@$(MAKE) --no-print-directory O=build/asan BIN=build/asan/bin OPTFLAGS=-O1 \
		SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
		all $(UNIT_SRC:%.c=build/asan/%)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		O=build/asan BIN=build/asan/bin PYTHON=$(PYTHON) sh tests/run-all.sh $(UNIT_SRC:%.c=build/asan/%)

run: deps
	@$(MAKE) --no-print-directory all
	@sh tests/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN) $(IMAPBENCH_BIN) $(POP3BENCH_BIN) $(RULESBENCH_BIN) $(BAYESBENCH_BIN)
	@BIN_DIR=$(abspath $(BIN)) BENCH_BIN=$(abspath $(BENCH_BIN)) \
		IMAPBENCH_BIN=$(abspath $(IMAPBENCH_BIN)) POP3BENCH_BIN=$(abspath $(POP3BENCH_BIN)) \
		RULESBENCH_BIN=$(abspath $(RULESBENCH_BIN)) BAYESBENCH_BIN=$(abspath $(BAYESBENCH_BIN)) \
		sh tests/bench/bench.sh

# libFuzzer targets (clang): make fuzz FUZZ_SECONDS=60
FUZZ_SECONDS ?= 30
FUZZ_FLAGS = -std=c17 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined
fuzz: deps
	@mkdir -p build/fuzz
	clang $(FUZZ_FLAGS) $(PKG_CFLAGS) -o build/fuzz/fuzz_smtp tests/fuzz/fuzz_smtp.c filterd/smtp_parse.c \
		filterd/smtp_data.c $(COMMON_SRC) $(LDLIBS_ALL)
	clang $(FUZZ_FLAGS) $(PKG_CFLAGS) -o build/fuzz/fuzz_config tests/fuzz/fuzz_config.c $(COMMON_SRC) \
		$(LDLIBS_ALL)
	clang $(FUZZ_FLAGS) $(PKG_CFLAGS) -o build/fuzz/fuzz_imap tests/fuzz/fuzz_imap.c \
		imapd/imap_parse.c imapd/search.c imapd/utf7.c $(COMMON_SRC) $(LDLIBS_ALL)
	clang $(FUZZ_FLAGS) $(PKG_CFLAGS) -o build/fuzz/fuzz_mime tests/fuzz/fuzz_mime.c \
		$(COMMON_SRC) $(LDLIBS_ALL)
	clang $(FUZZ_FLAGS) $(PKG_CFLAGS) -o build/fuzz/fuzz_msgcheck tests/fuzz/fuzz_msgcheck.c \
		$(FILTERD_SRC) $(RBL_SRC) $(STORE_SRC) $(COMMON_SRC) $(LDLIBS_ALL)
	build/fuzz/fuzz_smtp -max_total_time=$(FUZZ_SECONDS) -max_len=4096
	build/fuzz/fuzz_config -max_total_time=$(FUZZ_SECONDS) -max_len=4096
	build/fuzz/fuzz_imap -max_total_time=$(FUZZ_SECONDS) -max_len=4096
	build/fuzz/fuzz_mime -max_total_time=$(FUZZ_SECONDS) -max_len=65536
	build/fuzz/fuzz_msgcheck -max_total_time=$(FUZZ_SECONDS) -max_len=65536

PREFIX ?= /usr/local
install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/mailgw/rules.d $(DESTDIR)$(PREFIX)/share/mailgw
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/sbin/
	install -m 644 doc/gateway.conf.sample $(DESTDIR)$(PREFIX)/share/mailgw/
	install -m 644 doc/filterd.service doc/imapd.service $(DESTDIR)$(PREFIX)/share/mailgw/
	install -m 644 rules.d/*.rules rules.d/README.md $(DESTDIR)$(PREFIX)/share/mailgw/rules.d/

clean:
	rm -rf $(O) $(BIN)

-include $(shell find $(O) -name '*.d' 2>/dev/null)
