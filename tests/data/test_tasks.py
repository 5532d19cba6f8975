"""Task readers: one per dataset format, each turning records into chat examples for fine-tuning."""

from __future__ import annotations

import json
import logging
from importlib.resources import as_file, files
from pathlib import Path

import pytest

from slmkit.data.prompts import ABSTAIN_ANSWER, SYSTEM_PROMPT, Passage, qa_messages
from slmkit.data.tasks import (
    MULTIPLE_CHOICE_CUE,
    Example,
    multiple_choice_letter,
    read_chat_examples,
    read_instruction_examples,
    read_multiple_choice_examples,
    read_pair_examples,
    read_squad_examples,
    read_task,
    split_examples,
)
from slmkit.errors import ConfigError, InputError

ASSETS = Path(__file__).parent.parent / "assets"
TASKS = ASSETS / "tasks"


def _roles(example: Example) -> list[str]:
    return [m["role"] for m in example.messages]


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- instruction (Alpaca, Dolly) ---------------------------------------------------------------


def test_alpaca_records_with_and_without_input() -> None:
    path = TASKS / "alpaca_tiny.json"
    examples = read_instruction_examples(path)
    assert len(examples) == 6
    first = examples[0]
    assert first.messages == [
        {
            "role": "user",
            "content": "Are the two sentences below grammatically correct? Output yes or no.\n\n"
            "Sentence 1: I am going to the store.\nSentence 2: I goes to the store.",
        },
        {"role": "assistant", "content": "No"},
    ]
    assert (first.id, first.source) == ("alpaca_tiny-0", f"{path}#0")
    no_input = examples[4]
    assert no_input.messages[0] == {
        "role": "user",
        "content": "Generate a new solution to address the global climate crisis.",
    }
    assert no_input.messages[1]["content"].startswith("One solution to address the global climate crisis")
    assert all(_roles(e) == ["user", "assistant"] for e in examples)
    assert [e.id for e in examples] == [f"alpaca_tiny-{i}" for i in range(6)]


def test_dolly_records_use_context_and_response() -> None:
    path = TASKS / "dolly_tiny.jsonl"
    examples = read_instruction_examples(path)
    assert len(examples) == 3
    assert examples[0].messages == [
        {"role": "user", "content": "What is the boiling point of water at sea level?"},
        {
            "role": "assistant",
            "content": "Water boils at 100 degrees Celsius (212 degrees Fahrenheit) at sea level.",
        },
    ]
    assert examples[1].messages[0]["content"] == (
        "Based on the passage, when did the bridge open?\n\nThe Harbour Bridge took eight years to build "
        "and opened to traffic in March 1932. It carries rail, road and foot traffic."
    )
    assert examples[1].messages[1]["content"] == "The bridge opened in March 1932."
    assert [e.source for e in examples] == [f"{path}:{n}" for n in (1, 2, 3)]
    assert [e.id for e in examples] == ["dolly_tiny-0", "dolly_tiny-1", "dolly_tiny-2"]


def test_instruction_format_is_detected_per_record(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            json.dumps({"instruction": "Say hi.", "output": "Hi."}),
            json.dumps({"instruction": "Say bye.", "context": "", "response": "Bye."}),
        ],
    )
    examples = read_instruction_examples(path)
    assert [e.messages[1]["content"] for e in examples] == ["Hi.", "Bye."]
    assert [e.messages[0]["content"] for e in examples] == ["Say hi.", "Say bye."]


def test_instruction_record_without_target_names_both_formats(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [json.dumps({"instruction": "Say hi.", "answer": "Hi."})])
    with pytest.raises(InputError) as err:
        read_instruction_examples(path)
    message = str(err.value)
    assert message.startswith(f"{path}:1: missing field 'output' (Alpaca) or 'response' (Dolly)")
    assert "'instruction', 'answer'" in message


# ---- chat --------------------------------------------------------------------------------------


