"""The llama.cpp backend: generation through llama-cpp-python on a GGUF file.

llama.cpp decodes several times faster than transformers on a CPU (docs/serving.md has the numbers),
so ``backend: llama.cpp`` is the fast path for ``ask``, ``chat`` and ``serve``. The prompt is built
exactly as the transformers backend builds it (the model's chat template from the GGUF metadata,
rendered by the same Jinja rules; or the plain layout with BOS for base models), so both backends
read the same tokens and greedy answers can be compared one to one.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.atomic import atomic_write_bytes, atomic_write_json
from slmkit.config import GenerationConfig
from slmkit.data.prompts import plain_prompt
from slmkit.errors import ConfigError, ModelNotFoundError
from slmkit.models.cache import cache_dir
from slmkit.models.generation import Generation, Messages, softmax_mass
from slmkit.models.loading import file_fingerprint

logger = logging.getLogger(__name__)

# llama.cpp allocates the KV cache for the whole window up front; RAG prompts never need more.
_MAX_WINDOW = 8192


_log_callback: Any = None  # kept alive: llama.cpp holds only a C pointer to it


def cpu_threads() -> int:
    """The CPU threads llama.cpp should use: ``SLMKIT_THREADS`` if set, else the cores this process
    may run on.

    ``os.cpu_count()`` counts the machine's cores, not the ones a container's cpuset or ``taskset``
    grants; llama.cpp's threads wait on each other by spinning, so more threads than the cores they
    get makes it slower, not faster. On a machine that other work shares, ``SLMKIT_THREADS`` caps every
    llama.cpp engine slmkit starts (generator, query encoder, reranker) at once.

    Raises:
        ConfigError: ``SLMKIT_THREADS`` is not a whole number of at least 1.
    """
    if value := os.environ.get("SLMKIT_THREADS", "").strip():
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"SLMKIT_THREADS={value!r}: give a whole number of threads, at least 1")
        return int(value)
    if hasattr(os, "sched_getaffinity"):  # not on macOS or Windows
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


_OPEN_LOCK = threading.Lock()


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has Intel AMX (Linux ``/proc/cpuinfo`` flags; False where that file is absent)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            return any(line.startswith("flags") and " amx_int8" in line for line in cpuinfo)
    except OSError:
        return False


def open_llama(llama_cpp: Any, **kwargs: Any) -> Any:
    """``llama_cpp.Llama(**kwargs)``, the one way slmkit opens a GGUF with weights.

    On a CPU with AMX, llama.cpp (as built by llama-cpp-python 0.3.36) moves quantized weights into
    its AMX "extra" buffer type, and the first batch evaluated on them segfaults (q8_0 exports and
    the Q4_K_M Gemma-3 file with a LoRA, reproduced on a Sapphire Rapids Xeon). There the extra
    buffer types (AMX and the CPU repack) are turned off, which loses only that repack speed-up.
    ``Llama`` takes no argument for it, so its model-parameter defaults are swapped for the duration
    of the load, under a lock.
    """
    if not cpu_has_amx():
        return llama_cpp.Llama(**kwargs)
    low_level = llama_cpp.llama_cpp
    defaults = low_level.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    with _OPEN_LOCK:
        low_level.llama_model_default_params = without_extra_buffers
        try:
            return llama_cpp.Llama(**kwargs)
        finally:
            low_level.llama_model_default_params = defaults


def route_llama_logs(llama_cpp: Any) -> None:
    """Send llama.cpp's own log lines to Python logging (errors as warnings, the rest at debug).

    llama-cpp-python prints some of them to stderr even with ``verbose=False`` (the sliding-window
    cache note on every Gemma-3 load), which garbles ``ask --json`` for a user who merges the streams.
    """
    global _log_callback
    if _log_callback is not None:
        return

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", "replace").rstrip()
        if line:
            # ggml levels: 1 debug, 2 info, 3 warn, 4 error (llama-cpp-python's own table predates this).
            logger.log(logging.WARNING if level == 4 else logging.DEBUG, "llama.cpp: %s", line)

    _log_callback = forward
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))


class LlamaCppGenerator:
    """Generates with llama.cpp on the local CPU.

    Args:
        gguf: The GGUF file.
        name: What the user called the model (for responses and reports).
        threads: CPU threads (default: the cores this process may run on).
        context_window: KV-cache size; default the model's training window, at most 8192.
    """

    def __init__(
        self,
        gguf: Path,
        name: str | None = None,
        threads: int | None = None,
        context_window: int | None = None,
    ) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        route_llama_logs(llama_cpp)
        self._llama_cpp = llama_cpp
        self.path = Path(gguf)
        self.name = name or self.path.name
        threads = threads or cpu_threads()
        # What this file's facts are kept in the cache under (a hash of 2 MiB of it): computed once.
        key = _cache_key(self.path)
        self._token_bytes_file = cache_dir() / "gguf" / f"{key}.token-bytes.npz"
        # The token table kept in the cache, and grounding's index of it, are built in Python (a
        # quarter of a second for Gemma-3's 262k tokens): on a thread, while llama.cpp reads the
        # weights below with the GIL released, so a fresh `slmkit ask` no longer waits for them
        # after the load, at its first answer.
        # A thread of its own, which ends with the job: a shared pool's idle worker does not
        # survive a fork, and work given to it in the child would wait forever.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slmkit-token-table")
        self._cached_tokens: Future[list[bytes] | None]
        self._cached_tokens = pool.submit(_read_token_table, self._token_bytes_file)
        pool.shutdown(wait=False)
        probe = _training_window(llama_cpp, self.path, key)
        self.llm = open_llama(
            llama_cpp,
            model_path=str(self.path),
            n_ctx=context_window or min(probe, _MAX_WINDOW),
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        # Free the engine before interpreter teardown: llama-cpp-python's __del__ runs too late at
        # exit (its module globals are gone) and prints a TypeError traceback.
        weakref.finalize(self, self.llm.close)
        self.context_window = self.llm.n_ctx()
        template = self.llm.metadata.get("tokenizer.chat_template")
        self._formatter = None
        if template:
            model = self.llm._model
            eos, bos = model.token_eos(), model.token_bos()
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(eos) if eos != -1 else "",
                bos_token=model.token_get_text(bos) if bos != -1 else "",
            )

    @classmethod
    def load(cls, model: str, quant: str = "f32", threads: int | None = None) -> LlamaCppGenerator:
        """Open ``model``: a ``.gguf`` file as it is; anything else exported to ``quant`` once (cached)."""
        path = Path(model).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            return cls(path, model, threads)
        from slmkit.models.gguf_export import export_gguf

        return cls(export_gguf(model, quant=quant).path, model, threads)

    @property
    def has_chat_template(self) -> bool:
        return self._formatter is not None

    def _tokens(self, messages: Messages) -> list[int]:
        if self._formatter is not None:
            prompt = self._formatter(messages=list(messages)).prompt
            # The template writes any BOS itself, as transformers' apply_chat_template assumes.
            return self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        # Base models: the plain layout plus the special tokens the model's metadata asks for (BOS).
        return self.llm.tokenize(plain_prompt(messages).encode("utf-8"), add_bos=True, special=False)

    def count_tokens(self, messages: Messages) -> int:
        return len(self._tokens(messages))

    @cached_property
    def token_bytes(self) -> list[bytes]:
        """The bytes each token id stands for inside a text: one ctypes call per token (half a second
        for Gemma-3's 262k tokens) the first time, then read from the cache beside the GGUF exports."""
        cached = self._cached_tokens.result()
        if cached is not None:
            return cached
        from slmkit.models.grounding import llama_token_bytes

        pieces = llama_token_bytes(self.llm)
        try:
            _save_token_bytes(self._token_bytes_file, pieces)
        except OSError as err:  # a read-only cache costs half a second per start, nothing else
            logger.debug("could not keep the token table in %s: %s", self._token_bytes_file, err)
        return pieces

    @cached_property
    def stop_ids(self) -> list[int]:
        """Tokens that end an answer: end-of-generation tokens for a chat model; for a base model,
        whose answer is one line, every token that starts with a newline."""
        if self.has_chat_template:
            vocab = self.llm._model.vocab
            return [i for i in range(self.llm.n_vocab()) if self._llama_cpp.llama_vocab_is_eog(vocab, i)]
        return [i for i, piece in enumerate(self.token_bytes) if piece.startswith(b"\n")]

    def no_answer_probabilities(self, prompts: Sequence[Messages]) -> list[float]:
        probabilities = [0.0] * len(prompts)
        # Last prompt first: the first (best-ranked passage, the one most often answered from) is then
        # left in the KV cache, and generating from it reads no prompt token again.
        for i in reversed(range(len(prompts))):
            self._evaluate(self._tokens(prompts[i]))
            logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))
            probabilities[i] = softmax_mass(logits, self.stop_ids)
        return probabilities

    def _evaluate(self, tokens: list[int]) -> None:
        """Run ``tokens`` through the model, reusing the KV cache of the prefix they share with what
        it holds; the last token is always read again, since its logits are the ones wanted."""
        llm = self.llm
        common = 0
        for cached, token in zip(llm.input_ids[: llm.n_tokens].tolist(), tokens, strict=False):
            if cached != token:
                break
            common += 1
        common = min(common, len(tokens) - 1)
        # A cache that cannot drop a suffix (some sliding-window caches) is cleared instead.
        if common == 0 or not llm._ctx.kv_cache_seq_rm(-1, common, -1):
            llm.reset()
            common = 0
        llm.n_tokens = common
        llm.eval(tokens[common:])

    def generate(
        self,
        messages: Messages,
        config: GenerationConfig,
        on_text: Callable[[str], None] | None = None,
        spans: Sequence[str] | None = None,
    ) -> Generation:
        prompt = self._tokens(messages)
        vocab = self.llm._model.vocab
        sampling: dict[str, Any] = {"temp": config.temperature, "repeat_penalty": config.repetition_penalty}
        if config.temperature > 0:
            sampling.update(top_p=config.top_p, top_k=0, min_p=0.0)
        if spans is not None:
            from slmkit.models.grounding import SpanConstraint, llama_logits_processor

            constraint = SpanConstraint(self.token_bytes, spans, self.stop_ids)
            sampling["logits_processor"] = llama_logits_processor(constraint, len(prompt))
        ids: list[int] = []
        raw = b""
        emitted = 0
        first: float | None = None
        finish = "length"
        pieces = self.token_bytes
        start = time.perf_counter()
        # reset=True still reuses the KV cache for the prompt prefix shared with the previous call
        # (the system prompt, a chat's history), which llama-cpp-python detects itself.
        for token in self.llm.generate(prompt, reset=True, **sampling):
            if first is None:
                first = time.perf_counter() - start
            if self._llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            ids.append(token)
            # Pieces concatenate to the full detokenization (computed once per vocabulary: llama-cpp-
            # python's detokenize fails on tokens over 32 bytes).
            raw += pieces[token]
            text = raw.decode("utf-8", errors="replace")
            if not self.has_chat_template and "\n" in text[emitted:]:
                # A base model has no end-of-turn token; one answer line is one turn.
                ids.pop()
                finish = "stop"
                break
            # Hold back a trailing replacement char: it is half of a multi-byte character.
            if on_text and not text.endswith("\ufffd") and len(text) > emitted:
                on_text(text[emitted:])
                emitted = len(text)
            if len(ids) >= config.max_new_tokens:
                break
        seconds = time.perf_counter() - start
        text = b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace").strip()
        return Generation(text, len(prompt), len(ids), seconds, first or seconds, finish)


