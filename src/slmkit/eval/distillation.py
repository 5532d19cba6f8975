"""Teacher against student after a distillation run: the same SQuAD questions, the gold paragraph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmkit.config import DistillConfig, EvalConfig, EvalDataConfig, GenerationConfig
from slmkit.eval.runner import run_eval
from slmkit.models.loading import LoadedModel
from slmkit.train.distill import ratio


def evaluate_pair(config: DistillConfig, teacher: LoadedModel, student: LoadedModel) -> dict[str, Any]:
    """Teacher and student answer the same SQuAD eval questions with the gold paragraph as context."""
    scores = {}
    for role, loaded in (("teacher", teacher), ("student", student)):
        eval_config = EvalConfig(
            model=loaded.name,
            context="gold",
            data=EvalDataConfig(path=config.eval.path, split="eval", limit=config.eval.questions),
            metrics=["squad", "latency"],
            output_dir=str(Path(config.output_dir) / "eval" / role),
            generation=GenerationConfig(max_new_tokens=config.eval.max_new_tokens),
        )
        result = run_eval(eval_config, loaded=loaded)
        keys = ("exact_match", "f1", "tokens_per_s", "latency_p50_s")
        scores[role] = {k: round(float(result.scores[k]), 3) for k in keys if k in result.scores}
        scores["questions"] = result.resources["questions"]
    scores["f1_ratio"] = ratio(scores["student"].get("f1"), scores["teacher"].get("f1"))
    return scores
