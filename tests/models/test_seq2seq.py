"""Encoder-decoders (BART, T5): targets and batches, generation, answers with citations, serving.

The models are tiny random ones (tests/families.py); the RAG tests first teach BART the four
questions of tests/assets/squad_tiny.json (a few seconds), so its answers are real spans.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slmkit.config import AskConfig, EvalConfig, GenerationConfig, RetrievalConfig, TrainConfig, parse_config
from slmkit.data.prompts import Passage, qa_messages, reader_messages
from slmkit.errors import ConfigError, ModelNotFoundError
from slmkit.models.backends import load_generator, transformers_generator
from slmkit.models.loading import load_causal_lm
from slmkit.models.seq2seq import Seq2SeqGenerator, decoder_prefix
from slmkit.train.batching import collate
from slmkit.train.tokenize import IGNORE, tokenize_example

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SQUAD_TINY = ASSETS / "squad_tiny.json"
MESSAGES = [
    *qa_messages("Who won?", [Passage("SB", "Denver won.")]),
    {"role": "assistant", "content": "Denver"},
]


@pytest.mark.parametrize(("family", "framing"), [("bart", ("<s>", "</s>")), ("t5", ("", "</s>"))])
def test_the_answer_is_the_decoder_target_framed_as_the_tokenizer_frames_targets(family, framing, tiny_model):
    loaded = load_causal_lm(str(tiny_model(family)))
    tokenizer = loaded.tokenizer
    example, truncated = tokenize_example(MESSAGES, tokenizer, 512, encoder_decoder=True)
    assert not truncated
    assert tokenizer.decode(example.labels) == f"{framing[0]}Denver{framing[1]}"
    # The encoder reads the plain layout (whitespace compared loosely: T5 reads newlines as spaces).
    encoder_text = " ".join(tokenizer.decode(example.input_ids, skip_special_tokens=True).split())
    assert "Denver won." in encoder_text and encoder_text.endswith("Question: Who won? Answer:")
    # The decoder starts where every target starts, so the first generated token is the answer's.
    prefix = decoder_prefix(loaded.model, tokenizer)
    assert prefix[0] == loaded.model.config.decoder_start_token_id
    assert example.labels[: len(prefix) - 1] == prefix[1:]


def test_encoder_inputs_and_decoder_targets_are_padded_apart(tiny_model):
    tokenizer = load_causal_lm(str(tiny_model("t5"))).tokenizer
    short, _ = tokenize_example(MESSAGES, tokenizer, 512, encoder_decoder=True)
    long_messages = [*MESSAGES[:-1], {"role": "assistant", "content": "the Denver Broncos of Colorado"}]
    long, _ = tokenize_example(long_messages, tokenizer, 512, encoder_decoder=True)
    batch = collate([short, long], tokenizer.pad_token_id, encoder_decoder=True)
    assert batch["input_ids"].shape[1] == max(len(short), len(long))
    assert batch["labels"].shape == (2, len(long.labels))
    assert batch["labels"][0, len(short.labels) :].eq(IGNORE).all()


def test_no_answer_probability_is_end_of_sequence_as_the_first_answer_token(tiny_model):
    generator = transformers_generator(load_causal_lm(str(tiny_model("bart"))))
    assert isinstance(generator, Seq2SeqGenerator)
    prompt = reader_messages("Who won?", Passage("SB", "Denver won."))
    [probability] = generator.no_answer_probabilities([prompt])
    model, tokenizer = generator.loaded.model, generator.loaded.tokenizer
    inputs = generator._encode(prompt)
    with torch.no_grad():
        logits = model(**inputs, decoder_input_ids=torch.tensor([generator.prefix])).logits[0, -1]
    assert probability == pytest.approx(float(torch.softmax(logits, -1)[tokenizer.eos_token_id]), rel=1e-5)
    generation = generator.generate(prompt, GenerationConfig(max_new_tokens=5), spans=["Denver won."])
    assert generation.text in "Denver won." and generation.prompt_tokens == generator.count_tokens(prompt)


def test_seq2seq_hub_ids_fail_fast_offline_with_how_to_get_the_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=r"bart-large-xsum.*offline.*hf download.*--model DIR"):
        load_causal_lm("facebook/bart-large-xsum")


def test_llama_cpp_backend_refuses_an_encoder_decoder(tiny_model):
    with pytest.raises(ConfigError, match=r"encoder-decoder.*backend 'transformers'"):
        load_generator(str(tiny_model("t5")), "llama.cpp")


def test_perplexity_of_an_encoder_decoder_is_refused(tiny_model, tmp_path):
    from slmkit.eval.runner import run_eval

    text = tmp_path / "text.txt"
    text.write_text("Super Bowl 50 was an American football game.\n")
    model = str(tiny_model("t5"))
    config = EvalConfig(model=model, device="cpu", data={"path": str(text)}, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="perplexity needs a causal LM"):
        run_eval(config, progress=False)


# -- RAG and serving with a BART that has learnt the tiny SQuAD set ---------------------------------


@pytest.fixture(scope="module")
def bart_reader(tiny_model, tmp_path_factory):
    """Tiny BART fully fine-tuned (60 steps, ~5 s) on squad_tiny: answer as target, passage + question in."""
    from slmkit.train.run import finetune

    output = tmp_path_factory.mktemp("bart-squad")
    config = parse_config(
        TrainConfig,
        {
            "model": str(tiny_model("bart")),
            "method": "full",
            "device": "cpu",
            "output_dir": str(output),
            "bf16": False,
            "eval_every": 1000,
            "save_every": 1000,
            # Validation on the training questions: the point is a model that knows them.
            "data": {"task": "squad", "path": str(SQUAD_TINY), "split": "all", "val_path": str(SQUAD_TINY)},
            "optim": {"lr": 3e-3, "batch_size": 4, "max_steps": 60, "warmup_ratio": 0.0},
        },
        "test",
    )
    result = finetune(config)
    assert result["finished"]
    return load_causal_lm(result["model_dir"])


def _answerer(bart_reader, tiny_kb, **ask):
    from slmkit.rag.answer import Answerer
    from slmkit.rag.retrieval import Retriever

    config = AskConfig(generation=GenerationConfig(max_new_tokens=12), **ask)
    return Answerer(transformers_generator(bart_reader), Retriever(tiny_kb, config.retrieval), config)


@pytest.mark.slow
def test_seq2seq_rag_answer_cites_the_passage_it_comes_from(bart_reader, tiny_kb):
    answer = _answerer(bart_reader, tiny_kb, retrieval=RetrievalConfig(top_k=1)).ask("Who won Super Bowl 50?")
    assert not answer.abstained, answer.reason
    assert answer.raw_text == "Denver Broncos"
    assert answer.text == "Denver Broncos [1]"
    [citation] = answer.citations
    assert citation.title == "Super Bowl 50" and "Denver Broncos" in answer.hits[0].chunk.text


@pytest.mark.slow
def test_seq2seq_per_passage_reading_scores_every_passage_and_answers_with_a_span(bart_reader, tiny_kb):
    answerer = _answerer(bart_reader, tiny_kb, reading="per-passage", sure_below=0.0)
    answer = answerer.ask("Who won Super Bowl 50?")
    assert len(answer.no_answer) == len(answer.hits) == 3
    assert all(0.0 < p < 1.0 for p in answer.no_answer)
    assert not answer.abstained and answer.citations
    # Grounded decoding (on for per-passage reading): the answer is a verbatim span of a passage.
    assert any(answer.raw_text in hit.chunk.text for hit in answer.hits)


@pytest.mark.slow
def test_seq2seq_gates_abstain_as_for_any_model(bart_reader, tiny_kb):
    question = "What is the recommended tire pressure for a Toyota Corolla?"
    answer = _answerer(bart_reader, tiny_kb).ask(question)
    assert answer.abstained and answer.completion_tokens == 0  # refused before generating


@pytest.mark.slow
def test_seq2seq_model_is_served_over_http_with_citations(bart_reader, tiny_kb):
    from fastapi.testclient import TestClient

    from slmkit.serve.api import ServerLimits, create_app

    answerer = _answerer(bart_reader, tiny_kb, retrieval=RetrievalConfig(top_k=1))
    client = TestClient(create_app(answerer, "tiny-bart", ServerLimits()))
    body = client.post("/ask", json={"question": "Who won Super Bowl 50?"}).json()
    assert body["answer"] == "Denver Broncos [1]" and body["citations"][0]["title"] == "Super Bowl 50"
    chat = {"model": "tiny-bart", "messages": [{"role": "user", "content": "Who won Super Bowl 50?"}]}
    reply = client.post("/v1/chat/completions", json=chat).json()
    assert reply["choices"][0]["message"]["content"].startswith("Denver Broncos")