def _cache_key(gguf: Path) -> str:
    """What the per-file facts kept in the cache are filed under: the file's name and fingerprint."""
    return f"{gguf.stem}-{file_fingerprint(gguf)}"


def _read_token_table(path: Path) -> list[bytes] | None:
    """The token table :func:`_save_token_bytes` wrote to ``path``, with grounding's index of it
    built (see ``LlamaCppGenerator``); None if there is none or it is unreadable."""
    try:
        with np.load(path) as table:
            blob, ends = table["blob"].tobytes(), table["ends"].tolist()
    except (OSError, ValueError, KeyError):
        return None
    pieces = [blob[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    from slmkit.models.grounding import index_vocabulary

    index_vocabulary(pieces)
    return pieces


def _save_token_bytes(path: Path, pieces: list[bytes]) -> None:
    """Write the token table as one byte blob and the end offset of each token, atomically."""
    table = io.BytesIO()
    ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)
    np.savez(table, blob=np.frombuffer(b"".join(pieces), dtype=np.uint8), ends=ends)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, table.getvalue())


def _training_window(llama_cpp: Any, path: Path, key: str) -> int:
    """The window a GGUF model was trained with, read by llama.cpp from a vocabulary-only load and
    remembered in the cache under the file's ``key`` (:func:`_cache_key`): the load takes about a
    second for Gemma-3's 262k-token vocabulary, on every start of a fresh process otherwise.

    Not gguf-py's GGUFReader: it builds a Python object per vocabulary entry, about a minute for
    Gemma-3's 262k tokens, where llama.cpp's own reader takes a fraction of a second.
    """
    known_file = cache_dir() / "gguf" / "training-windows.json"
    try:
        known = json.loads(known_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), int):
        return known[key]
    window = _read_training_window(llama_cpp, path)
    try:
        known_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(known_file, {**known, key: window})
    except OSError as err:  # a read-only cache costs a second per start, nothing else
        logger.debug("could not remember the training window in %s: %s", known_file, err)
    return window


