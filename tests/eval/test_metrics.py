"""The metric registry on hand-checked predictions (SQuAD normalisation itself: test_squad_metrics.py)."""

from __future__ import annotations

import itertools

import pytest

from slmkit.errors import ConfigError, InputError
from slmkit.eval.metrics import (
    METRIC_NAMES,
    SUPPORT_THRESHOLD,
    compute_metrics,
    gold_rank,
    reference_streams,
)
from slmkit.eval.predictions import Prediction

EINSTEIN = "Albert Einstein was born in Ulm, in the Kingdom of Württemberg, in 1879."


_IDS = itertools.count(1)


def answer(prediction: str, *references: str, question: str = "?", **fields) -> Prediction:
    """A prediction with a fresh id; other fields as given."""
    return Prediction(f"q{next(_IDS)}", question, prediction, references, **fields)


def scored(name: str, predictions: list[Prediction], **options):
    return compute_metrics([name], predictions, **options)[name]


# --- registry ----------------------------------------------------------------------------------


def test_unknown_metric_lists_the_known_names():
    with pytest.raises(ConfigError) as err:
        compute_metrics(["squad", "meteor"], [answer("x", "x")])
    message = str(err.value)
    assert "meteor" in message
    assert all(name in message for name in METRIC_NAMES)


def test_results_come_back_in_the_order_asked():
    results = compute_metrics(["rouge", "squad"], [answer("Denver Broncos", "Denver Broncos")])
    assert list(results) == ["rouge", "squad"]
    assert results["squad"].name == "squad"


def test_score_keys_do_not_collide_so_results_can_be_merged_flat():
    rich = answer("C", "C", contexts=(EINSTEIN,), gold_context=EINSTEIN, latency_s=1.0, choices={"C": "Ulm"})
    names = [n for n in METRIC_NAMES if n not in ("bertscore", "cosine")]  # those load models
    keys = [key for result in compute_metrics(names, [rich]).values() for key in result.scores]
    keys += ["bertscore_precision", "bertscore_recall", "bertscore_f1", "cosine"]
    shared = [key for key in keys if key != "n_scored"]
    assert len(shared) == len(set(shared))


def test_no_predictions_is_an_input_error():
    with pytest.raises(InputError, match="no predictions"):
        compute_metrics(["squad"], [])


@pytest.mark.parametrize(
    ("name", "field", "prediction"),
    [
        ("rouge", "references", answer("x")),
        ("squad", "references", answer("x", "x", answerable=False)),  # unanswerable ones are not graded
        ("accuracy", "choices", answer("C", "C")),
        ("faithfulness", "contexts", answer("Ulm", "Ulm")),
        ("retrieval", "gold_context", answer("Ulm", "Ulm", contexts=(EINSTEIN,))),
        ("retrieval", "contexts", answer("Ulm", "Ulm", gold_context=EINSTEIN)),
        ("latency", "latency_s", answer("Ulm", "Ulm")),
    ],
)
def test_missing_field_is_named(name, field, prediction):
    with pytest.raises(InputError) as err:
        compute_metrics([name], [prediction])
    assert str(err.value) == f"metric '{name}' needs field '{field}', but no prediction has one"


# --- squad -------------------------------------------------------------------------------------


def test_squad_aggregates_abstained_as_wrong_and_skips_unanswerable():
    predictions = [
        answer("Denver Broncos", "Denver Broncos", "Broncos"),  # EM 100, F1 100
        answer("Denver Broncos won", "Denver Broncos"),  # EM 0, F1 80 (P 2/3, R 1)
        answer("Denver Broncos", "Denver Broncos", abstained=True),  # right text, but it abstained
        answer("Paris", answerable=False),  # no reference: not graded
    ]
    result = scored("squad", predictions)
    assert result.per_example["exact_match"] == [100.0, 0.0, 0.0, None]
    assert result.per_example["f1"] == pytest.approx([100.0, 80.0, 0.0, None])
    assert result.scores["exact_match"] == pytest.approx(100 / 3)
    assert result.scores["f1"] == pytest.approx(60.0)
    assert result.scores["n_scored"] == 3


# --- rouge -------------------------------------------------------------------------------------