def test_chat_conversations_are_kept_as_written() -> None:
    path = TASKS / "chat_tiny.jsonl"
    examples = read_chat_examples(path)
    assert [e.id for e in examples] == ["greeting", "units", "follow-up"]
    assert [e.source for e in examples] == [f"{path}:{n}" for n in (1, 2, 3)]
    assert _roles(examples[1]) == ["system", "user", "assistant"]
    assert examples[1].messages[0] == {"role": "system", "content": "You are a concise assistant."}
    assert _roles(examples[2]) == ["user", "assistant", "user", "assistant"]
    assert examples[2].messages[-1] == {"role": "assistant", "content": "Blue."}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello"}],
            "messages[1]: role 'bot' is not one of system, user, assistant",
        ),
        (
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user"}],
            "messages[2]: missing field 'content'; this message has fields: 'role'",
        ),
        (
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": 3}],
            "messages[1]: field 'content' should be a string, got a number",
        ),
        (
            [{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi"}],
            "messages[1]: the last message must be the assistant's",
        ),
        (
            [{"role": "user", "content": "Hi"}, {"role": "system", "content": "Be brief"}],
            "messages[1]: a system message may only come first",
        ),
        (["Hi"], "messages[0]: expected an object"),
        ([], "field 'messages' is empty"),
        ([{"role": "assistant", "content": "Hello"}], "field 'messages' has no user message"),
    ],
)
def test_bad_chat_message_names_line_and_message_index(
    tmp_path: Path, messages: list[object], expected: str
) -> None:
    good = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    path = _write_jsonl(tmp_path / "chat.jsonl", [good, "", json.dumps({"messages": messages})])
    with pytest.raises(InputError) as err:
        read_chat_examples(path)
    assert str(err.value).startswith(f"{path}:3: {expected}")


def test_chat_record_without_messages_lists_its_fields(tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    path.write_text(json.dumps([{"conversation": []}]), encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_chat_examples(path)
    assert str(err.value) == f"{path}#0: missing field 'messages'; this record has fields: 'conversation'"


# ---- pairs -------------------------------------------------------------------------------------


def test_pairs_with_and_without_instruction() -> None:
    path = TASKS / "rewrite_tiny.jsonl"
    plain = read_pair_examples(path)
    assert len(plain) == 4
    assert plain[0].messages == [
        {"role": "user", "content": "Who built the Eiffel Tower? | when was it finished"},
        {"role": "assistant", "content": "When was the Eiffel Tower finished?"},
    ]
    assert (plain[0].id, plain[0].source) == ("rewrite_tiny-0", f"{path}:1")
    instructed = read_pair_examples(path, instruction="Rewrite the follow-up as a standalone question.")
    assert instructed[3].messages[0]["content"] == (
        "Rewrite the follow-up as a standalone question.\n\nWhat does a kidney do? | and the liver"
    )
    assert instructed[3].messages[1]["content"] == "What does the liver do?"


def test_pairs_with_custom_fields(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "p.jsonl", [json.dumps({"id": 7, "question": "q", "rewrite": "r"})])
    (example,) = read_pair_examples(path, input_field="question", output_field="rewrite")
    assert example.messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]
    assert example.id == "7"


# ---- multiple choice ---------------------------------------------------------------------------


def test_medqa_questions_answered_with_letter_and_text() -> None:
    path = TASKS / "medqa_tiny.jsonl"
    examples = read_multiple_choice_examples(path)
    assert len(examples) == 5
    first = examples[0]
    assert _roles(first) == ["user", "assistant"]
    user = first.messages[0]["content"]
    assert user.startswith("A junior orthopaedic surgery resident is completing a carpal tunnel repair")
    assert user.endswith(
        "\n\nA. Disclose the error to the patient and put it in the operative report\n"
        "B. Tell the attending that he cannot fail to disclose this mistake\n"
        "C. Report the physician to the ethics committee\n"
        "D. Refuse to dictate the operative report\n\n"
        f"{MULTIPLE_CHOICE_CUE}"
    )
    assert MULTIPLE_CHOICE_CUE == "Answer with the letter of the correct option."
    assert first.messages[1] == {
        "role": "assistant",
        "content": "B. Tell the attending that he cannot fail to disclose this mistake",
    }
    assert [e.messages[1]["content"][0] for e in examples] == ["B", "D", "B", "D", "B"]
    assert (first.id, first.source) == ("medqa_tiny-0", f"{path}:1")


def test_multiple_choice_options_as_list(tmp_path: Path) -> None:
    record = {"q": "2 + 2?", "choices": ["3", "4", "5"], "gold": "B"}
    path = _write_jsonl(tmp_path / "mc.jsonl", [json.dumps(record)])
    (example,) = read_multiple_choice_examples(
        path, question_field="q", options_field="choices", answer_field="gold"
    )
    assert example.messages[0]["content"] == f"2 + 2?\n\nA. 3\nB. 4\nC. 5\n\n{MULTIPLE_CHOICE_CUE}"
    assert example.messages[1]["content"] == "B. 4"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"question": "q", "options": {"A": "x", "B": "y"}, "answer_idx": "E"}, "field 'answer_idx' is 'E'"),
        (
            {"question": "q", "options": {"A": "x", "B": 2}, "answer_idx": "A"},
            "field 'options': option B should be a string",
        ),
        ({"question": "q", "options": "A or B", "answer_idx": "A"}, "field 'options' should be an object"),
        ({"question": "q", "options": {"A": "x"}}, "missing field 'answer_idx'"),
    ],
)
def test_bad_multiple_choice_record_names_field(tmp_path: Path, record: object, expected: str) -> None:
    path = _write_jsonl(tmp_path / "mc.jsonl", [json.dumps(record)])
    with pytest.raises(InputError) as err:
        read_multiple_choice_examples(path)
    assert str(err.value).startswith(f"{path}:1: {expected}")


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("C", "C"),
        ("C. foo", "C"),
        ("  (D) Polyarteritis nodosa", "D"),
        ("**A.** Disclose the error", "A"),
        ("The answer is B.", "B"),
        ("I think the correct answer is (E) because ...", "E"),
        ("Answer: C", "C"),
        ("b", None),
        ("the answer is b", None),
        ("none of these", None),
        ("A patient like this needs rest.", None),
        ("F. something", None),
        ("", None),
    ],
)
def test_multiple_choice_letter(reply: str, letter: str | None) -> None:
    assert multiple_choice_letter(reply) == letter


