"""A new, smaller student built from its teacher's model class and tokenizer.

The student keeps everything about the teacher that is not a size: the vocabulary and tokenizer
(so logit distillation compares the same tokens), the position encoding, activation and norms. Only
depth, width, heads and MLP size change. ``init="random"`` trains it from scratch; ``init="teacher"``
copies the teacher's embeddings, final norm and evenly spaced layers (as DistilBERT took every
other layer of BERT), which needs the teacher's width and differs only in depth.
"""

from __future__ import annotations

import copy
import logging

import torch
from transformers import AutoModelForCausalLM

from slmkit.config import StudentArchitecture
from slmkit.errors import ConfigError
from slmkit.models.loading import LoadedModel

logger = logging.getLogger(__name__)


def student_config(teacher_config, arch: StudentArchitecture):
    """The teacher's transformers config with the student's sizes."""
    config = copy.deepcopy(teacher_config)
    config.num_hidden_layers = arch.layers
    config.hidden_size = arch.hidden_size
    config.num_attention_heads = arch.heads
    config.num_key_value_heads = arch.kv_heads or arch.heads
    config.intermediate_size = arch.intermediate_size
    config.tie_word_embeddings = arch.tie_embeddings
    if hasattr(config, "head_dim"):
        config.head_dim = arch.hidden_size // arch.heads
    if getattr(config, "layer_types", None):
        # Models that mix attention kinds (Gemma 3: five sliding-window layers, one global) keep
        # the pattern from the first layer on.
        pattern = list(config.layer_types)
        config.layer_types = [pattern[i % len(pattern)] for i in range(arch.layers)]
    for key in ("_name_or_path", "_model_name_or_path"):
        if hasattr(config, key):
            setattr(config, key, "slmkit-student")
    return config


def teacher_layer_indices(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers, always including the first and the last."""
    if student_layers == 1:
        return [teacher_layers - 1]
    return [round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers)]


def build_student(
    teacher: LoadedModel, arch: StudentArchitecture, init: str = "random", seed: int = 0
) -> LoadedModel:
    """A new student with ``arch``'s sizes and the teacher's tokenizer, in fp32.

    Args:
        teacher: The loaded teacher (its config class, tokenizer and, for ``init="teacher"``, weights).
        arch: Depth, width, heads and MLP size of the student.
        init: ``random`` (from scratch, seeded) or ``teacher`` (copy embeddings and layers).
        seed: Seed of the random initialisation.

    Raises:
        ConfigError: ``init="teacher"`` with sizes other than the teacher's, or more layers.
    """
    config = student_config(teacher.model.config, arch)
    if init == "teacher":
        _check_copyable(teacher.model.config, config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if init == "teacher":
        _copy_teacher_weights(teacher.model, model)
    # Same stop tokens and defaults as the teacher, so both answer the same way.
    model.generation_config = copy.deepcopy(teacher.model.generation_config)
    model.eval()
    student = LoadedModel(name="student", model=model, tokenizer=teacher.tokenizer, path=None)
    logger.info(
        "student: %d layers, hidden %d, %d heads (%d kv), MLP %d: %.1fM parameters (teacher %.1fM)",
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.intermediate_size,
        student.num_parameters / 1e6,
        teacher.num_parameters / 1e6,
    )
    return student


def _check_copyable(teacher_config, config) -> None:
    sizes = ("hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size")
    different = [
        f"{key} {getattr(config, key)} (teacher {getattr(teacher_config, key)})"
        for key in sizes
        if getattr(config, key) != getattr(teacher_config, key)
    ]
    if config.tie_word_embeddings != teacher_config.tie_word_embeddings:
        different.append(f"tie_embeddings {config.tie_word_embeddings}")
    if different:
        raise ConfigError(
            "student.init 'teacher' copies the teacher's layers, so the student must have the teacher's "
            f"sizes and only fewer layers; different: {', '.join(different)}. Use init: random, or "
            "change student.architecture to match"
        )
    if config.num_hidden_layers > teacher_config.num_hidden_layers:
        raise ConfigError(
            f"student.init 'teacher': the student has {config.num_hidden_layers} layers but the teacher "
            f"only {teacher_config.num_hidden_layers}"
        )


def _copy_teacher_weights(teacher: torch.nn.Module, student: torch.nn.Module) -> None:
    layers = teacher_layer_indices(teacher.config.num_hidden_layers, student.config.num_hidden_layers)
    source = teacher.state_dict()
    renamed = {}
    for name in student.state_dict():
        teacher_name = name
        if ".layers." in name:
            head, rest = name.split(".layers.", 1)
            index, tail = rest.split(".", 1)
            teacher_name = f"{head}.layers.{layers[int(index)]}.{tail}"
        renamed[name] = source[teacher_name]
    student.load_state_dict(renamed)
    logger.info("student initialised from teacher layers %s", layers)