def test_rouge_hand_checked_pair():
    # Tokens: "the cat sat on the mat" vs "the cat was on the mat" (6 each).
    # ROUGE-1: the x2, cat, on, mat = 5 common -> P = R = F = 5/6.
    # ROUGE-2: the-cat, on-the, the-mat common of 5 bigrams each -> 3/5.
    # ROUGE-L: LCS "the cat on the mat" = 5 -> 5/6.
    result = scored("rouge", [answer("the cat sat on the mat", "the cat was on the mat")])
    assert result.scores["rouge1"] == pytest.approx(100 * 5 / 6)
    assert result.scores["rouge2"] == pytest.approx(60.0)
    assert result.scores["rougeL"] == pytest.approx(100 * 5 / 6)
    assert result.scores["rougeLsum"] == pytest.approx(100 * 5 / 6)  # one line: same as rougeL


def test_rouge_stems_takes_the_best_reference_and_zeroes_abstentions():
    predictions = [
        answer("cats running", "dogs barking", "cat runs"),  # Porter: cat run == cat run
        answer("cats running", "cat runs", abstained=True),
        answer("x", answerable=False),
    ]
    result = scored("rouge", predictions)
    assert result.per_example["rouge1"] == pytest.approx([100.0, 0.0, None])
    assert result.scores["rouge1"] == pytest.approx(50.0)


# --- bleu --------------------------------------------------------------------------------------


def test_bleu_identical_is_100_and_disjoint_is_0():
    same = scored("bleu", [answer("the quick brown fox jumps", "the quick brown fox jumps")])
    assert same.scores["bleu"] == pytest.approx(100.0)
    assert same.per_example["sentence_bleu"] == [pytest.approx(100.0)]
    disjoint = scored("bleu", [answer("red green blue yellow", "one two three four")])
    assert disjoint.scores["bleu"] == 0.0
    assert disjoint.scores["sentence_bleu"] == 0.0


def test_bleu_short_answers_get_sentence_credit_but_corpus_counts_pool():
    # A one-word exact answer has no 4-grams: effective order gives it 100 per sentence.
    result = scored("bleu", [answer("Ulm", "Ulm"), answer("in the city of Ulm", "in the city of Ulm")])
    assert result.per_example["sentence_bleu"] == [pytest.approx(100.0), pytest.approx(100.0)]
    assert result.scores["bleu"] == pytest.approx(100.0)
    assert "nrefs:var" not in result.notes  # both have one reference


def test_reference_streams_pad_with_none_and_score_like_repeating_the_first():
    import sacrebleu

    references = [["the cat sat on the mat", "a cat sat on a mat"], ["a dog barked at the postman"]]
    streams = reference_streams(references)
    assert streams == [
        ["the cat sat on the mat", "a dog barked at the postman"],
        ["a cat sat on a mat", None],
    ]
    hypotheses = ["a cat sat on the mat", "the dog barked at a postman"]
    repeated = [streams[0], ["a cat sat on a mat", "a dog barked at the postman"]]
    padded = sacrebleu.corpus_bleu(hypotheses, streams).score
    assert padded == pytest.approx(sacrebleu.corpus_bleu(hypotheses, repeated).score)
    assert 0 < padded < 100


# --- accuracy ----------------------------------------------------------------------------------

CHOICES = {"A": "Aspirin", "B": "Ibuprofen", "C": "Rest", "D": "Surgery"}


def test_accuracy_reads_letters_and_counts_unparsed():
    predictions = [
        answer("C. Rest and fluids", "C", choices=CHOICES),  # right
        answer("The answer is B", "B. Ibuprofen", choices=CHOICES),  # right; reference "B. text"
        answer("A", "D", choices=CHOICES),  # wrong
        answer("I think it is probably rest", "C", choices=CHOICES),  # no letter: wrong, unparsed
        answer("C", "C", choices=CHOICES, abstained=True),  # abstained: wrong, unparsed
        answer("Ulm", "Ulm"),  # not multiple choice: skipped
    ]
    result = scored("accuracy", predictions)
    assert result.per_example["accuracy"] == [100.0, 100.0, 0.0, 0.0, 0.0, None]
    assert result.scores["accuracy"] == pytest.approx(40.0)
    assert result.scores["unparsed"] == pytest.approx(40.0)
    assert result.scores["n_scored"] == 5