def _read_training_window(llama_cpp: Any, path: Path) -> int:
    with _vocab_only(llama_cpp, path) as model:
        return int(llama_cpp.llama_model_n_ctx_train(model)) or 2048


def is_sentencepiece_gguf(path: Path) -> bool:
    """Whether the GGUF file's vocabulary is SentencePiece (``tokenizer.ggml.model`` ``llama``), read
    by llama.cpp from a vocabulary-only load (a fraction of a second; see :func:`_training_window`).

    Raises:
        ImportError: llama-cpp-python is not installed.
        ModelNotFoundError: llama.cpp cannot read the file.
    """
    import llama_cpp

    with _vocab_only(llama_cpp, path) as model:
        vocab = llama_cpp.llama_model_get_vocab(model)
        return int(llama_cpp.llama_vocab_type(vocab)) == llama_cpp.LLAMA_VOCAB_TYPE_SPM


@contextlib.contextmanager
def _vocab_only(llama_cpp: Any, path: Path) -> Iterator[Any]:
    from llama_cpp._utils import suppress_stdout_stderr

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    with suppress_stdout_stderr(disable=False):  # llama.cpp logs every metadata key to stderr
        model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), params)
    if not model:
        raise ModelNotFoundError(f"{path}: llama.cpp could not read this GGUF file")
    try:
        yield model
    finally:
        llama_cpp.llama_model_free(model)
