"""Export any slmkit model to GGUF for llama.cpp, with llama.cpp's own tools.

Conversion runs llama.cpp's ``convert_hf_to_gguf.py`` (the reference converter; it knows every
architecture's tensor names and tokenizer quirks), and ``q8_0`` / ``q4_k_m`` come from llama.cpp's
own quantizer through llama-cpp-python's ``llama_model_quantize``. Nothing here writes GGUF by hand.

Which model families convert is the converter's own list (its ``ModelBase.register`` names, matched
against ``architectures`` in the model's config.json), checked before anything runs: GPT-2, phi,
Qwen2, Llama, Mistral, Gemma and T5 convert; BART does not (docs/model-families.md).

The converter is not in any wheel: it ships in the llama-cpp-python *source* distribution. slmkit
extracts it (with the matching ``gguf-py``) once from the sdist of the installed llama-cpp-python
version, fetched from PyPI by pip, into the cache. ``$SLMKIT_LLAMA_CPP`` may point at a llama.cpp
checkout instead (for machines that never reach PyPI).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from slmkit.errors import ConfigError, ModelNotFoundError, SlmkitError
from slmkit.models.cache import cache_dir
from slmkit.models.loading import file_fingerprint, resolve_model_path, source_gguf_of

logger = logging.getLogger(__name__)

QUANTS: tuple[str, ...] = ("f32", "f16", "q8_0", "q4_k_m")
# llama.cpp's llama_ftype values (llama.h): MOSTLY_Q8_0 = 7, MOSTLY_Q4_K_M = 15.
_FTYPES = {"q8_0": 7, "q4_k_m": 15}
_CONVERTER_FILES = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "LICENSE")
_CONVERTER_DIRS = ("conversion", "gguf-py")
# Config keys llama.cpp's converter reads under their old names (GPT-2's n_ctx, now n_positions).
_LEGACY_KEYS = {"gpt2": {"n_ctx": "n_positions"}}
_REGISTER = re.compile(r"@ModelBase\.register\(([^)]*)\)")


@dataclass(frozen=True)
class ExportResult:
    """Where an export went and what it holds."""

    path: Path
    quant: str
    source: Path
    bytes: int


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version.

    Raises:
        ConfigError: llama-cpp-python is not installed.
    """
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            "GGUF export and the llama.cpp backend need llama-cpp-python: `pip install 'slmkit[llama]'` "
            "(it builds from source, about 4 minutes on 2 cores)"
        ) from None


def converter_dir(cache: Path | None = None) -> Path:
    """A folder holding ``convert_hf_to_gguf.py`` and its ``gguf-py``, extracting it on first use.

    Raises:
        SlmkitError: ``$SLMKIT_LLAMA_CPP`` is not a llama.cpp checkout, or the sdist cannot be fetched.
    """
    if explicit := os.environ.get("SLMKIT_LLAMA_CPP"):
        path = Path(explicit).expanduser()
        if not (path / "convert_hf_to_gguf.py").is_file():
            raise SlmkitError(
                f"SLMKIT_LLAMA_CPP={path}: no convert_hf_to_gguf.py there (is it a llama.cpp checkout?)"
            )
        return path
    version = llama_cpp_version()
    target = (cache or cache_dir()) / f"llama.cpp-converter-{version}"
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".converter-", dir=target.parent) as tmp:
        sdist = _download_sdist(version, Path(tmp))
        staged = Path(tmp) / "converter"
        _extract_converter(sdist, staged)
        try:
            staged.rename(target)
        except OSError:
            if not (target / "convert_hf_to_gguf.py").is_file():
                raise
    return target


def _download_sdist(version: str, into: Path) -> Path:
    logger.info("fetching llama.cpp's converter from the llama-cpp-python %s sdist (once)", version)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    command += [f"llama-cpp-python=={version}", "-d", str(into)]
    done = subprocess.run(command, capture_output=True, text=True)
    archives = list(into.glob("llama_cpp_python-*.tar.gz"))
    if done.returncode != 0 or not archives:
        raise SlmkitError(
            f"could not fetch the llama-cpp-python {version} source distribution from PyPI, which holds "
            f"llama.cpp's convert_hf_to_gguf.py ({done.stderr.strip()[-300:]}). Point SLMKIT_LLAMA_CPP at "
            "a llama.cpp checkout instead."
        )
    return archives[0]


def _extract_converter(sdist: Path, into: Path) -> None:
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            # <name>-<version>/vendor/llama.cpp/<what we want>
            if len(parts) < 4 or parts[1:3] != ("vendor", "llama.cpp"):
                continue
            inner = Path(*parts[3:])
            wanted = inner.as_posix() in _CONVERTER_FILES or inner.parts[0] in _CONVERTER_DIRS
            if wanted and member.isfile():
                member.name = inner.as_posix()
                archive.extract(member, into, filter="data")
    if not (into / "convert_hf_to_gguf.py").is_file():
        raise SlmkitError(f"{sdist.name} holds no vendor/llama.cpp/convert_hf_to_gguf.py")


