"""Named metrics that score a list of :class:`~slmkit.eval.predictions.Prediction` records.

``compute_metrics(["squad", "rouge"], predictions)`` returns one :class:`MetricResult` per name.
Every metric is a short function in the registry below; none of them generates text.

Which predictions a metric scores:

- Answer-quality metrics (``squad``, ``rouge``, ``bleu``, ``bertscore``, ``cosine``) score the
  answerable predictions that have references; unanswerable ones have no reference and get
  ``None``. An abstained answerable prediction gave no answer, so it scores 0 on every one of them.
- ``accuracy`` scores multiple-choice predictions (those with ``choices``), ``faithfulness`` the
  non-refused ones with ``contexts``, ``retrieval`` those with a ``gold_context``, ``latency``
  those with a ``latency_s``; ``abstention`` scores every prediction.

Scales: exact match, F1, ROUGE, BLEU, accuracy, recall@k and every share are percentages
(0-100, as the official SQuAD script prints them); BERTScore, cosine similarity, support and MRR
are on their natural 0-1 scale; ``n_*`` keys are counts; ``*_s`` keys are seconds. A per-example
list uses the scale of the aggregate with the same key, so that aggregate is the mean of its
non-None entries (except corpus BLEU and the latency percentiles, which are not means).

Every score key except ``n_scored`` is unique across metrics (hence ``bertscore_f1`` beside
SQuAD's ``f1``, ``latency_p50_s``), so a run can merge all results into one flat dict.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from slmkit.data.squad_metrics import exact_match, f1_score
from slmkit.data.tasks import multiple_choice_letter
from slmkit.errors import ConfigError, InputError
from slmkit.eval.predictions import Prediction
from slmkit.rag.abstention import is_refusal, support_score

if TYPE_CHECKING:
    from bert_score import BERTScorer
    from sentence_transformers import SentenceTransformer

# An answer counts as supported by its passages when at least half of its claim words occur in
# them: the default cut-off of the answerer's support gate (AbstentionConfig.min_support), so the
# metric judges answers the way the system itself does.
SUPPORT_THRESHOLD = 0.5
# The last layer of all-MiniLM-L6-v2 is the one its sentence-similarity training shaped; lower
# layers squeeze related and unrelated pairs together (an unrelated sentence pair: F1 0.55 at
# layer 5, 0.13 at layer 6; a paraphrase: 0.97 at both).
BERTSCORE_LAYER = 6
_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_RECALL_AT = (1, 3, 5)
_MRR_CUTOFF = 10


@dataclass(frozen=True)
class MetricResult:
    """One metric's scores over a list of predictions.

    Attributes:
        name: The registry name (``squad``, ``rouge``, ...).
        scores: Aggregates, e.g. ``{"exact_match": 26.7, "f1": 34.0, "n_scored": 30}``.
        per_example: Per-prediction scores aligned with the input list; None where the metric
            does not apply to that prediction (e.g. an unanswerable question for ``squad``).
        notes: One line naming the method and library.
    """

    name: str
    scores: dict[str, float]
    per_example: dict[str, list[float | None]]
    notes: str


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _indices(
    metric: str, field: str, predictions: list[Prediction], applies: Callable[[Prediction], bool]
) -> list[int]:
    """Positions of the predictions ``metric`` scores; raises when there are none."""
    indices = [i for i, p in enumerate(predictions) if applies(p)]
    if not indices:
        raise InputError(f"metric '{metric}' needs field '{field}', but no prediction has one")
    return indices


def _graded(metric: str, predictions: list[Prediction]) -> list[int]:
    """Positions of the answerable predictions that have references (answer-quality metrics)."""
    return _indices(metric, "references", predictions, lambda p: p.answerable and bool(p.references))


def _scatter(size: int, indices: Sequence[int], values: Sequence[float | None]) -> list[float | None]:
    """Place ``values`` at ``indices`` of a list of ``size`` Nones."""
    out: list[float | None] = [None] * size
    for i, value in zip(indices, values, strict=True):
        out[i] = value
    return out


def _mean(values: Sequence[float | None]) -> float:
    return statistics.fmean(v for v in values if v is not None)


def _result(
    name: str, predictions: list[Prediction], indices: list[int], columns: dict[str, list[float]], notes: str
) -> MetricResult:
    """A result whose aggregates are the means of ``columns`` (one value per scored prediction).

    With nothing scored only ``n_scored`` (0) is reported: a mean of nothing is not a number.
    """
    scores = {key: _mean(values) for key, values in columns.items() if values}
    scores["n_scored"] = len(indices)
    per_example = {key: _scatter(len(predictions), indices, values) for key, values in columns.items()}
    return MetricResult(name, scores, per_example, notes)


def _refused(prediction: Prediction) -> bool:
    """True when the system abstained or the model's own text declines to answer."""
    return prediction.abstained or is_refusal(prediction.prediction)


