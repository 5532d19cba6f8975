"""GGUF export and the llama.cpp backend.

Fast tests cover the converter plumbing and bad input; the slow ones export the real default model,
reload it in llama.cpp and compare greedy answers with transformers on a fixed question set.
"""

from __future__ import annotations

import copy
import io
import json
import tarfile

import pytest

from slmkit.config import GenerationConfig
from slmkit.errors import ConfigError, InputError, ModelNotFoundError, SlmkitError
from slmkit.models import gguf_export
from slmkit.models.gguf_export import converter_dir, export_gguf


def _fake_sdist(path, members: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"llama_cpp_python-9.9.9/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_converter_is_extracted_once_from_the_sdist_with_only_what_it_needs(tmp_path, monkeypatch):
    sdist = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    _fake_sdist(
        sdist,
        {
            "vendor/llama.cpp/convert_hf_to_gguf.py": "# converter",
            "vendor/llama.cpp/conversion/llama.py": "# arch",
            "vendor/llama.cpp/gguf-py/gguf/__init__.py": "# gguf",
            "vendor/llama.cpp/LICENSE": "MIT",
            "vendor/llama.cpp/src/llama.cpp": "// not needed",
            "llama_cpp/llama.py": "# not needed",
        },
    )
    calls = []

    def fake_download(version, into):
        calls.append(version)
        return sdist

    monkeypatch.delenv("SLMKIT_LLAMA_CPP", raising=False)
    monkeypatch.setattr(gguf_export, "llama_cpp_version", lambda: "9.9.9")
    monkeypatch.setattr(gguf_export, "_download_sdist", fake_download)
    folder = converter_dir(tmp_path / "cache")
    assert folder.name == "llama.cpp-converter-9.9.9"
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert found == ["LICENSE", "conversion/llama.py", "convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py"]
    assert converter_dir(tmp_path / "cache") == folder and calls == ["9.9.9"]  # cached after the first


def test_bad_export_requests_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown GGUF format 'q3'.*f32, f16, q8_0, q4_k_m"):
        export_gguf("smollm2-135m-instruct", tmp_path / "x.gguf", "q3")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    with pytest.raises(InputError, match=r"no adapter_model\.safetensors"):
        export_gguf(str(adapter), tmp_path / "x.gguf")
    with pytest.raises(ModelNotFoundError, match="unknown model 'no-such-model'"):
        export_gguf("no-such-model", tmp_path / "x.gguf")
    monkeypatch.setenv("SLMKIT_LLAMA_CPP", str(tmp_path))
    with pytest.raises(SlmkitError, match=r"no convert_hf_to_gguf\.py there"):
        converter_dir()


QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "What is the largest planet in the solar system?",
    "What gas do plants absorb from the air?",
    "How many days are in a leap year?",
    "What is the boiling point of water in Celsius?",
]


@pytest.fixture(scope="module")
def exported(model_cache, tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the llama extra)")
    folder = tmp_path_factory.mktemp("gguf")
    return {
        quant: export_gguf("smollm2-135m-instruct", folder / f"smol-{quant}.gguf", quant, model_cache)
        for quant in ("f16", "q8_0")
    }


@pytest.mark.slow
def test_f16_export_reloads_and_gives_the_same_greedy_answers_as_transformers(exported, smollm):
    from slmkit.models.generation import TransformersGenerator
    from slmkit.models.llama_cpp import LlamaCppGenerator

    config = GenerationConfig(max_new_tokens=24)
    reference = TransformersGenerator(smollm)
    llama = LlamaCppGenerator(exported["f16"].path, "smollm2-f16")
    assert exported["f16"].bytes < 0.35e9  # 135M parameters at 2 bytes each, plus the header
    for question in QUESTIONS:
        messages = [{"role": "user", "content": question}]
        # Same template, same tokens: the prompts are identical, not just similar.
        assert llama.count_tokens(messages) == reference.count_tokens(messages)
        assert llama.generate(messages, config).text == reference.generate(messages, config).text, question