def test_accuracy_rejects_a_reference_that_is_no_letter():
    with pytest.raises(InputError, match=r"prediction 'bad'.*references\[0\]"):
        compute_metrics(["accuracy"], [Prediction("bad", "?", "C", ("Rest",), choices=CHOICES)])


# --- faithfulness ------------------------------------------------------------------------------


def test_faithfulness_supported_invented_and_paraphrased_answers():
    question = "Where was Einstein born?"
    predictions = [
        answer("Ulm", question=question, contexts=(EINSTEIN,)),  # claim "ulm": supported, 1.0
        answer("He was born in Munich", question=question, contexts=(EINSTEIN,)),  # "munich": 0.0
        # Reworded, but every claim word is the passage's: ulm, 1879, kingdom, württemberg.
        answer("In 1879, in Ulm (Kingdom of Württemberg)", question=question, contexts=(EINSTEIN,)),
        # Half the claim words found ("ulm" yes, "bavaria" no): exactly at the threshold.
        answer("Ulm, Bavaria", question=question, contexts=(EINSTEIN,)),
    ]
    result = scored("faithfulness", predictions)
    assert result.per_example["mean_support"] == [1.0, 0.0, 1.0, SUPPORT_THRESHOLD]
    assert result.per_example["faithfulness"] == [100.0, 0.0, 100.0, 100.0]
    assert result.scores["faithfulness"] == pytest.approx(75.0)
    assert result.scores["mean_support"] == pytest.approx(0.625)
    assert result.scores["n_scored"] == 4


def test_faithfulness_skips_refusals_and_is_blind_to_negation():
    question = "Where was Einstein born?"
    predictions = [
        answer("I don't know", question=question, contexts=(EINSTEIN,)),  # refusal: no claim
        answer("Ulm", question=question, contexts=(EINSTEIN,), abstained=True),
        # Known limit of a lexical check: every word is in the passage, the meaning is not.
        answer("Not in Ulm", question=question, contexts=(EINSTEIN,)),
    ]
    result = scored("faithfulness", predictions)
    assert result.per_example["faithfulness"] == [None, None, 100.0]
    assert result.scores["n_scored"] == 1


def test_faithfulness_with_only_refusals_reports_no_share():
    result = scored("faithfulness", [answer("I don't know", contexts=(EINSTEIN,))])
    assert result.scores == {"n_scored": 0}


# --- abstention --------------------------------------------------------------------------------


def test_abstention_shares_on_both_kinds_of_question():
    predictions = [
        answer("", answerable=False, abstained=True),  # correct refusal
        answer("Paris", answerable=False),  # answered an unanswerable question
        answer("I don't know.", "Ulm"),  # false refusal (by its text)
        answer("Ulm", "Ulm"),
        answer("Ulm", "Ulm", abstained=True),  # false refusal (by the flag)
        answer("1879", "1879"),
    ]
    result = scored("abstention", predictions)
    assert result.scores == {
        "n_unanswerable": 2,
        "n_answerable": 4,
        "correct_refusals": 50.0,
        "false_refusals": 50.0,
    }
    assert result.per_example["correct_refusals"] == [100.0, 0.0, None, None, None, None]
    assert result.per_example["false_refusals"] == [None, None, 100.0, 0.0, 100.0, 0.0]


def test_abstention_without_unanswerable_questions_omits_correct_refusals():
    result = scored("abstention", [answer("Ulm", "Ulm"), answer("Ulm", "Ulm")])
    assert "correct_refusals" not in result.scores
    assert result.scores["false_refusals"] == 0.0
    assert result.scores["n_unanswerable"] == 0


# --- retrieval ---------------------------------------------------------------------------------

GOLD = "Albert Einstein was born in Ulm,\nin the Kingdom of Württemberg, in 1879. He studied in Zurich."


def test_gold_rank_matches_chunks_either_way_after_normalising_whitespace():
    chunk = "born in Ulm, in the   Kingdom of Württemberg"  # a piece of GOLD (its newline normalised)
    assert gold_rank(["Moby-Dick is a novel.", chunk], GOLD) == 2
    assert gold_rank([f"Preface. {GOLD} Epilogue."], GOLD) == 1  # a chunk holding the whole passage
    assert gold_rank(["Moby-Dick is a novel.", ""], GOLD) is None  # an empty chunk matches nothing


