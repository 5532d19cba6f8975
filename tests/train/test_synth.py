"""``slmkit synth``: a scripted teacher on real chunks (MiniLM knowledge base), and one real teacher run.

The scripted teacher makes each filter deterministic: what it "writes" for a chunk is fixed, so what
synth keeps, drops and writes can be checked exactly.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fakes import ScriptedTeacher
from slmkit.config import SynthConfig, SynthFilterConfig, parse_config
from slmkit.data.prompts import ABSTAIN_ANSWER
from slmkit.data.squad import bundled_squad, load_squad, split_articles, write_squad_paragraphs
from slmkit.data.squad_metrics import normalize_answer
from slmkit.data.tasks import read_task
from slmkit.errors import BackendUnavailableError, ConfigError, KnowledgeBaseError
from slmkit.models.generation import Generation
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.train.synth import (
    ATTEMPTS_FILE,
    FEW_SHOT_EXAMPLES,
    PAIRS_FILE,
    SUMMARY_FILE,
    TRAIN_FILE,
    chunk_order,
    drop_reason,
    format_summary,
    parse_pair,
    strip_restatement,
    synthesize,
)

# Paragraphs of three SQuAD *train* articles; each script key is a phrase of one paragraph.
SCRIPT = {
    # grounded: kept
    "gave their name to Normandy": "Question: In what country is Normandy located?\nAnswer: France",
    "Norman dynasty had a major": "Question: What did the Normans become exponents of?\n"
    "Answer: Catholic orthodoxy",
    # a near-duplicate of the first question, asked about another paragraph: dropped as duplicate
    "rivers of France": "Question: In which country is Normandy located?\nAnswer: France",
    # the planted ungrounded answer: dropped
    "Serbian American inventor": "Question: Where was Nikola Tesla born?\nAnswer: Reykjavik, Iceland",
    # no question at all
    "experience in telephony": "I cannot help with that.",
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder):
    articles = split_articles(load_squad(bundled_squad()), "train")[:3]
    folder = tmp_path_factory.mktemp("synth")
    source = folder / "paragraphs.json"
    write_squad_paragraphs([replace(a, paragraphs=a.paragraphs[:4]) for a in articles], source)
    kb, _ = KnowledgeBase.build(folder / "kb", [source], embedder=embedder, progress=False)
    return kb


def _config(tmp_path: Path, **overrides) -> SynthConfig:
    data = {"kb": "unused", "n": 100, "output_dir": str(tmp_path / "out"), "abstain_share": 0.3, "top_k": 2}
    return parse_config(SynthConfig, {**data, **overrides})


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _chunk_with(kb, phrase: str):
    return next(c for c in kb.chunks if phrase in c.text)


def test_script_keys_each_pick_one_chunk(kb):
    for key in SCRIPT:
        assert sum(key in c.text for c in kb.chunks) == 1, key


def test_grounded_pairs_kept_and_every_drop_has_its_reason(kb, tmp_path):
    result = synthesize(kb, ScriptedTeacher(SCRIPT), _config(tmp_path), progress=False)
    by_chunk = {a.chunk_id: a for a in result.attempts}
    assert len(by_chunk) == len(result.attempts)  # every chunk tried once
    normandy = by_chunk[_chunk_with(kb, "gave their name to Normandy").id]
    tesla = by_chunk[_chunk_with(kb, "Serbian American inventor").id]
    assert tesla.reason == "ungrounded" and not tesla.kept
    assert by_chunk[_chunk_with(kb, "experience in telephony").id].reason == "unparseable"
    kept_questions = [a.question for a in result.kept]
    assert "What did the Normans become exponents of?" in kept_questions
    # Of the two near-identical questions, whichever came first is kept and the other is a duplicate.
    twin = by_chunk[_chunk_with(kb, "rivers of France").id]
    assert {normandy.reason, twin.reason} == {None, "duplicate"}
    for pair in result.kept:  # every kept answer occurs in its own chunk
        assert normalize_answer(pair.answer) in normalize_answer(kb.chunks[pair.chunk_id].text)

    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert summary["kept"] == len(result.kept) == 2 and summary["status"] == "exhausted"
    assert summary["chunks_tried"] == len(result.attempts) == summary["chunks_eligible"]
    assert summary["dropped"]["ungrounded"] == 1 and summary["dropped"]["duplicate"] == 1
    assert summary["dropped_examples"]["ungrounded"][0]["answer"] == "Reykjavik, Iceland"
    assert summary["teacher"] == "scripted-teacher"
    assert "dropped: ungrounded" in format_summary(summary)
    pairs = _lines(tmp_path / "out" / PAIRS_FILE)
    assert {p["question"] for p in pairs} == set(kept_questions)
    assert {"question", "answer", "chunk_id", "source", "title", "position"} <= set(pairs[0])


def test_training_file_is_raft_style_and_read_by_the_chat_reader(kb, tmp_path):
    script = {
        c.text[:40]: f"Question: What does passage {c.id} talk about here?\nAnswer: {c.text.split()[3]}"
        for c in kb.chunks
    }
    # Distinct questions that the duplicate filter lets through: the chunk's first words differ.
    script = {k: v.replace("passage", " ".join(k.split()[:3])) for k, v in script.items()}
    config = _config(tmp_path, abstain_share=0.4, filters={"duplicate_similarity": 0.999})
    result = synthesize(kb, ScriptedTeacher(script), config, progress=False)
    assert len(result.kept) >= 6
    examples = read_task(tmp_path / "out" / TRAIN_FILE, "chat")
    records = _lines(tmp_path / "out" / TRAIN_FILE)
    assert len(examples) == len(records) == len(result.kept)
    targets = [e.messages[-1]["content"] for e in examples]
    assert ABSTAIN_ANSWER in targets and any(t != ABSTAIN_ANSWER for t in targets)
    for record, example in zip(records, examples, strict=True):
        prompt = example.messages[-2]["content"]
        gold = kb.chunks[record["chunk_id"]]
        assert prompt.startswith("Context:\n[1] ") and "\n\n[2] " in prompt  # gold or distractors: 2 passages
        if record["kind"] == "abstain":
            assert gold.text not in prompt and example.messages[-1]["content"] == ABSTAIN_ANSWER
        else:
            assert gold.text in prompt
    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert summary["abstention_examples"] == sum(r["kind"] == "abstain" for r in records) > 0


def test_rerun_resumes_after_the_chunks_already_tried(kb, tmp_path):
    first = ScriptedTeacher(SCRIPT)
    synthesize(kb, first, _config(tmp_path, n=1), progress=False)
    attempts = _lines(tmp_path / "out" / ATTEMPTS_FILE)
    assert sum(a["kept"] for a in attempts) == 1
    second = ScriptedTeacher(SCRIPT)
    result = synthesize(kb, second, _config(tmp_path, n=2), progress=False)
    assert len(result.kept) == 2
    assert len(second.seen) == len(result.attempts) - len(attempts)  # tried chunks are not asked again
    ids = [a.chunk_id for a in result.attempts]
    assert len(ids) == len(set(ids))
    # Asking for no more than is kept writes the outputs without calling the teacher.
    third = ScriptedTeacher(SCRIPT)
    assert len(synthesize(kb, third, _config(tmp_path, n=2), progress=False).kept) == 2 and not third.seen


def test_an_interrupted_last_line_is_dropped_on_resume(kb, tmp_path):
    synthesize(kb, ScriptedTeacher(SCRIPT), _config(tmp_path, n=1), progress=False)
    log = tmp_path / "out" / ATTEMPTS_FILE
    complete = log.read_text()
    log.write_text(complete + '{"chunk_id": 3, "chun')
    synthesize(kb, ScriptedTeacher(SCRIPT), _config(tmp_path, n=1), progress=False)
    assert log.read_text() == complete


def test_dead_teacher_keeps_pairs_and_says_how_to_resume(kb, tmp_path):
    order = chunk_order(kb.chunks, seed=0, min_words=25)
    # The teacher answers the first chunks, then its server goes away.
    script = {
        c.text[:40]: f"Question: What is said about {c.id} in these words?\nAnswer: {c.text.split()[2]}"
        for c in order[:3]
    }
    script.update({c.text[:40]: BackendUnavailableError("connection refused") for c in order[3:]})
    with pytest.raises(BackendUnavailableError) as err:
        synthesize(kb, ScriptedTeacher(script), _config(tmp_path), progress=False)
    message = str(err.value)
    assert "Kept 3 pairs" in message and str(tmp_path / "out" / ATTEMPTS_FILE) in message
    assert "resume" in message and "connection refused" in message
    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert summary["status"] == "partial" and summary["kept"] == 3
    assert len(_lines(tmp_path / "out" / PAIRS_FILE)) == 3


def test_empty_or_missing_knowledge_base_is_a_clear_error(kb, tmp_path):
    empty = KnowledgeBase(tmp_path / "empty-kb", kb.manifest, [], kb.dense, kb.lexical, kb._embedder)
    with pytest.raises(KnowledgeBaseError, match=r"empty-kb.*holds no chunks"):
        synthesize(empty, ScriptedTeacher({}), _config(tmp_path), progress=False)
    from slmkit.train.synth import open_kb

    with pytest.raises(KnowledgeBaseError, match="nowhere"):
        open_kb(_config(tmp_path, kb=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="'n'"):
        _config(tmp_path, n=0)


def test_chunk_order_is_seeded_and_spreads_over_documents(kb):
    order = chunk_order(kb.chunks, seed=0)
    assert sorted(c.id for c in order) == [c.id for c in kb.chunks]
    assert [c.id for c in chunk_order(kb.chunks, seed=0)] == [c.id for c in order]
    assert len({c.title for c in order[:3]}) == 3  # three articles before any repeats


@pytest.mark.parametrize(
    ("reply", "pair"),
    [
        ("Question: Who won?\nAnswer: Denver Broncos.", ("Who won?", "Denver Broncos")),
        ("Q: Who won? A: the Broncos", ("Who won?", "the Broncos")),
        ('**Question:** Who won?\n**Answer:** "Broncos" [1]', ("Who won?", "Broncos")),
        (
            "Who won the game? Answer: Broncos\n\nQuestion: Who lost? Answer: Panthers",
            ("Who won the game?", "Broncos"),
        ),
        ("What is the capital of France?", ("What is the capital of France?", "")),
        ("", ("", "")),
    ],
)
def test_parse_pair_reads_the_forms_small_models_write(reply, pair):
    assert parse_pair(reply) == pair


def test_a_question_without_answer_is_answered_by_the_teacher_from_its_chunk(kb, tmp_path):
    class AsksOnly(ScriptedTeacher):
        def generate(self, messages, config, on_text=None):
            if messages[-1]["content"].startswith("Context:"):  # the QA prompt: the teacher answers
                self.seen.append(messages[-1]["content"])
                return Generation("It was France.", 10, 3, 0.01, 0.0)
            return super().generate(messages, config, on_text)

    teacher = AsksOnly({"gave their name to Normandy": "In what country is the region of Normandy?"})
    result = synthesize(kb, teacher, _config(tmp_path, n=1), progress=False)
    pair = next(a for a in result.attempts if a.kept)
    assert (pair.question, pair.answer, pair.teacher_calls) == (
        "In what country is the region of Normandy?",
        "France",
        2,
    )
    assert "[answer] It was France." in pair.raw
    passage = _chunk_with(kb, "gave their name to Normandy").text
    assert any(passage in prompt and "Question: In what country" in prompt for prompt in teacher.seen)


def test_a_base_teacher_continues_worked_examples_one_line_at_a_time(kb, tmp_path):
    """A teacher without a chat template gets the few-shot completion prompt: question, then answer."""

    class BaseTeacher(ScriptedTeacher):
        has_chat_template = False

        def generate(self, messages, config, on_text=None):
            prompt = messages[-1]["content"]
            self.seen.append(prompt)
            if prompt.endswith("Answer:"):
                return Generation(" France\nPassage: the next one", 10, 3, 0.01, 0.0)
            reply = " In what country is Normandy located?\nAnswer: Paris" if "Normandy" in prompt else "?"
            return Generation(reply, 10, 8, 0.01, 0.0)

    teacher = BaseTeacher({})
    result = synthesize(kb, teacher, _config(tmp_path, n=1), progress=False)
    pair = next(a for a in result.attempts if a.kept)
    assert (pair.question, pair.answer, pair.teacher_calls) == (
        "In what country is Normandy located?",
        "France",
        2,
    )
    assert result.summary["prompt"] == "few_shot"
    passage = _chunk_with(kb, "gave their name to Normandy").text
    asked, answered = [p for p in teacher.seen if passage in p][:2]
    example_question = FEW_SHOT_EXAMPLES[0][2]
    assert asked.startswith("Passage: ") and f"Question: {example_question}\n" in asked
    assert asked.endswith(f"{passage}\nQuestion:")
    assert answered.endswith(f"{passage}\nQuestion: In what country is Normandy located?\nAnswer:")
    # An instruct teacher told to use the few-shot prompt gets it too; auto picks instruct for it.
    chat = ScriptedTeacher({})
    synthesize(kb, chat, _config(tmp_path / "chat", n=1, max_chunks=1), progress=False)
    assert "Question:" not in chat.seen[0]
    chat = ScriptedTeacher({})
    synthesize(kb, chat, _config(tmp_path / "forced", n=1, max_chunks=1, prompt="few_shot"), progress=False)
    assert chat.seen[0].startswith("Passage: ") and chat.seen[0].endswith("\nQuestion:")


@pytest.mark.parametrize(
    ("answer", "question", "stripped"),
    [
        ("The Broncos won Super Bowl 50", "Who won Super Bowl 50?", "Broncos"),
        ("The comb plate is used for swimming", "What is the comb plate for?", "used for swimming"),
        ("Denver Broncos", "Who won Super Bowl 50?", "Denver Broncos"),
        ("Super Bowl 50", "Was it Super Bowl 50?", "Super Bowl 50"),  # all restatement: unchanged
    ],
)
def test_strip_restatement(answer, question, stripped):
    assert strip_restatement(answer, question) == stripped


def test_filters():
    filters = SynthFilterConfig()
    chunk = "The Denver Broncos defeated the Carolina Panthers 24-10 in Super Bowl 50."
    assert drop_reason("Who won Super Bowl 50 then?", "Denver Broncos", chunk, filters) is None
    assert drop_reason("Who won Super Bowl 50 then?", "the denver broncos.", chunk, filters) is None
    assert drop_reason("Who won?", "Denver Broncos", chunk, filters) == "question_too_short"
    assert drop_reason("Tell me who won Super Bowl 50", "Broncos", chunk, filters) == "not_a_question"
    assert drop_reason("Did the Denver Broncos win the game?", "Denver Broncos", chunk, filters) == (
        "answer_in_question"
    )
    assert drop_reason("Who won Super Bowl 50 then?", "Seattle", chunk, filters) == "ungrounded"
    assert drop_reason("Who won Super Bowl 50 then?", "Den", chunk, filters) == "ungrounded"  # whole words
    assert drop_reason("What is the passage about?", "Super Bowl 50", chunk, filters) == "about_the_text"
    long = "the Denver Broncos defeated the Carolina Panthers 24-10 in Super Bowl 50 at home"
    assert drop_reason("Who won Super Bowl 50 then?", long, chunk, filters) == "answer_too_long"
    # Grounding by support lets a paraphrase through that span grounding drops.
    support = SynthFilterConfig(grounding="support", min_support=1.0)
    assert drop_reason("Who won Super Bowl 50 then?", "Broncos of Denver", chunk, filters) == "ungrounded"
    assert drop_reason("Who won Super Bowl 50 then?", "Broncos of Denver", chunk, support) is None


@pytest.mark.slow
def test_real_teacher_writes_grounded_pairs(kb, tmp_path, smollm):
    """The packaged SmolLM2 as teacher on five chunks: whatever it keeps is grounded and well formed."""
    from slmkit.models.generation import TransformersGenerator

    result = synthesize(
        kb, TransformersGenerator(smollm), _config(tmp_path, n=5, max_chunks=5), progress=False
    )
    summary = result.summary
    assert summary["chunks_tried"] == 5 and summary["teacher"] == "smollm2-135m-instruct"
    assert summary["kept"] + sum(summary["dropped"].values()) == 5
    for pair in result.kept:
        assert pair.question.endswith("?")
        assert normalize_answer(pair.answer) in normalize_answer(kb.chunks[pair.chunk_id].text)
    if result.kept:
        assert len(read_task(tmp_path / "out" / TRAIN_FILE, "chat")) == len(result.kept)


@pytest.mark.slow
def test_real_base_model_teacher_writes_questions_with_the_few_shot_prompt(kb, tmp_path, model_cache):
    """The packaged Gemma-3-270M base model as teacher: auto picks the few-shot prompt, the model
    writes one question line per chunk and answers it; whatever is kept is grounded."""
    from slmkit.models.generation import TransformersGenerator
    from slmkit.models.loading import load_causal_lm

    teacher = TransformersGenerator(load_causal_lm("gemma3-270m", cache=model_cache))
    result = synthesize(kb, teacher, _config(tmp_path, n=6, max_chunks=6), progress=False)
    assert result.summary["prompt"] == "few_shot" and result.summary["chunks_tried"] == 6
    questions = [a.question for a in result.attempts]
    assert sum(q.endswith("?") and "\n" not in q for q in questions) >= 5, questions
    assert all(a.teacher_calls == 2 for a in result.attempts if a.question.endswith("?"))
    for pair in result.kept:
        assert normalize_answer(pair.answer) in normalize_answer(kb.chunks[pair.chunk_id].text)


# ---- the command line ---------------------------------------------------------------------------


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from slmkit.cli import main

    monkeypatch.setattr("sys.argv", ["slmkit", "synth", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err + captured.out


def test_cli_prints_the_summary_table(kb, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("slmkit.models.backends.load_generator", lambda *a, **k: ScriptedTeacher(SCRIPT))
    recipe = tmp_path / "synth.yaml"
    recipe.write_text("synth:\n  n: 50\n  top_k: 2\n  filters:\n    max_answer_words: 8\n", encoding="utf-8")
    out = tmp_path / "out"
    code, printed = _cli(monkeypatch, capsys, str(recipe), "--kb", str(kb.path), "-o", str(out))
    assert code == 0
    assert "| kept" in printed and "dropped: ungrounded" in printed and str(out / TRAIN_FILE) in printed
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["config"]["filters"]["max_answer_words"] == 8 and summary["kept"] == 2


def test_cli_with_a_dead_teacher_endpoint_says_how_to_resume(kb, tmp_path, monkeypatch, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recipe = tmp_path / "synth.yaml"
    recipe.write_text("synth:\n  backend:\n    max_retries: 0\n    timeout_s: 5\n", encoding="utf-8")
    out = tmp_path / "out"
    code, output = _cli(
        monkeypatch, capsys, str(recipe), "--kb", str(kb.path), "--teacher", "remote-model",
        "--teacher-url", f"http://127.0.0.1:{port}/v1", "--n", "3", "-o", str(out),
    )  # fmt: skip
    assert code == 2 and "\nerror: the teacher 'remote-model'" in output and "Traceback" not in output
    assert "Kept 0 pairs" in output and "resume" in output and str(out / ATTEMPTS_FILE) in output
    assert json.loads((out / SUMMARY_FILE).read_text())["status"] == "partial"


def test_cli_errors_name_the_missing_folder_and_bad_n(tmp_path, monkeypatch, capsys):
    code, output = _cli(monkeypatch, capsys, "--kb", str(tmp_path / "no-kb"), "-o", str(tmp_path / "o"))
    assert code == 2 and "no-kb" in output and "slmkit index build" in output
    code, output = _cli(monkeypatch, capsys, "--kb", str(tmp_path), "--n", "0")
    assert code == 2 and "'n'" in output
    code, output = _cli(monkeypatch, capsys, "-o", str(tmp_path / "o"))
    assert code == 2 and "--kb" in output