@pytest.mark.slow
def test_q8_0_export_is_smaller_and_predicts_the_sources_next_tokens(exported, smollm):
    """Greedy decoding amplifies one early flip into a different answer, so quantized files are held
    to a per-token tolerance: on the source model's own greedy answers (teacher forcing), the q8_0
    file's top-1 next token must agree at least 90 % of the time (measured: f16 100 %, q8_0 96.1 %,
    q4_k_m 87.5 %; the answer-level EM/F1 per format is in docs/serving.md)."""
    import llama_cpp
    import numpy as np
    import torch

    from slmkit.models.llama_cpp import open_llama

    assert exported["q8_0"].bytes < 0.6 * exported["f16"].bytes
    tokenizer = smollm.tokenizer
    path = str(exported["q8_0"].path)
    llm = open_llama(llama_cpp, model_path=path, n_ctx=512, logits_all=True, verbose=False)
    agree = total = 0
    for question in QUESTIONS:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_dict=True
        )["input_ids"]
        with torch.inference_mode():
            output = smollm.model.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False)
        ids = output[0].tolist()
        llm.reset()
        llm.eval(ids)
        predicted = np.asarray(llm.scores[len(prompt) - 1 : len(ids) - 1]).argmax(-1)
        agree += int((predicted == np.asarray(ids[len(prompt) :])).sum())
        total += len(ids) - len(prompt)
    llm.close()
    assert agree / total >= 0.90, f"q8_0 agrees on {agree}/{total} next tokens"


@pytest.mark.slow
def test_llama_cpp_backend_answers_with_citations_through_the_answerer(exported, squad_kb):
    from slmkit.models.llama_cpp import LlamaCppGenerator
    from slmkit.rag.answer import Answerer
    from slmkit.rag.retrieval import Retriever

    answerer = Answerer(LlamaCppGenerator(exported["f16"].path), Retriever(squad_kb))
    pieces: list[str] = []
    answer = answerer.ask("Which NFL team represented the AFC at Super Bowl 50?", on_text=pieces.append)
    # The answer itself may differ from transformers': over a ~600-token RAG prompt, f16 weights and
    # llama.cpp's f16 activations in the matmuls drift enough to flip a greedy choice (measured per
    # format in docs/serving.md). What must hold is the grounding: a cited answer from the right article.
    assert not answer.abstained and answer.citations
    assert {c.title for c in answer.citations} == {"Super Bowl 50"}
    assert pieces and answer.completion_tokens > 0 and answer.prompt_tokens > 300


@pytest.mark.slow
def test_cli_exports_a_lora_adapter_by_merging_it_first(tmp_path, smollm, exported):
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the llama extra)")
    from peft import LoraConfig, get_peft_model
    from typer.testing import CliRunner

    from slmkit.cli import app
    from slmkit.models.llama_cpp import LlamaCppGenerator

    # A fresh adapter (B = 0) leaves the base unchanged, so the merged export must answer as the base.
    adapter = tmp_path / "adapter"
    base = copy.deepcopy(smollm.model)  # get_peft_model edits its model in place: spare the fixture
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    output = tmp_path / "merged.gguf"
    result = CliRunner().invoke(app, ["export", str(adapter), "--output", str(output), "--quant", "f16"])
    assert result.exit_code == 0, result.output
    assert f"wrote {output}" in result.output
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    config = GenerationConfig(max_new_tokens=16)
    merged = LlamaCppGenerator(output).generate(messages, config).text
    assert merged == LlamaCppGenerator(exported["f16"].path).generate(messages, config).text


def _fake_converter(folder, registered: str):
    (folder / "conversion").mkdir(parents=True)
    (folder / "convert_hf_to_gguf.py").write_text("# the entry point")
    (folder / "conversion" / "models.py").write_text(registered)
    return folder