# ---------------------------------------------------------------------------------------------
# Answer quality against references


def squad_metric(predictions: list[Prediction]) -> MetricResult:
    """Official SQuAD v1.1 exact match and token F1 (max over references), in %."""
    indices = _graded("squad", predictions)
    em, f1 = [], []
    for p in (predictions[i] for i in indices):
        # Checked explicitly: an empty string would "match" a gold answer that normalises to "".
        em.append(0.0 if p.abstained else 100.0 * exact_match(p.prediction, p.references))
        f1.append(0.0 if p.abstained else 100.0 * f1_score(p.prediction, p.references))
    notes = "SQuAD v1.1 exact match and token F1 (official normalisation), max over references"
    return _result("squad", predictions, indices, {"exact_match": em, "f1": f1}, notes)


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(_ROUGE_TYPES), use_stemmer=True)


def rouge_metric(predictions: list[Prediction]) -> MetricResult:
    """ROUGE-1/2/L/Lsum F-measures in % (rouge_score, Porter stemmer), best reference per type.

    ``rougeLsum`` treats each line as a sentence; answers are not sentence-split first, so for a
    one-line answer it equals ``rougeL``.
    """
    indices = _graded("rouge", predictions)
    columns: dict[str, list[float]] = {key: [] for key in _ROUGE_TYPES}
    for p in (predictions[i] for i in indices):
        best = _rouge_scorer().score_multi(list(p.references), "" if p.abstained else p.prediction)
        for key in _ROUGE_TYPES:
            columns[key].append(100.0 * best[key].fmeasure)
    notes = "ROUGE F-measures via rouge_score with Porter stemming, max over references per type"
    return _result("rouge", predictions, indices, columns, notes)


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Turn per-example reference lists into sacrebleu's reference streams (stream j = j-th refs).

    Examples with fewer references are padded with None, sacrebleu's documented marker for a
    variable number of references (it drops them). Repeating an example's first reference would
    give the same score (a duplicate changes neither the clipped n-gram counts, a max over
    references, nor the closest reference length), but None also keeps ``nrefs:var`` honest in the
    signature; an empty string would not do, as it would count as a reference of length 0.
    """
    width = max(len(refs) for refs in references)
    return [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]


def bleu_metric(predictions: list[Prediction]) -> MetricResult:
    """Corpus BLEU (sacrebleu, 13a tokens, case-sensitive) in %, plus per-example sentence BLEU.

    ``bleu`` is the corpus score (n-gram counts pooled over all answers, so not the mean of the
    per-example values); ``sentence_bleu`` is the mean sentence BLEU with effective n-gram order,
    which keeps one- to three-word answers from scoring 0 for lack of 4-grams.
    """
    from sacrebleu.metrics import BLEU

    indices = _graded("bleu", predictions)
    hypotheses = ["" if predictions[i].abstained else predictions[i].prediction for i in indices]
    references = [list(predictions[i].references) for i in indices]
    corpus = BLEU()
    corpus_score = corpus.corpus_score(hypotheses, reference_streams(references)).score
    sentence = BLEU(effective_order=True)
    per_example = [sentence.sentence_score(h, r).score for h, r in zip(hypotheses, references, strict=True)]
    result = _result("bleu", predictions, indices, {"sentence_bleu": per_example}, "")
    scores = {"bleu": corpus_score, **result.scores}
    notes = f"corpus BLEU via sacrebleu ({corpus.get_signature()}) and mean sentence BLEU"
    return MetricResult("bleu", scores, result.per_example, notes)


@functools.lru_cache(maxsize=1)
def _bert_scorer() -> BERTScorer:
    # Cached: building it loads the encoder (~2 s); later calls in the process reuse it.
    from bert_score import BERTScorer

    from slmkit.models.embedder import resolve_embedder_path
    from slmkit.models.registry import DEFAULT_EMBEDDER

    return BERTScorer(
        model_type=resolve_embedder_path(DEFAULT_EMBEDDER), num_layers=BERTSCORE_LAYER, device="cpu"
    )


def bertscore_metric(predictions: list[Prediction]) -> MetricResult:
    """BERTScore precision, recall and F1 (0-1) against the reference with the best F1.

    Keys: ``bertscore_precision``, ``bertscore_recall``, ``bertscore_f1`` (prefixed, since
    ``f1`` is SQuAD's).

    Uses the bert_score library with all-MiniLM-L6-v2 (layer 6, no idf, no baseline rescaling):
    it is the only encoder slmkit ships offline. bert_score has no rescaling baseline for it, so
    the absolute values are not comparable with published BERTScore numbers (which use RoBERTa or
    DeBERTa); compare them only between runs scored here. Abstained and empty answers score 0.
    """
    indices = _graded("bertscore", predictions)
    pairs = [
        (row, p.prediction, ref)
        for row, p in enumerate(predictions[i] for i in indices)
        if not p.abstained and p.prediction.strip()
        for ref in p.references
        if ref.strip()  # an empty reference has no tokens to match (bert_score would divide by 0)
    ]
    keys = ("bertscore_precision", "bertscore_recall", "bertscore_f1")
    columns = {key: [0.0] * len(indices) for key in keys}
    if pairs:
        # One flat batch, then the best reference per answer by F1 (bert_score's own multi-reference
        # mode takes P, R and F1 maxima independently, possibly from different references).
        precision, recall, f1 = _bert_scorer().score([c for _, c, _ in pairs], [r for _, _, r in pairs])
        for k, (row, _, _) in enumerate(pairs):
            if f1[k].item() >= columns["bertscore_f1"][row]:
                for key, values in zip(keys, (precision, recall, f1), strict=True):
                    columns[key][row] = values[k].item()
    notes = (
        f"BERTScore via bert_score with all-MiniLM-L6-v2 layer {BERTSCORE_LAYER}, no idf, "
        "no baseline rescaling; best reference by F1"
    )
    return _result("bertscore", predictions, indices, columns, notes)


@functools.lru_cache(maxsize=1)
def _default_embedder() -> SentenceTransformer:
    from slmkit.models.embedder import load_embedder
    from slmkit.models.registry import DEFAULT_EMBEDDER

    return load_embedder(DEFAULT_EMBEDDER)


def cosine_metric(predictions: list[Prediction], embedder: SentenceTransformer | None = None) -> MetricResult:
    """Cosine similarity (-1 to 1) between each answer and its closest reference, and the mean.

    Args:
        predictions: The records to score.
        embedder: A sentence-transformers model; default the packaged all-MiniLM-L6-v2.

    Abstained and empty answers score 0 (no answer, so no similarity).
    """
    indices = _graded("cosine", predictions)
    embedder = embedder or _default_embedder()
    chosen = [predictions[i] for i in indices]
    answered = [k for k, p in enumerate(chosen) if not p.abstained and p.prediction.strip()]
    # Every distinct text is encoded once, in batches.
    texts = sorted({t for k in answered for t in (chosen[k].prediction, *chosen[k].references)})
    values = [0.0] * len(chosen)
    if answered:
        vectors = embedder.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        vector = dict(zip(texts, vectors, strict=True))
    for k in answered:
        p = chosen[k]
        values[k] = max(float(np.dot(vector[p.prediction], vector[r])) for r in p.references)
    notes = "cosine similarity of normalised sentence-transformers embeddings, max over references"
    return _result("cosine", predictions, indices, {"cosine": values}, notes)


# ---------------------------------------------------------------------------------------------
# Multiple choice, grounding, abstention, retrieval, speed


def _reference_letter(prediction: Prediction) -> str:
    letter = multiple_choice_letter(prediction.references[0])
    if letter is None:
        raise InputError(
            f"prediction '{prediction.id}': references[0] must be the correct option letter "
            f"(e.g. 'C' or 'C. text'), got {prediction.references[0]!r}"
        )
    return letter


def accuracy_metric(predictions: list[Prediction]) -> MetricResult:
    """Multiple-choice accuracy in %, and the share of answers naming no option (``unparsed``).

    The chosen letter is read with :func:`slmkit.data.tasks.multiple_choice_letter`; an abstained
    or unparsed answer is wrong.

    Raises:
        InputError: no prediction has ``choices``, or a reference is not an option letter.
    """
    indices = _indices("accuracy", "choices", predictions, lambda p: bool(p.choices and p.references))
    correct, unparsed = [], []
    for p in (predictions[i] for i in indices):
        chosen = None if p.abstained else multiple_choice_letter(p.prediction)
        correct.append(100.0 * (chosen == _reference_letter(p)))
        unparsed.append(100.0 * (chosen is None))
    notes = "multiple-choice accuracy; option letter read by slmkit.data.tasks.multiple_choice_letter"
    return _result("accuracy", predictions, indices, {"accuracy": correct, "unparsed": unparsed}, notes)


def faithfulness_metric(predictions: list[Prediction]) -> MetricResult:
    """Share (%) of given answers that the passages in ``contexts`` support.

    An answer is supported when :func:`slmkit.rag.abstention.support_score` (the share of its
    claim words, those not already in the question, that occur in the passages) reaches
    :data:`SUPPORT_THRESHOLD`. Refusals make no claim and are skipped. Deterministic and offline,
    but lexical: it cannot see a negation ("was not born in Ulm") or a wrong relation between
    supported words ("Ulm was born in Einstein"), and a correct paraphrase in other words scores
    as unsupported.
    """
    with_contexts = _indices("faithfulness", "contexts", predictions, lambda p: bool(p.contexts))
    indices = [i for i in with_contexts if not _refused(predictions[i])]
    support = [support_score(p.prediction, p.contexts, p.question) for p in (predictions[i] for i in indices)]
    columns = {"faithfulness": [100.0 * (s >= SUPPORT_THRESHOLD) for s in support], "mean_support": support}
    notes = f"lexical support (slmkit.rag.abstention.support_score) >= {SUPPORT_THRESHOLD}"
    return _result("faithfulness", predictions, indices, columns, notes)


def abstention_metric(predictions: list[Prediction]) -> MetricResult:
    """Refusal shares in %: ``correct_refusals`` on unanswerable questions, ``false_refusals`` on
    answerable ones.

    A prediction refuses when it abstained or its text declines (``is_refusal``). Each share is
    left out when there is no prediction of its kind, rather than reported as a made-up 0.
    """
    refused = [100.0 * _refused(p) for p in predictions]
    unanswerable = [i for i, p in enumerate(predictions) if not p.answerable]
    answerable = [i for i, p in enumerate(predictions) if p.answerable]
    scores: dict[str, float] = {"n_unanswerable": len(unanswerable), "n_answerable": len(answerable)}
    per_example = {}
    for key, group in (("correct_refusals", unanswerable), ("false_refusals", answerable)):
        if group:
            scores[key] = _mean([refused[i] for i in group])
            per_example[key] = _scatter(len(predictions), group, [refused[i] for i in group])
    notes = "refusal = abstained flag or a refusal phrase (slmkit.rag.abstention.is_refusal)"
    return MetricResult("abstention", scores, per_example, notes)


def _normalise_space(text: str) -> str:
    return " ".join(text.split())


def gold_rank(contexts: Sequence[str], gold_context: str) -> int | None:
    """1-based rank of the first context that is part of the gold passage (or contains it).

    Chunks are pieces of paragraphs, so containment either way counts; whitespace is normalised
    first. Returns None when no context matches.
    """
    gold = _normalise_space(gold_context)
    for rank, context in enumerate(contexts, start=1):
        text = _normalise_space(context)
        if text and (text in gold or gold in text):
            return rank
    return None


def retrieval_metric(predictions: list[Prediction]) -> MetricResult:
    """Recall@1/3/5 (%) and MRR@10 (0-1) of the gold passage among ``contexts`` (best first).

    Per example, besides those keys: ``rank``, the 1-based rank of the gold passage (None when it
    was not retrieved or the prediction has no ``gold_context``).

    Raises:
        InputError: no prediction has a ``gold_context``, or none has ``contexts``.
    """
    _indices("retrieval", "contexts", predictions, lambda p: bool(p.contexts))
    indices = _indices("retrieval", "gold_context", predictions, lambda p: bool(p.gold_context))
    ranks = [gold_rank(predictions[i].contexts, predictions[i].gold_context or "") for i in indices]
    columns = {f"recall@{k}": [100.0 * (r is not None and r <= k) for r in ranks] for k in _RECALL_AT}
    columns[f"mrr@{_MRR_CUTOFF}"] = [1.0 / r if r is not None and r <= _MRR_CUTOFF else 0.0 for r in ranks]
    notes = "gold passage = first context contained in gold_context or containing it (whitespace-normalised)"
    result = _result("retrieval", predictions, indices, columns, notes)
    result.per_example["rank"] = _scatter(len(predictions), indices, ranks)
    return result


def latency_metric(predictions: list[Prediction]) -> MetricResult:
    """Answer latency in seconds: ``latency_p50_s``, ``latency_p95_s`` (linear interpolation),
    ``latency_mean_s``, and ``tokens_per_s`` (total generated tokens / total latency over the
    predictions that know both; omitted when none does).
    """
    indices = _indices("latency", "latency_s", predictions, lambda p: p.latency_s is not None)
    seconds = [float(predictions[i].latency_s or 0.0) for i in indices]
    scores = {
        "latency_p50_s": float(np.percentile(seconds, 50)),
        "latency_p95_s": float(np.percentile(seconds, 95)),
        "latency_mean_s": statistics.fmean(seconds),
        "n_scored": len(indices),
    }
    timed = [predictions[i] for i in indices if predictions[i].generated_tokens is not None]
    total_s = sum(p.latency_s or 0.0 for p in timed)
    if timed and total_s > 0:
        scores["tokens_per_s"] = sum(p.generated_tokens or 0 for p in timed) / total_s
    per_example = {"latency_s": _scatter(len(predictions), indices, seconds)}
    return MetricResult("latency", scores, per_example, "wall time per answer; percentiles via numpy")


# ---------------------------------------------------------------------------------------------
# Registry

_METRICS: dict[str, Callable[..., MetricResult]] = {
    "squad": squad_metric,
    "rouge": rouge_metric,
    "bleu": bleu_metric,
    "bertscore": bertscore_metric,
    "cosine": cosine_metric,
    "accuracy": accuracy_metric,
    "faithfulness": faithfulness_metric,
    "abstention": abstention_metric,
    "retrieval": retrieval_metric,
    "latency": latency_metric,
}
METRIC_NAMES: tuple[str, ...] = tuple(_METRICS)


def compute_metrics(
    names: Sequence[str], predictions: list[Prediction], *, embedder: SentenceTransformer | None = None
) -> dict[str, MetricResult]:
    """Score ``predictions`` with each named metric.

    Args:
        names: Metric names from :data:`METRIC_NAMES`, in the order wanted.
        predictions: The records to score.
        embedder: Sentence-transformers model for ``cosine`` (default: the packaged MiniLM).

    Returns:
        ``{name: MetricResult}`` in the order of ``names``.

    Raises:
        ConfigError: an unknown metric name (the known ones are listed); checked before any work.
        InputError: no predictions, or a metric needs a field no prediction has (field named).
    """
    unknown = [name for name in names if name not in _METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; known metrics: {', '.join(METRIC_NAMES)}")
    if not predictions:
        raise InputError("no predictions to score")
    # Only cosine uses an embedder; the others take the predictions alone.
    return {
        name: cosine_metric(predictions, embedder) if name == "cosine" else _METRICS[name](predictions)
        for name in names
    }