def source_folder(model: str, cache: Path | None = None) -> Path:
    """The local transformers folder ``model`` names (packaged GGUFs come dequantized from the cache,
    LoRA adapter folders merged into their base).

    Raises:
        ModelNotFoundError: unknown model, or a hub id.
    """
    source = resolve_model_path(model, cache)
    if not isinstance(source, Path):
        raise ModelNotFoundError(
            f"'{model}' is a hub id; download it first (`hf download {model} --local-dir DIR`) and export DIR"
        )
    return source


def _cached_export_path(source: Path, quant: str, cache: Path | None) -> Path:
    """Where :func:`export_gguf` keeps the model in ``source`` as ``quant`` when no output is given."""
    weights = sorted(source.glob("*.safetensors")) or sorted(source.glob("*.bin"))
    if not weights:
        raise ModelNotFoundError(f"{source}: no *.safetensors or *.bin weights to export")
    stamp = file_fingerprint(weights[0])
    return (cache or cache_dir()) / "gguf" / f"{source.name}-{stamp}-{quant}.gguf"


def export_gguf(
    model: str, output: Path | None = None, quant: str = "f32", cache: Path | None = None
) -> ExportResult:
    """Convert ``model`` to a GGUF file in ``quant`` (``f32``, ``f16``, ``q8_0`` or ``q4_k_m``).

    ``f32`` is the default because it is the format measured to keep the source's greedy answers
    (docs/serving.md); the smaller ones trade some of that agreement for size.

    Args:
        model: Packaged name, model folder (a fine-tuned run's ``final/``), or ``.gguf`` to re-export.
        output: The file to write; None keeps it in the cache (reused by the llama.cpp backend).
        quant: Target format.

    Raises:
        ConfigError: unknown ``quant``, or llama-cpp-python missing.
        ModelNotFoundError: the model cannot be found or is an unmerged adapter.
        SlmkitError: the converter or quantizer failed (its message is included).
    """
    _check_quant(quant)  # before resolving the model: that may dequantize or merge first
    return export_folder(source_folder(model, cache), output, quant, cache)


def _check_quant(quant: str) -> None:
    if quant not in QUANTS:
        raise ConfigError(f"unknown GGUF format '{quant}'; choose one of {', '.join(QUANTS)}")