def test_retrieval_recall_and_mrr():
    other = "Moby-Dick is a novel by Herman Melville."
    predictions = [
        answer("Ulm", contexts=(GOLD, other), gold_context=GOLD),  # rank 1
        answer("Ulm", contexts=(other, other, "in 1879. He studied"), gold_context=GOLD),  # rank 3
        answer("Ulm", contexts=(other,) * 5 + ("born in Ulm",), gold_context=GOLD),  # rank 6
        answer("Ulm", contexts=(other,), gold_context=GOLD),  # not retrieved
        answer("Ulm", contexts=(GOLD,)),  # no gold passage known: skipped
    ]
    result = scored("retrieval", predictions)
    assert result.per_example["rank"] == [1, 3, 6, None, None]
    assert result.scores["recall@1"] == pytest.approx(25.0)
    assert result.scores["recall@3"] == pytest.approx(50.0)
    assert result.scores["recall@5"] == pytest.approx(50.0)
    assert result.scores["mrr@10"] == pytest.approx((1 + 1 / 3 + 1 / 6 + 0) / 4)
    assert result.scores["n_scored"] == 4


# --- latency -----------------------------------------------------------------------------------


def test_latency_percentiles_and_token_rate():
    predictions = [
        answer("a", latency_s=1.0, generated_tokens=10),
        answer("b", latency_s=2.0, generated_tokens=30),
        answer("c", latency_s=3.0),  # tokens unknown: not in the token rate
        answer("d", latency_s=4.0, generated_tokens=10),
        answer("e", latency_s=10.0),
        answer("f"),  # no timing: skipped
    ]
    result = scored("latency", predictions)
    # Linear interpolation over [1, 2, 3, 4, 10]: p50 = 3; p95 at position 3.8 = 4 + 0.8 * 6 = 8.8.
    assert result.scores["latency_p50_s"] == pytest.approx(3.0)
    assert result.scores["latency_p95_s"] == pytest.approx(8.8)
    assert result.scores["latency_mean_s"] == pytest.approx(4.0)
    assert result.scores["tokens_per_s"] == pytest.approx(50 / 7)
    assert result.per_example["latency_s"] == [1.0, 2.0, 3.0, 4.0, 10.0, None]


def test_latency_without_token_counts_omits_the_rate():
    result = scored("latency", [answer("a", latency_s=1.0)])
    assert "tokens_per_s" not in result.scores


# --- model-based metrics -----------------------------------------------------------------------


@pytest.mark.slow
def test_bertscore_identical_related_unrelated():
    capital = "The capital of France is Paris."
    predictions = [
        answer(capital, capital),
        answer("Paris is the capital of France.", "a recipe for banana bread", capital),
        answer("a recipe for banana bread", capital),
        answer("Paris", "Paris", abstained=True),
        answer("x", answerable=False),
    ]
    result = scored("bertscore", predictions)
    f1 = result.per_example["bertscore_f1"]
    assert f1[0] == pytest.approx(1.0, abs=1e-4)
    assert 0.9 < f1[1] < 1.0  # the related reference is the one kept
    assert f1[2] < 0.5
    assert f1[3:] == [0.0, None]
    # P, R and F1 come from the same (best) reference: F1 is their harmonic mean.
    p, r = result.per_example["bertscore_precision"][1], result.per_example["bertscore_recall"][1]
    assert f1[1] == pytest.approx(2 * p * r / (p + r), rel=1e-5)
    assert "no baseline rescaling" in result.notes


@pytest.mark.slow
def test_cosine_identical_related_unrelated(embedder):
    predictions = [
        answer("Einstein was born in Ulm.", "Einstein was born in Ulm."),
        answer("He was born in the city of Ulm.", "Einstein was born in Ulm."),
        answer("Bake the bread for forty minutes.", "Einstein was born in Ulm."),
        answer("Ulm", "Ulm", abstained=True),
    ]
    result = scored("cosine", predictions, embedder=embedder)
    cosine = result.per_example["cosine"]
    assert cosine[0] == pytest.approx(1.0, abs=1e-5)
    assert cosine[1] > cosine[2] + 0.3
    assert cosine[3] == 0.0
    assert result.scores["cosine"] == pytest.approx(sum(cosine) / 4)
