"""The command line: each verb on real (small) inputs, and clean errors for bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slmkit.cli import app, main

ASSETS = Path(__file__).resolve().parent / "assets"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run through main(), which turns user errors into one line and exit status 2."""
    monkeypatch.setattr("sys.argv", ["slmkit", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err + captured.out


@pytest.fixture(scope="module")
def built_kb(tmp_path_factory):
    kb = tmp_path_factory.mktemp("cli") / "kb"
    result = run(
        "index", "build", str(ASSETS / "squad_tiny.json"), str(ASSETS / "sample.md"), "--kb", str(kb)
    )
    assert result.exit_code == 0, result.output
    assert "chunks" in result.output
    return kb


def test_index_info_json(built_kb):
    result = run("index", "info", "--kb", str(built_kb), "--json")
    info = json.loads(result.stdout)
    assert info["chunks"] > 0 and info["embedder"] == "all-minilm-l6-v2" and info["sources"] == 2


def test_index_add_reports_duplicates(built_kb):
    result = run("index", "add", str(ASSETS / "sample.md"), "--kb", str(built_kb))
    assert result.exit_code == 0
    assert (
        "added to" in result.output and "0 chunks" in result.output and "duplicates skipped" in result.output
    )


def test_missing_source_is_one_clear_line(monkeypatch, capsys, tmp_path):
    code, output = run_main(
        monkeypatch, capsys, "index", "build", str(tmp_path / "nope.txt"), "--kb", str(tmp_path / "kb")
    )
    assert code == 2
    assert output.startswith("error:") and "nope.txt" in output and "Traceback" not in output


def test_unknown_model_lists_known_ones(monkeypatch, capsys, built_kb):
    code, output = run_main(monkeypatch, capsys, "ask", "Who?", "--kb", str(built_kb), "--model", "gpt-17")
    assert code == 2 and "gpt-17" in output and "smollm2-135m-instruct" in output


def test_missing_knowledge_base_is_one_clear_line_while_the_model_loads_beside_it(
    monkeypatch, capsys, tmp_path
):
    # Answerer.load opens the knowledge base while the default model loads on another thread.
    code, output = run_main(monkeypatch, capsys, "ask", "Who?", "--kb", str(tmp_path / "no-kb"))
    assert code == 2
    assert output.startswith("error:") and "no-kb" in output and "Traceback" not in output


def test_unknown_recipe_key_lists_valid_keys(monkeypatch, capsys, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("ask:\n  retrieval:\n    topk: 3\n", encoding="utf-8")
    code, output = run_main(monkeypatch, capsys, "ask", "Who?", "--no-rag", "--config", str(recipe))
    assert code == 2 and "recipe.yaml" in output and "topk" in output and "top_k" in output


def test_ask_needs_a_kb_or_no_rag(monkeypatch, capsys):
    code, output = run_main(monkeypatch, capsys, "ask", "Who?")
    assert code == 2 and "--kb" in output and "--no-rag" in output


def test_models_lists_packaged_models():
    result = run("models")
    for name in ("smollm2-135m-instruct", "gemma3-270m", "all-minilm-l6-v2"):
        assert name in result.output


@pytest.mark.slow
def test_ask_json_on_the_real_default_model(built_kb):
    result = run(
        "ask", "Which NFL team represented the AFC at Super Bowl 50?", "--kb", str(built_kb), "--json"
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert set(answer) >= {"answer", "citations", "abstained", "timings"}
    assert isinstance(answer["abstained"], bool) and answer["timings"]["total"] > 0
    if not answer["abstained"]:
        assert answer["citations"] and {"title", "source", "chunk_id", "score"} <= set(answer["citations"][0])


@pytest.mark.slow
def test_ask_no_rag_answers_closed_book(built_kb):
    result = run("ask", "What is the capital of France?", "--no-rag", "--json", "--max-new-tokens", "16")
    answer = json.loads(result.stdout)
    assert answer["citations"] == [] and answer["retrieved"] == [] and answer["answer"]


@pytest.mark.slow
def test_chat_streams_keeps_history_and_shows_sources(built_kb, monkeypatch):
    from slmkit.config import AbstentionConfig, AskConfig
    from slmkit.rag.answer import Answerer
    from slmkit.serve.chat import run_chat

    # Streaming is under test, not the reader's confidence gate (tests/models/test_reader.py).
    answerer = Answerer.load(built_kb, AskConfig(abstention=AbstentionConfig(max_no_answer=1.0)))
    inputs = iter(["Which NFL team represented the AFC at Super Bowl 50?", "/sources", "/quit"])
    lines: list[str] = []
    streamed: list[str] = []
    run_chat(answerer, read=lambda prompt: next(inputs), write=lines.append, stream=streamed.append)
    assert "".join(streamed).startswith("bot> ") and len(streamed) > 2  # token-by-token, not one block
    assert any(line.startswith("[1] ") for line in "\n".join(lines).splitlines())  # /sources output


def test_train_overrides_set_nested_keys_and_keep_the_recipes_others():
    from slmkit.cli import _apply_overrides
    from slmkit.errors import SlmkitError

    recipe = {"optim": {"lr": 2e-4, "batch_size": 8}, "method": "lora"}
    data = _apply_overrides(recipe, ["--optim.max-steps", "20", "--method", "full", "--data.task", "chat"])
    assert data == {
        "optim": {"lr": 2e-4, "batch_size": 8, "max_steps": 20},
        "method": "full",
        "data": {"task": "chat"},
    }
    with pytest.raises(SlmkitError, match="pairs"):
        _apply_overrides({}, ["--optim.lr"])


def test_an_override_to_null_lifts_the_recipes_value():
    """'--max_questions null' once left the recipe's cap in place without a word."""
    from slmkit.cli import _apply_overrides, _merged

    assert _apply_overrides({"max_questions": 6000}, ["--max_questions", "null"]) == {"max_questions": None}
    # An optional flag not given (None) still leaves the recipe's value.
    assert _merged(None, "ask", {"top_k": "retrieval.top_k"}, {"top_k": None}) == {}


def test_merge_of_a_folder_without_adapters_is_one_clear_line(monkeypatch, capsys, tmp_path):
    code, output = run_main(monkeypatch, capsys, "merge", str(tmp_path), "--output", str(tmp_path / "m"))
    assert code == 2 and "not a LoRA adapter folder" in output and "adapter_config.json" in output


def test_backend_flags_reach_the_config_and_bad_ones_are_one_clear_line(monkeypatch, capsys):
    code, output = run_main(monkeypatch, capsys, "ask", "q", "--no-rag", "--backend", "openai")
    assert code == 2 and "needs the server's URL" in output and "Traceback" not in output
    code, output = run_main(monkeypatch, capsys, "ask", "q", "--no-rag", "--backend", "vllm")
    assert code == 2 and "backend.type" in output and "transformers" in output


def test_export_rejects_an_unknown_format_or_quant(monkeypatch, capsys, tmp_path):
    export = ("export", "smollm2-135m-instruct", "-o", str(tmp_path / "m.gguf"))
    code, output = run_main(monkeypatch, capsys, *export, "--format", "onnx")
    assert code == 2 and "unknown export format 'onnx'" in output
    code, output = run_main(monkeypatch, capsys, *export, "--quant", "q2")
    assert code == 2 and "unknown GGUF format 'q2'" in output
