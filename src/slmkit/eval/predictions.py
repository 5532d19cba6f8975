"""One model answer under evaluation: what was asked, what came back, and what it should have been.

Every metric in :mod:`slmkit.eval.metrics` reads a list of these, so an evaluation run, a saved
``predictions.jsonl`` and a hand-built test case all score the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmkit.atomic import atomic_write_text
from slmkit.data.jsonfile import parse_json
from slmkit.errors import InputError


@dataclass(frozen=True)
class Prediction:
    """One evaluated question.

    Attributes:
        id: Stable example id (SQuAD question id, JSONL ``id`` or ``file:line``).
        question: The question as asked.
        prediction: The model's answer text, citation markers removed.
        references: Gold answers; empty when the question is unanswerable from the knowledge base.
        contexts: Passages shown to the model, best first (retrieved chunks or the gold paragraph).
        gold_context: The passage that holds the answer, when known (for retrieval recall).
        answerable: False when the knowledge base deliberately lacks the answer.
        abstained: True when the system declined to answer.
        latency_s: Wall time for the whole answer (retrieval + generation).
        generated_tokens: Tokens the model generated.
        choices: Option letter -> text, for multiple-choice questions.
        extra: Anything else a run wants to keep per example (scores, retrieval ranks, ...).
    """

    id: str
    question: str
    prediction: str
    references: tuple[str, ...] = ()
    contexts: tuple[str, ...] = ()
    gold_context: str | None = None
    answerable: bool = True
    abstained: bool = False
    latency_s: float | None = None
    generated_tokens: int | None = None
    choices: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "prediction") -> Prediction:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            InputError: a required field is missing or a field is unknown (``where`` names the record).
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        for required in ("id", "question", "prediction"):
            if required not in data:
                raise InputError(f"{where}: missing field '{required}'")
        values = dict(data)
        for name in ("references", "contexts"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


def write_predictions(path: Path, predictions: list[Prediction]) -> None:
    """Write one JSON object per line, atomically (a crash leaves the old file intact)."""
    atomic_write_text(path, "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in predictions))


def read_predictions(path: Path) -> list[Prediction]:
    """Read :func:`write_predictions` output.

    Raises:
        InputError: missing file or a malformed line (file and line named).
    """
    if not path.is_file():
        raise InputError(f"{path}: no such predictions file")
    predictions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        data = parse_json(line, path, number)
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a JSON object")
        predictions.append(Prediction.from_dict(data, where))
    return predictions