def test_models_the_converter_does_not_register_are_refused_before_it_runs(tmp_path):
    from slmkit.models.gguf_export import check_convertible, converter_architectures

    converter = _fake_converter(
        tmp_path / "converter",
        '@ModelBase.register("LlamaForCausalLM", "MistralForCausalLM")\nclass A: ...\n'
        '@ModelBase.register(\n    "T5ForConditionalGeneration",\n)\nclass B: ...\n',
    )
    assert converter_architectures(converter) == {
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "T5ForConditionalGeneration",
    }
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["T5ForConditionalGeneration"]}))
    check_convertible(model, converter)  # known: no error
    (model / "config.json").write_text(json.dumps({"architectures": ["BartForConditionalGeneration"]}))
    with pytest.raises(SlmkitError, match=r"cannot convert BartForConditionalGeneration.*transformers"):
        check_convertible(model, converter)


def test_a_gpt2_folder_without_n_ctx_reaches_the_converter_with_it(tmp_path):
    from slmkit.models.gguf_export import _with_legacy_keys

    model = tmp_path / "gpt2"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 512}))
    view = _with_legacy_keys(model, tmp_path)
    assert json.loads((view / "config.json").read_text())["n_ctx"] == 512
    assert (view / "model.safetensors").read_bytes() == b"weights"
    assert json.loads((model / "config.json").read_text()) == {"model_type": "gpt2", "n_positions": 512}
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert _with_legacy_keys(model, tmp_path) == model  # nothing missing: the folder itself


@pytest.mark.slow
def test_gemma_exports_keep_the_packaged_sentencepiece_vocabulary(model_cache, tmp_path):
    """Gemma-3's packaged GGUF is SentencePiece; its export (the shipped reader, merged into that base)
    gets that vocabulary back instead of the 515k-merge BPE the converter would write, and tokenizes
    as transformers does."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the llama extra)")
    from transformers import AutoTokenizer

    from slmkit.data.squad import bundled_squad, load_squad
    from slmkit.models.loading import resolve_model_path

    result = export_gguf("slmkit-reader-270m", tmp_path / "reader.gguf", "f16", model_cache)
    llm = llama_cpp.Llama(str(result.path), vocab_only=True, verbose=False)
    assert llm.metadata["tokenizer.ggml.model"] == "llama"
    reference = AutoTokenizer.from_pretrained(str(resolve_model_path("slmkit-reader-270m", model_cache)))
    paragraphs = [p for article in load_squad(bundled_squad()) for p in article.paragraphs][::10]
    texts = [t for p in paragraphs for t in (p.context, *(q.question for q in p.qas))]
    texts += ["  two leading spaces", "a  b   c\tand\n\nnewlines", "émoji 🤖, 中文, Ελληνικά, ß", "x" * 40]
    for text in texts:
        ours = llm.tokenize(text.encode(), add_bos=False, special=False)
        assert ours == reference(text, add_special_tokens=False)["input_ids"], text
    # A byte-fallback token is its byte (BPE spelt it as the six characters "<0x8E>").
    byte_token = reference.convert_tokens_to_ids("<0x8E>")
    assert llm.detokenize([byte_token]) == b"\x8e"
    llm.close()


def test_only_sentencepiece_packages_run_the_converter_with_their_vocabulary(model_cache):
    """llama.cpp tells the packaged files' vocabularies apart (Gemma-3 SentencePiece, SmolLM2 BPE) in
    the parent process, so a SmolLM2 export runs the converter as it is, without gguf-py's slow read."""
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the llama extra)")
    from slmkit.models.llama_cpp import is_sentencepiece_gguf
    from slmkit.models.registry import PACKAGED_MODELS

    assert is_sentencepiece_gguf(PACKAGED_MODELS["gemma3-270m"].locate(model_cache))
    assert not is_sentencepiece_gguf(PACKAGED_MODELS["smollm2-135m-instruct"].locate(model_cache))
