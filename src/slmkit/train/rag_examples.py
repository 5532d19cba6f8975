"""SQuAD training examples whose context looks like what the answerer will retrieve.

At inference the model reads the top-k chunks a retriever returns — usually the right paragraph
among look-alike distractors, and sometimes no right paragraph at all. Training on the gold
paragraph alone teaches neither situation. Following RAFT (Zhang et al., 2024, "RAFT: Adapting
Language Model to Domain Specific RAG"), each question here gets the retrieved chunks as context
with the gold passage placed among them, and for a share of questions the gold passage is left
out and the target becomes the abstention sentence the answerer uses — so the model learns to say
it when the context does not hold the answer.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

from slmkit.config import IndexConfig, RetrievalConfig
from slmkit.data.prompts import ABSTAIN_ANSWER, NO_ANSWER, Passage, qa_messages, reader_messages
from slmkit.data.squad import SquadArticle, write_squad_paragraphs
from slmkit.data.squad_metrics import normalize_answer
from slmkit.data.tasks import Example
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Hit, Retriever

logger = logging.getLogger(__name__)


def _paragraph_key(hit: Hit) -> tuple[str | None, int | None]:
    return hit.chunk.metadata.get("article"), hit.chunk.metadata.get("paragraph")


def _mentions(passages: Sequence[Passage], answers: Sequence[str]) -> bool:
    texts = [normalize_answer(p.text) for p in passages]
    return any(normalize_answer(a) and normalize_answer(a) in t for a in answers for t in texts)


def raft_messages(
    question: str,
    answers: Sequence[str],
    gold: Passage,
    distractors: Sequence[Passage],
    top_k: int,
    abstain_share: float,
    rng: random.Random,
) -> list[dict[str, str]]:
    """Messages of one RAFT-style example: ``top_k`` passages with ``gold`` at a random place among
    the first distractors and ``answers[0]`` as target; or, with probability ``abstain_share``, the
    distractors alone and the abstention sentence as target.

    An abstention example is only made when no distractor contains an answer, since "not in the
    context" would then be a false target. ``distractors`` must not include the gold passage.
    """
    passages, target = list(distractors[:top_k]), ABSTAIN_ANSWER
    if rng.random() >= abstain_share or _mentions(passages, answers):
        passages = list(distractors[: top_k - 1])
        passages.insert(rng.randrange(len(passages) + 1), gold)
        target = answers[0]
    return [*qa_messages(question, passages), {"role": "assistant", "content": target}]


def retrieved_context_examples(
    articles: Sequence[SquadArticle],
    kb: KnowledgeBase,
    top_k: int = 3,
    abstain_share: float = 0.2,
    seed: int = 0,
    source: str = "squad",
    retrieval: RetrievalConfig | None = None,
) -> list[Example]:
    """One example per question: ``top_k`` retrieved passages, gold among them (or, for about
    ``abstain_share`` of questions, absent, with the abstention sentence as target).

    The knowledge base must hold the articles' paragraphs as ingested from a SQuAD file (its chunks
    carry ``article``/``paragraph`` metadata). An abstention example is only made when no remaining
    passage contains a gold answer — otherwise "not in the context" would be a false target.
    """
    rng = random.Random(seed)
    items = [(a, p, qa) for a in articles for p in a.paragraphs for qa in p.qas if qa.answers]
    hits_per_question = Retriever(kb, retrieval).search_many(
        [qa.question for _, _, qa in items], top_k=top_k * 3
    )
    examples, abstentions = [], 0
    for (article, paragraph, qa), hits in zip(items, hits_per_question, strict=True):
        gold_key = (article.title, paragraph.index)
        distractors = [Passage(h.chunk.title, h.chunk.text) for h in hits if _paragraph_key(h) != gold_key]
        gold = _gold_passage(article, paragraph, qa.answers, hits, gold_key)
        messages = raft_messages(qa.question, qa.answers, gold, distractors, top_k, abstain_share, rng)
        abstentions += messages[-1]["content"] == ABSTAIN_ANSWER
        examples.append(Example(messages, qa.id, f"{source}#{article.title}/{paragraph.index}"))
    logger.info("%d retrieved-context examples, %d with the abstention target", len(examples), abstentions)
    return examples


def passage_examples(
    articles: Sequence[SquadArticle],
    kb: KnowledgeBase,
    negatives: float = 0.5,
    seed: int = 0,
    source: str = "squad",
    retrieval: RetrievalConfig | None = None,
) -> list[Example]:
    """Examples for a reader that reads one retrieved passage at a time (slmkit.rag.reading).

    Every question gets its gold passage (the knowledge-base chunk of its paragraph that holds the
    answer, so training sees the same chunks as answering) with its first gold answer as target.
    About ``negatives`` of the questions also get a *hard negative*: the best-ranked retrieved chunk
    that holds none of the gold answers (often another part of the same article, or the same
    paragraph's other chunk), with :data:`NO_ANSWER` as target. Reading a passage that does not
    answer and saying so is what lets the answers of several passages compete, and lets the reader
    abstain when none answers.
    """
    rng = random.Random(seed)
    items = [(a, p, qa) for a in articles for p in a.paragraphs for qa in p.qas if qa.answers]
    chunks_of: dict[tuple[str | None, int | None], list[Passage]] = {}
    for chunk in kb.chunks:
        key = (chunk.metadata.get("article"), chunk.metadata.get("paragraph"))
        chunks_of.setdefault(key, []).append(Passage(chunk.title, chunk.text))
    hits_per_question = Retriever(kb, retrieval).search_many([qa.question for _, _, qa in items], top_k=10)
    examples, negative_count = [], 0
    for (article, paragraph, qa), hits in zip(items, hits_per_question, strict=True):
        key = (article.title, paragraph.index)
        gold = next(
            (p for p in chunks_of.get(key, []) if _mentions([p], qa.answers)),
            Passage(article.display_title, paragraph.context),
        )
        where = f"{source}#{article.title}/{paragraph.index}"
        examples.append(Example([*reader_messages(qa.question, gold), _target(qa.answers[0])], qa.id, where))
        if rng.random() >= negatives:
            continue
        negative = next(
            (
                Passage(h.chunk.title, h.chunk.text)
                for h in hits
                if not _mentions([Passage(h.chunk.title, h.chunk.text)], qa.answers)
            ),
            None,
        )
        if negative is not None:
            messages = [*reader_messages(qa.question, negative), _target(NO_ANSWER)]
            examples.append(Example(messages, f"{qa.id}-negative", where))
            negative_count += 1
    rng.shuffle(examples)
    logger.info("%d passage examples, %d of them negatives (no answer)", len(examples), negative_count)
    return examples


def _target(answer: str) -> dict[str, str]:
    return {"role": "assistant", "content": answer}


def _gold_passage(
    article: SquadArticle, paragraph, answers: Sequence[str], hits: Sequence[Hit], gold_key
) -> Passage:
    """The retrieved chunk of the gold paragraph that contains the answer, or else the whole
    paragraph (retrieval missed it, or found only the half without the answer)."""
    for hit in hits:
        passage = Passage(hit.chunk.title, hit.chunk.text)
        if _paragraph_key(hit) == gold_key and _mentions([passage], answers):
            return passage
    return Passage(article.display_title, paragraph.context)


def paragraphs_kb(
    articles: Sequence[SquadArticle], kb_path: Path, config: IndexConfig | None = None
) -> KnowledgeBase:
    """The knowledge base at ``kb_path``; if there is none yet, one built (with ``config``) from the
    paragraphs of ``articles`` (their questions left out), with the source file written beside it."""
    if (kb_path / "CURRENT").exists():
        return KnowledgeBase.open(kb_path)
    kb_path.parent.mkdir(parents=True, exist_ok=True)
    source = kb_path.parent / "kb-source.json"
    write_squad_paragraphs(list(articles), source)
    kb, _ = KnowledgeBase.build(kb_path, [source], config)
    return kb
