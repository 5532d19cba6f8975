"""Opening a GGUF: llama.cpp's extra weight buffers are kept off on CPUs where they crash."""

from types import SimpleNamespace

import pytest

from slmkit.models import llama_cpp


def _fake_llama_cpp(seen: list) -> SimpleNamespace:
    """A stand-in for the llama_cpp package: Llama records the model parameters it would load with."""
    low_level = SimpleNamespace(llama_model_default_params=lambda: SimpleNamespace(use_extra_bufts=True))

    def llama(**kwargs):
        seen.append((kwargs, low_level.llama_model_default_params().use_extra_bufts))
        return "engine"

    return SimpleNamespace(llama_cpp=low_level, Llama=llama)


@pytest.mark.parametrize("amx", [True, False])
def test_extra_weight_buffers_are_off_only_on_amx_cpus_and_only_during_the_load(monkeypatch, amx):
    """llama.cpp's AMX weight buffers segfault on the first batch (llama-cpp-python 0.3.36): off
    there, left to llama.cpp elsewhere, and the library's defaults are restored after the load."""
    monkeypatch.setattr(llama_cpp, "cpu_has_amx", lambda: amx)
    seen: list = []
    fake = _fake_llama_cpp(seen)
    assert llama_cpp.open_llama(fake, model_path="m.gguf", n_ctx=8) == "engine"
    assert seen == [({"model_path": "m.gguf", "n_ctx": 8}, not amx)]
    assert fake.llama_cpp.llama_model_default_params().use_extra_bufts is True
