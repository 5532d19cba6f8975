"""llama.cpp, the default engine where it is installed, answers as the transformers reference.

For every packaged generator (SmolLM2 chat model, Gemma-3 base model, the shipped reader), the GGUF
export that the llama.cpp backend runs by default (f32; f16 for the reader) gives the same greedy
answers as transformers on fixed SQuAD eval questions with their passage, in the layout the model is
used with; for the reader, its no-answer probabilities (what per-passage reading ranks passages by)
agree too.
"""

from __future__ import annotations

import pytest

from slmkit.config import GenerationConfig
from slmkit.data.prompts import Passage, qa_messages, reader_messages
from slmkit.models.registry import PACKAGED_MODELS, gguf_format

pytest.importorskip("llama_cpp")

GENERATORS = [name for name, spec in PACKAGED_MODELS.items() if spec.kind == "causal-lm"]
SUPER_BOWL = Passage(
    "Super Bowl 50",
    "Super Bowl 50 was an American football game to determine the champion of the National Football "
    "League (NFL) for the 2015 season. The American Football Conference (AFC) champion Denver Broncos "
    "defeated the National Football Conference (NFC) champion Carolina Panthers 24–10 to earn their "
    "third Super Bowl title. The game was played on February 7, 2016, at Levi's Stadium in the San "
    "Francisco Bay Area at Santa Clara, California.",
)
PRIME = Passage(
    "Prime number",
    "A prime number (or a prime) is a natural number greater than 1 that has no positive divisors other "
    "than 1 and itself. A natural number greater than 1 that is not a prime number is called a "
    "composite number. For example, 5 is prime because 1 and 5 are its only positive integer factors.",
)
QUESTIONS = [
    ("Which NFL team represented the AFC at Super Bowl 50?", SUPER_BOWL),
    ("Where was Super Bowl 50 played?", SUPER_BOWL),
    ("What is a natural number greater than 1 that is not prime called?", PRIME),
    ("Who won the 1998 Tour de France?", PRIME),  # not in the passage: a reader answers nothing
]


@pytest.mark.slow
@pytest.mark.parametrize("name", GENERATORS)
def test_llama_cpp_gives_the_transformers_greedy_answers(name, monkeypatch, model_cache):
    from slmkit.models.generation import TransformersGenerator
    from slmkit.models.llama_cpp import LlamaCppGenerator
    from slmkit.models.loading import is_reader, load_causal_lm

    monkeypatch.setenv("SLMKIT_CACHE", str(model_cache))
    reference = TransformersGenerator(load_causal_lm(name, cache=model_cache))
    llama = LlamaCppGenerator.load(name, quant=gguf_format(name), threads=2)
    config = GenerationConfig(max_new_tokens=24)
    reader = is_reader(name)
    prompts = [reader_messages(q, p) if reader else qa_messages(q, [p]) for q, p in QUESTIONS]
    for messages in prompts:
        assert llama.count_tokens(messages) == reference.count_tokens(messages)
        assert llama.generate(messages, config).text == reference.generate(messages, config).text
    if reader:
        expected = reference.no_answer_probabilities(prompts)
        assert llama.no_answer_probabilities(prompts) == pytest.approx(expected, abs=0.02)
        assert expected[0] < 0.5 < expected[-1]  # it reads the Broncos' passage, not the Tour's
