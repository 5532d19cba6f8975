"""llama.cpp's thread count follows the cores the process may run on, not the machine's."""

import os

import pytest

from slmkit.errors import ConfigError
from slmkit.models import llama_cpp


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv("SLMKIT_THREADS", raising=False)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_threads_follow_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert llama_cpp.cpu_threads() == 1


def test_without_affinity_all_cores(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert llama_cpp.cpu_threads() == 6


def test_unknown_core_count_means_one_thread(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert llama_cpp.cpu_threads() == 1


def test_slmkit_threads_overrides_the_cores(monkeypatch):
    monkeypatch.setenv("SLMKIT_THREADS", " 1 ")
    assert llama_cpp.cpu_threads() == 1


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_slmkit_threads_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("SLMKIT_THREADS", value)
    with pytest.raises(ConfigError, match=rf"SLMKIT_THREADS='{value}': give a whole number"):
        llama_cpp.cpu_threads()
