"""Grounded decoding on or off: the same reader, the same gold paragraphs, the same questions.

The reader answers SQuAD eval-article questions from their own paragraph (as ``slmkit eval --context
gold``) twice, with ``generation.grounded`` on (the answer must be a verbatim span of the passage,
slmkit.models.grounding) and off (free decoding). Per setting: EM / F1 with a 95 % bootstrap interval,
refusals, and *faithfulness* — the share of given answers that occur verbatim (whitespace- and
case-insensitively) in the paragraph, i.e. that are not invented strings.

``ratio`` = grounded F1 / free F1.

    python benchmarks/grounding.py [--questions 300] [--model slmkit-reader-270m]
"""

from __future__ import annotations

import argparse
import statistics

from tqdm.auto import tqdm

from _common import bootstrap_ci, emit
from reader_squad import answer, row
from slmkit.config import AskConfig, GenerationConfig
from slmkit.data.squad import bundled_squad
from slmkit.eval.eval_sets import load_eval_set
from slmkit.models.backends import load_generator
from slmkit.models.registry import DEFAULT_MODEL
from slmkit.rag.answer import Answerer


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()

    items = load_eval_set(str(bundled_squad()), "squad", "eval", args.questions).items
    base = AskConfig(model=args.model)
    generator = load_generator(args.model, base.backend)
    results = {}
    for grounded in (True, False):
        config = base.model_copy(update={"generation": GenerationConfig(grounded=grounded)})
        answerer = Answerer(generator, None, config)
        # Scored as reader_squad.py scores its gold setting (a refusal scores 0).
        rows = [
            (item, row("gold", item, answer("gold", {"full": answerer}, item)))
            for item in tqdm(items, desc=f"grounded={grounded}", unit="q")
        ]
        f1 = [r["f1"] for _, r in rows]
        faithful = [100.0 * (_norm(r["answer"]) in _norm(i.context or "")) for i, r in rows if r["answer"]]
        results["grounded" if grounded else "free"] = {
            "em": round(statistics.fmean(r["em"] for _, r in rows), 2),
            "f1": round(statistics.fmean(f1), 2),
            "f1_ci95": [round(v, 2) for v in bootstrap_ci(f1)],
            "refused_pct": round(statistics.fmean(100.0 * r["abstained"] for _, r in rows), 2),
            "faithful_pct": round(statistics.fmean(faithful), 2) if faithful else None,
            "answers": len(faithful),
        }
    emit(
        {
            "benchmark": "grounding",
            "model": args.model,
            "questions": len(items),
            "results": results,
            "baseline": "the same reader decoding freely",
            "ratio": round(results["grounded"]["f1"] / results["free"]["f1"], 3)
            if results["free"]["f1"]
            else None,
        }
    )


if __name__ == "__main__":
    main()