# ---- SQuAD -------------------------------------------------------------------------------------


def test_squad_examples_use_gold_context_and_first_answer() -> None:
    path = ASSETS / "squad_tiny.json"
    examples = read_squad_examples(path)
    assert [e.id for e in examples] == ["q1", "q2", "q3", "q4"]
    third = examples[2]
    passage = Passage("Super Bowl 50", "The game was played at Levi's Stadium in Santa Clara, California.")
    assert third.messages == [
        *qa_messages("Where was Super Bowl 50 played?", [passage]),
        {"role": "assistant", "content": "Levi's Stadium"},
    ]
    assert third.messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert third.source == f"{path}#data[0].paragraphs[1].qas[0]"


def test_squad_split_and_cap_per_paragraph() -> None:
    path = ASSETS / "squad_tiny.json"
    assert [e.id for e in read_squad_examples(path, split="eval")] == ["q1", "q2", "q3"]
    assert [e.id for e in read_squad_examples(path, split="train")] == ["q4"]
    assert [e.id for e in read_squad_examples(path, max_per_paragraph=1)] == ["q1", "q3", "q4"]


def test_squad_split_counts_on_real_dev_file() -> None:
    with as_file(files("slmkit") / "assets" / "squad-v1.1-dev.json") as path:
        assert len(read_squad_examples(path, split="train")) == 8046
        assert len(read_squad_examples(path, split="eval")) == 2524


def test_squad_question_without_answers_abstains(tmp_path: Path) -> None:
    data = {
        "data": [
            {
                "title": "A_B",
                "paragraphs": [{"context": "Text.", "qas": [{"id": "x", "question": "Q?", "answers": []}]}],
            }
        ]
    }
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    (example,) = read_squad_examples(path)
    assert example.messages[-1] == {"role": "assistant", "content": ABSTAIN_ANSWER}
    assert example.messages[1]["content"].startswith("Context:\n[1] A B\nText.")


def test_squad_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'test'"):
        read_squad_examples(ASSETS / "squad_tiny.json", split="test")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_per_paragraph"):
        read_squad_examples(ASSETS / "squad_tiny.json", max_per_paragraph=0)
    with pytest.raises(InputError, match=r"nope\.json"):
        read_squad_examples(tmp_path / "nope.json")


def test_squad_split_without_articles_holds_no_examples(tmp_path: Path) -> None:
    data = {"data": [{"title": "Only", "paragraphs": [{"context": "c", "qas": []}]}]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError, match=r"one\.json \(split 'train'\): holds no examples"):
        read_squad_examples(path, split="train")


# ---- bad input shared by all record readers ----------------------------------------------------


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file"):
        read_pair_examples(tmp_path / "nope.jsonl")


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("input,output\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"data\.csv: unsupported file type '\.csv'"):
        read_pair_examples(path)


def test_malformed_jsonl_line_names_line(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "p.jsonl", [json.dumps({"input": "a", "output": "b"}), "", "{oops"])
    with pytest.raises(InputError, match=r"p\.jsonl:3: not valid JSON"):
        read_pair_examples(path)


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('[\n  {"input": "a",, "output": "b"}\n]', encoding="utf-8")
    with pytest.raises(InputError, match=r"p\.json:2:17: not valid JSON"):
        read_pair_examples(path)


def test_json_must_be_a_list(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"data": []}), encoding="utf-8")
    with pytest.raises(
        InputError, match=r"p\.json: expected a JSON list of records, got an object .*'squad'"
    ):
        read_pair_examples(path)


