"""JSON that users wrote (sources, task data, SQuAD files), parsed with errors that name the place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slmkit.errors import InputError


def parse_json(text: str, path: str | Path, line: int | None = None) -> Any:
    """``text`` parsed as JSON: the whole file ``path``, or its line ``line`` (JSON Lines).

    Raises:
        InputError: ``FILE:LINE:COLUMN: not valid JSON: ...`` (``FILE:LINE: ... (column C)`` for one
            line of JSON Lines), or the value is nested deeper than Python's JSON reader can follow.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        if line is None:
            raise InputError(f"{path}:{err.lineno}:{err.colno}: not valid JSON: {err.msg}") from None
        raise InputError(f"{path}:{line}: not valid JSON: {err.msg} (column {err.colno})") from None
    except RecursionError:  # "[[[[..." thousands deep: the reader recurses once per level
        where = path if line is None else f"{path}:{line}"
        raise InputError(f"{where}: JSON nested too deeply to read; is this the file you meant?") from None
