"""Atomic writes replace the whole file and leave it with the mode a plain open() would give."""

from __future__ import annotations

import json
import os
import stat

import pytest

from slmkit.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_follows_the_umask(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old")
    old_umask = os.umask(0o022)
    try:
        atomic_write_text(path, "new")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # shareable, not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"f1": 1.0})
    with pytest.raises(TypeError):
        atomic_write_text(path, None)  # type: ignore[arg-type]
    assert json.loads(path.read_text()) == {"f1": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_write_bytes_writes_them_unchanged(tmp_path):
    path = tmp_path / "upload.pdf"
    path.write_bytes(b"old")
    atomic_write_bytes(path, b"%PDF-1.4\r\n\x00\xff")
    assert path.read_bytes() == b"%PDF-1.4\r\n\x00\xff"  # no newline or encoding translation
    assert [p.name for p in tmp_path.iterdir()] == ["upload.pdf"]


def test_journal_drops_a_cut_off_last_line_and_appends_on_a_fresh_one(tmp_path):
    from slmkit.atomic import append_journal, read_journal

    path = tmp_path / "log.jsonl"
    assert read_journal(path) == []
    with path.open("a", encoding="utf-8") as journal:
        append_journal(journal, {"n": 1})
    with path.open("a", encoding="utf-8") as f:
        f.write('{"n": 2, "tr')  # a crash in the middle of a write
    assert read_journal(path) == ['{"n": 1}']
    assert path.read_text() == '{"n": 1}\n'  # truncated, so the next record starts its own line
    with path.open("a", encoding="utf-8") as journal:
        append_journal(journal, {"n": 3, "text": "café"})
    assert read_journal(path) == ['{"n": 1}', '{"n": 3, "text": "café"}']


def test_atomic_folder_replaces_the_target_only_when_the_block_succeeds(tmp_path):
    from slmkit.atomic import atomic_folder

    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("killed mid-write")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left behind
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_folder(target) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
