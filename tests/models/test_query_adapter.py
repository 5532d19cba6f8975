"""The cache of merged query encoders stays bounded."""

from __future__ import annotations

import os

from slmkit.models.query_adapter import evict_query_encoders


def test_all_but_the_most_recently_used_encoders_and_their_ggufs_are_evicted(tmp_path):
    (tmp_path / "gguf").mkdir()
    names = [f"20261203T0{i}0000000000-{i:016x}" for i in range(4)]
    for age, name in enumerate(reversed(names)):  # names[3] is the newest, names[0] the oldest
        folder = tmp_path / "query-encoders" / name
        folder.mkdir(parents=True)
        (folder / "modules.json").write_text("[]")
        os.utime(folder, (1e9 - age * 100, 1e9 - age * 100))
        (tmp_path / "gguf" / f"{name}-abcdef-f32.gguf").write_bytes(b"GGUF")
    (tmp_path / "gguf" / "gemma-3-270m-q4_k_m-1234-f32.gguf").write_bytes(b"GGUF")  # not an encoder's
    (tmp_path / "query-encoders" / ".staging-x").mkdir()  # another process writing one now

    assert sorted(evict_query_encoders(tmp_path, keep=2)) == names[:2]
    assert sorted(p.name for p in (tmp_path / "query-encoders").iterdir()) == [".staging-x", *names[2:]]
    assert sorted(p.name for p in (tmp_path / "gguf").iterdir()) == [
        f"{names[2]}-abcdef-f32.gguf",
        f"{names[3]}-abcdef-f32.gguf",
        "gemma-3-270m-q4_k_m-1234-f32.gguf",
    ]
    assert evict_query_encoders(tmp_path / "empty") == []