def export_folder(
    source: Path, output: Path | None = None, quant: str = "f32", cache: Path | None = None
) -> ExportResult:
    """:func:`export_gguf` for a transformers folder given by path (any architecture the converter
    knows, embedders included); with no ``output`` the file is kept in the cache and reused.

    Raises:
        ConfigError: unknown ``quant``.
        SlmkitError: the converter or quantizer failed (its message is included).
    """
    _check_quant(quant)
    target = Path(output) if output is not None else _cached_export_path(source, quant, cache)
    if output is None and target.is_file():
        return ExportResult(target, quant, source, target.stat().st_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: an interrupted export never leaves a truncated .gguf.
    with tempfile.TemporaryDirectory(prefix=f".{target.stem}.", dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        if quant in ("f32", "f16"):
            _convert(source, staged, quant, cache)
        else:
            # Quantize from full precision: re-quantizing f16 would round twice.
            full = Path(tmp) / "f32.gguf"
            _convert(source, full, "f32", cache)
            _quantize(full, staged, quant)
        staged.replace(target)
    return ExportResult(target, quant, source, target.stat().st_size)


def converter_architectures(converter: Path) -> set[str]:
    """The model classes (``config.json`` ``architectures`` names) llama.cpp's converter registers."""
    names: set[str] = set()
    for script in [converter / "convert_hf_to_gguf.py", *sorted((converter / "conversion").glob("*.py"))]:
        if script.is_file():
            for registered in _REGISTER.findall(script.read_text(encoding="utf-8")):
                names.update(re.findall(r"[\"']([\w.-]+)[\"']", registered))
    return names


def check_convertible(source: Path, converter: Path) -> None:
    """Fail fast, before the converter runs, for a model class llama.cpp's converter does not know.

    Raises:
        SlmkitError: naming the model class and the llama-cpp-python version whose converter lacks it.
    """
    config = source / "config.json"
    architectures = None
    if config.is_file():
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures")
    known = converter_architectures(converter)
    if not architectures or not known or architectures[0] in known:
        return  # nothing to check against: let the converter decide
    raise SlmkitError(
        f"{source}: llama.cpp's converter ({converter.name}) cannot convert {architectures[0]} models to "
        "GGUF (BART and other families it lacks: see docs/model-families.md); serve this model with "
        "the transformers backend instead"
    )


# The converter, run with one change when the weights came from a packaged GGUF: a vocabulary it
# would write as GPT-2-style BPE is written as the SentencePiece vocabulary of the packaged file,
# when that file holds the same tokens. Gemma-3's packaged GGUF is SentencePiece; transformers reads
# it into a fast tokenizer and the converter, finding no tokenizer.model, writes it back as BPE with
# 515k merges. That tokenizes text the same way (tests/models/test_gguf_export.py), but llama.cpp
# loads it in 0.65 s instead of 0.4 s (hashing the merges: a tenth of a fresh `slmkit ask`), and
# BPE decodes the byte-fallback tokens as text (<0x8E> as those six characters, not one byte).
_CONVERT_WITH_PACKAGED_VOCAB = """
import sys
import gguf
import convert_hf_to_gguf
try:
    from conversion.base import TextModel
except ImportError:  # a converter from before it was split into the conversion package
    from convert_hf_to_gguf import TextModel

packaged = sys.argv.pop(1)
as_bpe = TextModel._set_vocab_gpt2


def same_tokens(ours, theirs):
    # The packaged file spells runs of spaces as spaces, the tokenizer as SentencePiece's U+2581.
    spell = lambda t: (t.decode("utf-8", "replace") if isinstance(t, bytes) else t).replace(" ", "\u2581")
    return len(ours) == len(theirs) and all(spell(a) == spell(b) for a, b in zip(ours, theirs))


def set_packaged_vocab(self):
    reader = gguf.GGUFReader(packaged)
    field = lambda key: reader.get_field(key).contents() if reader.get_field(key) is not None else None
    tokens = field("tokenizer.ggml.tokens") or []
    if field("tokenizer.ggml.model") != "llama" or not same_tokens(self.get_vocab_base()[0], tokens):
        return as_bpe(self)
    writer = self.gguf_writer
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre(field("tokenizer.ggml.pre") or "default")
    writer.add_token_list(tokens)
    writer.add_token_scores(field("tokenizer.ggml.scores"))
    writer.add_token_types(field("tokenizer.ggml.token_type"))
    if field("tokenizer.ggml.add_space_prefix") is not None:
        writer.add_add_space_prefix(field("tokenizer.ggml.add_space_prefix"))
    gguf.SpecialVocab(self.dir_model, n_vocab=len(tokens)).add_to_gguf(writer)


TextModel._set_vocab_gpt2 = set_packaged_vocab
convert_hf_to_gguf.main()
"""


def _convert(source: Path, output: Path, outtype: str, cache: Path | None) -> None:
    converter = converter_dir(cache)
    check_convertible(source, converter)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(converter / "gguf-py"), str(converter)]))
    model_dir = _with_legacy_keys(source, output.parent)
    command = [sys.executable, str(converter / "convert_hf_to_gguf.py"), str(model_dir)]
    packaged = source_gguf_of(source, cache)
    if packaged is not None and _may_be_sentencepiece(packaged):
        command[1:2] = ["-c", _CONVERT_WITH_PACKAGED_VOCAB, str(packaged)]
    command += ["--outtype", outtype, "--outfile", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not output.is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        if "pre-tokenizer was not recognized" in done.stderr:
            raise SlmkitError(
                f"llama.cpp's converter does not recognise the tokenizer of {source}: it knows BPE "
                "tokenizers by a hash of their output, and this one (a retrained or modified tokenizer?) "
                "is not in its list. Models that keep their family's original tokenizer convert; or "
                f"serve this one with the transformers backend.\n{tail}"
            )
        raise SlmkitError(f"llama.cpp's convert_hf_to_gguf.py failed on {source}:\n{tail}")


def _may_be_sentencepiece(packaged: Path) -> bool:
    """False when llama.cpp reads ``packaged`` as another kind of vocabulary (SmolLM2's BPE), so the
    converter runs as it is, without the wrapper reading the packaged file with gguf-py's slow reader.
    True when llama-cpp-python is not there to tell (``$SLMKIT_LLAMA_CPP`` exports): the wrapper decides.
    """
    try:
        from slmkit.models.llama_cpp import is_sentencepiece_gguf

        return is_sentencepiece_gguf(packaged)
    except ImportError:
        return True


def _with_legacy_keys(source: Path, scratch: Path) -> Path:
    """``source``, or a view of it (links to its files, beside a completed config.json) in ``scratch``
    when its config lacks a key the converter reads that transformers 5 no longer writes."""
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    wanted = _LEGACY_KEYS.get(config.get("model_type"), {})
    missing = {key: config[new] for key, new in wanted.items() if key not in config and new in config}
    if not missing:
        return source
    view = scratch / f"{source.name}-for-converter"
    view.mkdir()
    for item in source.iterdir():
        if item.name != "config.json":
            (view / item.name).symlink_to(item.resolve())
    (view / "config.json").write_text(json.dumps({**config, **missing}, indent=2), encoding="utf-8")
    return view


# Run in a child process: llama.cpp prints a line per tensor straight to the C-level stdout.
_QUANTIZE = """
import sys, llama_cpp
from slmkit.models.llama_cpp import cpu_threads
params = llama_cpp.llama_model_quantize_default_params()
params.ftype, params.nthread = int(sys.argv[3]), cpu_threads()
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), params))
"""


def _quantize(source: Path, output: Path, quant: str) -> None:
    command = [sys.executable, "-c", _QUANTIZE, str(source), str(output), str(_FTYPES[quant])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not output.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        raise SlmkitError(f"llama.cpp could not quantize {source} to {quant}:\n{tail}")
