# make demo / make test / make bench: each installs what it needs first (Debian packages for
# the PostgreSQL server's PL/Python, a virtualenv for the installer and tests).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: deps system-deps client-deps test unit demo bench lint format clean

deps: system-deps $(STAMP)

system-deps:
	@sh installer/ensure_system_packages.sh

# the proxy's client matrix (pgjdbc, node-postgres); never fatal, missing clients are skipped
client-deps:
	@sh installer/ensure_client_packages.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV) || { sh installer/ensure_system_packages.sh --venv && python3 -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -e '.[dev]'
	@touch $@

test: deps client-deps
	$(VENV)/bin/pytest -n 2 --dist loadfile

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit

demo: deps
	$(PY) -m pldiffix_tools.demo

BENCH_STAMP := $(VENV)/.bench-stamp

# the DP peers (SmartNoise SQL, OpenDP) go into the virtualenv only, never into the server
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -e '.[dev,bench]'
	@touch $@

# BENCH_ARGS go to the engine benchmark, PROXY_BENCH_ARGS to the proxy's (overhead and load),
# SYNTH_BENCH_ARGS to the synthesis-vs-MST comparison (MST in its own .venv-mst, made on first use),
# DP_PEERS_ARGS to the DP side by side (pldiffix, SmartNoise SQL, OpenDP),
# SHARDS_BENCH_ARGS to local vs sharded over three loopback clusters
bench: deps $(BENCH_STAMP)
	$(PY) -m pldiffix_tools.bench $(BENCH_ARGS)
	$(PY) -m pldiffix_tools.bench_proxy $(PROXY_BENCH_ARGS)
	$(PY) -m pldiffix_tools.bench_synth $(SYNTH_BENCH_ARGS)
	$(PY) -m pldiffix_tools.bench_dp_peers $(DP_PEERS_ARGS)
	$(PY) -m pldiffix_tools.bench_shards $(SHARDS_BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
