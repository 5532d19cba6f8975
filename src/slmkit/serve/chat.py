"""Interactive terminal chat over a knowledge base: streams tokens, keeps history, shows sources."""

from __future__ import annotations

from collections.abc import Callable

from slmkit.rag.answer import Answer, Answerer

HELP = "Commands: /sources (passages behind the last answer), /reset (forget history), /help, /quit"
HISTORY_TURNS = 4  # earlier turns kept in the prompt; more would crowd out retrieved context


def format_citations(answer: Answer) -> list[str]:
    """One line per citation: ``[n] title — source (position)``."""
    return [f"  [{c.index}] {c.title} — {c.source} #{c.position}" for c in answer.citations]


def format_sources(answer: Answer | None) -> list[str]:
    """The retrieved passages behind an answer, with scores and a preview of their text."""
    if answer is None or not answer.hits:
        return ["(no passages retrieved yet)"]
    lines = []
    for i, hit in enumerate(answer.hits, start=1):
        preview = " ".join(hit.chunk.text.split())[:160]
        # Per-passage reading also says how sure the reader was that this passage holds no answer.
        read = f", no answer {answer.no_answer[i - 1]:.2f}" if len(answer.no_answer) >= i else ""
        lines.append(
            f"[{i}] {hit.chunk.title} — {hit.chunk.source} #{hit.chunk.position} "
            f"(score {hit.score:.3f}, similarity {hit.dense_score:.2f}{read})\n    {preview}…"
        )
    return lines


def run_chat(
    answerer: Answerer,
    use_retrieval: bool = True,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
    stream: Callable[[str], None] | None = None,
) -> None:
    """Read questions until EOF or ``/quit``; ``read``/``write``/``stream`` are injectable for tests."""
    if stream is None:

        def stream(piece: str) -> None:
            print(piece, end="", flush=True)

    history: list[tuple[str, str]] = []
    last: Answer | None = None
    write(f"slmkit chat — model {answerer.generator.name}. {HELP}")
    while True:
        try:
            question = read("\nyou> ").strip()
        except (EOFError, KeyboardInterrupt):
            write("")
            return
        if not question:
            continue
        if question in {"/quit", "/exit"}:
            return
        if question == "/help":
            write(HELP)
            continue
        if question == "/reset":
            history.clear()
            write("(history cleared)")
            continue
        if question == "/sources":
            write("\n".join(format_sources(last)))
            continue
        stream("bot> ")
        last = answerer.ask(question, history[-HISTORY_TURNS:], on_text=stream, use_retrieval=use_retrieval)
        _finish_turn(last, write)
        history.append((question, last.text))


def _finish_turn(answer: Answer, write: Callable[[str], None]) -> None:
    if answer.abstained:
        streamed = bool(answer.raw_text)
        prefix = "\n" if streamed else ""
        write(f"{prefix}{'↳ ' if streamed else ''}{answer.text} ({answer.reason})")
        return
    write("")
    for line in format_citations(answer):
        write(line)
