"""Loss computed on answer tokens only, for causal LMs of every family and encoder-decoders.

A model's forward pass normally projects *every* position onto the vocabulary (49,152 entries for
SmolLM2) before the loss throws most of them away. On QA data most positions are context, so slmkit
runs the transformer body, keeps the hidden states that predict a labelled token, and projects only
those: same loss, a fraction of the lm-head compute and memory.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from slmkit.train.tokenize import IGNORE


def _causal_lm(model: Any) -> Any:
    """The underlying ``*ForCausalLM`` / ``*ForConditionalGeneration`` (unwrapping a PEFT model)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def answer_logits(
    model: Any, batch: dict[str, torch.Tensor], every_token: bool = False, through_forward: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (fp32, ``[tokens, vocab]``) at the positions that predict a labelled token, and
    those tokens (``[tokens]``), in batch order.

    With ``every_token``, every position that predicts a real (not padding) token is kept, prompt
    included; the targets of prompt positions are ``IGNORE``. An encoder-decoder's labels are its
    decoder targets, all answer: every labelled decoder position is kept. With ``through_forward``,
    the model's own forward runs (projecting the columns where any row has such a position), as a
    model sharded with FSDP needs: its hooks gather the weights on the forward of the model it wraps.
    """
    lm = _causal_lm(model)
    if lm.config.is_encoder_decoder:
        return _decoder_logits(lm, batch)
    # Position t predicts token t+1.
    targets = batch["labels"][:, 1:]
    keep = batch["attention_mask"][:, 1:].bool() if every_token else targets != IGNORE
    if through_forward:
        columns = keep.any(dim=0).nonzero().squeeze(1)
        output = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=columns
        )
        return output.logits[keep[:, columns]].float(), targets[keep]
    # The body and the head, found the same way for every family (Llama's `model`, GPT-2's
    # `transformer`, phi's final layer norm inside its body; the head is `lm_head` everywhere).
    body = lm.get_decoder()
    hidden = body(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state
    selected = hidden[:, :-1][keep]
    logits = lm.get_output_embeddings()(selected).float()
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits, targets[keep]


def _decoder_logits(lm: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    # The decoder sees only the answer, so projecting all its positions costs little, and the
    # model's own forward keeps what each family adds after the head (BART's final_logits_bias,
    # T5's rescaling of tied embeddings).
    labels = batch["labels"]
    decoder_input_ids = lm.prepare_decoder_input_ids_from_labels(labels=labels)
    output = lm(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=decoder_input_ids,
        use_cache=False,
    )
    keep = labels != IGNORE
    return output.logits[keep].float(), labels[keep]


def answer_loss(
    model: Any, batch: dict[str, torch.Tensor], through_forward: bool = False
) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over labelled tokens, and how many tokens it averaged over."""
    logits, targets = answer_logits(model, batch, through_forward=through_forward)
    return F.cross_entropy(logits, targets, reduction="mean"), int(targets.numel())


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Knowledge-distillation loss of Hinton et al. (2015), "Distilling the Knowledge in a Neural
    Network", over answer tokens:

        alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − alpha) · CE(student, targets)

    The KL is summed over the vocabulary and averaged over tokens; the cross-entropy is averaged
    over the tokens whose target is not ``IGNORE`` (all of them, unless prompt positions were passed
    too). The gradient of the softened KL shrinks as 1/T², so the T² factor keeps its weight against
    the hard-label term the same whatever the temperature. Logits are ``[tokens, vocab]``; when the
    two vocabularies differ only by padding rows (embedding tables rounded up), both are cut to the
    shorter one.

    Returns:
        ``(loss, kl, ce)``: the mixed loss and its two unweighted parts (KL without the T²).
    """
    vocab = min(student_logits.shape[-1], teacher_logits.shape[-1])
    student_logits, teacher_logits = student_logits[..., :vocab].float(), teacher_logits[..., :vocab].float()
    kl = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    ce = F.cross_entropy(student_logits, targets, ignore_index=IGNORE, reduction="mean")
    return alpha * temperature**2 * kl + (1 - alpha) * ce, kl, ce