def test_record_must_be_an_object(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "p.jsonl", ['"just text"'])
    with pytest.raises(InputError, match=r"p\.jsonl:1: expected a JSON object \(a record\), got a string"):
        read_pair_examples(path)


def test_missing_field_names_record_index_and_lists_fields(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps([{"input": "a", "output": "b"}, {"input": "a", "target": "b"}]), encoding="utf-8"
    )
    with pytest.raises(InputError) as err:
        read_pair_examples(path)
    assert str(err.value) == f"{path}#1: missing field 'output'; this record has fields: 'input', 'target'"


def test_non_string_field_names_line_and_type(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "a.jsonl", [json.dumps({"instruction": ["x"], "output": "y"})])
    with pytest.raises(InputError) as err:
        read_instruction_examples(path)
    assert str(err.value) == (
        f"{path}:1: field 'instruction' should be a string, got a list; "
        "this record has fields: 'instruction', 'output'"
    )


def test_bad_id_field(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "p.jsonl", [json.dumps({"id": [1], "input": "a", "output": "b"})])
    with pytest.raises(InputError, match=r"p\.jsonl:1: field 'id' should be a string or an integer"):
        read_pair_examples(path)


def test_empty_file_holds_no_examples(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "empty.jsonl", ["", "   "])
    with pytest.raises(InputError, match=r"empty\.jsonl: holds no examples"):
        read_chat_examples(path)
    listed = tmp_path / "empty.json"
    listed.write_text("[]", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty\.json: holds no examples"):
        read_instruction_examples(listed)


def test_empty_target_is_skipped_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write_jsonl(
        tmp_path / "p.jsonl",
        [json.dumps({"input": "a", "output": "  "}), json.dumps({"input": "c", "output": "d"})],
    )
    with caplog.at_level(logging.WARNING, logger="slmkit.data.tasks"):
        examples = read_pair_examples(path)
    assert [e.source for e in examples] == [f"{path}:2"]
    assert f"{path}:1: empty prompt or target, skipped" in caplog.text


def test_non_utf8_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"input": "caf\xe9", "output": "x"}\n')
    with pytest.raises(InputError, match=r"p\.jsonl: not valid UTF-8"):
        read_pair_examples(path)


# ---- dispatcher and split ----------------------------------------------------------------------


def test_read_task_dispatches_with_options() -> None:
    examples = read_task(TASKS / "rewrite_tiny.jsonl", "pairs", instruction="Rewrite.")
    assert examples[0].messages[0]["content"].startswith("Rewrite.\n\n")
    assert len(read_task(ASSETS / "squad_tiny.json", "squad", split="train")) == 1
    assert len(read_task(TASKS / "chat_tiny.jsonl", "chat")) == 3
    assert len(read_task(TASKS / "alpaca_tiny.json", "instruction")) == 6
    assert len(read_task(TASKS / "medqa_tiny.jsonl", "multiple_choice")) == 5


def test_read_task_unknown_task_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        read_task(TASKS / "chat_tiny.jsonl", "summaries")  # type: ignore[arg-type]
    assert "'summaries'" in str(err.value)
    assert "squad, instruction, chat, pairs, multiple_choice" in str(err.value)


def test_read_task_unknown_option_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"does not take option.* split; its options are: input_field"):
        read_task(TASKS / "rewrite_tiny.jsonl", "pairs", split="train")


def _examples(count: int) -> list[Example]:
    return [
        Example(messages=[{"role": "assistant", "content": str(i)}], id=str(i), source="x")
        for i in range(count)
    ]


def test_split_examples_is_deterministic_and_disjoint() -> None:
    examples = _examples(20)
    train, val = split_examples(examples, 0.25, seed=3)
    assert (len(train), len(val)) == (15, 5)
    assert split_examples(examples, 0.25, seed=3) == (train, val)
    assert sorted(e.id for e in train + val) == sorted(e.id for e in examples)
    assert split_examples(examples, 0.25, seed=4)[1] != val
    assert [e.id for e in examples] == [str(i) for i in range(20)]  # the input is not shuffled in place


@pytest.mark.parametrize(
    ("count", "fraction", "sizes"), [(2, 0.01, (1, 1)), (2, 0.99, (1, 1)), (1, 0.5, (1, 0))]
)
def test_split_examples_keeps_both_sides_when_possible(
    count: int, fraction: float, sizes: tuple[int, int]
) -> None:
    train, val = split_examples(_examples(count), fraction, seed=0)
    assert (len(train), len(val)) == sizes


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_examples_rejects_fraction_outside_0_1(fraction: float) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        split_examples(_examples(4), fraction, seed=0)
