"""Textual inversion's restore, as the diffusers training script writes it.

Where from: ``examples/textual_inversion/textual_inversion.py`` in huggingface/diffusers (Apache
2.0; read at commit 000280f56a6a81e355313e77ec831575ad571d8b). The script optimises the text
encoder's whole token embedding (``torch.optim.AdamW(text_encoder.get_input_embeddings()
.parameters(), ...)``), keeps ``orig_embeds_params``, a clone of the whole table taken before
training, and after every ``optimizer.step()`` writes back every row outside
``min(placeholder_token_ids) : max(placeholder_token_ids) + 1``::

    index_no_updates = torch.ones((len(tokenizer),), dtype=torch.bool)
    index_no_updates[min(placeholder_token_ids) : max(placeholder_token_ids) + 1] = False
    with torch.no_grad():
        ...get_input_embeddings().weight[index_no_updates] = orig_embeds_params[index_no_updates]

What was kept: those lines, run after every optimizer step (here an optimizer step post-hook that
``attach`` registers, so the training loop is the plain one), the whole table as the optimised
parameter, the whole-table snapshot, and the script's refusal of zero placeholder tokens
(``--num_vectors has to be larger or equal to 1``). The embedding is an ``nn.Embedding`` with the
scenario's options into which the pretrained table is loaded, as ``from_pretrained`` loads the
text encoder's checkpoint (not aliasing the caller's tensor); ``effective_weight`` is that
embedding's weight, what an output layer tied to it would multiply by. The script's optimizer is
the scenario's.
What it breaks: the rows written back are those outside the *span* of the placeholder ids, which
is every frozen row only when the trainable ids are contiguous (the script adds its placeholder
tokens together at the end of the vocabulary). Any frozen row between two trainable ones trains.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TextualInversionEmbedding(nn.Module):
    """The token embedding, trained whole, with the script's write-back after each step."""

    def __init__(self, weight: Tensor, placeholder_token_ids: list[int], **options):
        super().__init__()
        num_rows, dim = weight.shape
        self.embedding = nn.Embedding(
            num_rows, dim, **options, device=weight.device, dtype=weight.dtype
        )
        with torch.no_grad():
            self.embedding.weight.copy_(weight)
        self.placeholder_token_ids = placeholder_token_ids
        # keep original embeddings as reference
        orig_embeds_params = self.embedding.weight.data.clone()
        self.register_buffer("orig_embeds_params", orig_embeds_params, persistent=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.embedding(input_ids)

    def effective_weight(self) -> Tensor:
        """What an output layer tied to the embedding multiplies by: its weight."""
        return self.embedding.weight

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.register_step_post_hook(lambda *_: self.restore())

    def restore(self) -> None:
        placeholder_token_ids = self.placeholder_token_ids
        orig_embeds_params = self.orig_embeds_params
        # Let's make sure we don't update any embedding weights besides the newly added token
        index_no_updates = torch.ones((self.embedding.num_embeddings,), dtype=torch.bool)
        index_no_updates[min(placeholder_token_ids) : max(placeholder_token_ids) + 1] = False

        with torch.no_grad():
            self.embedding.weight[index_no_updates] = orig_embeds_params[index_no_updates]


def diffusers_ti_restore(weight: Tensor, trainable: Tensor, **options) -> TextualInversionEmbedding:
    """The script's embedding for ``weight`` whose ``trainable`` rows are the placeholder tokens."""
    placeholder_token_ids = trainable.nonzero().squeeze(1).tolist()
    if len(placeholder_token_ids) < 1:
        raise ValueError(
            f"--num_vectors has to be larger or equal to 1, but is {len(placeholder_token_ids)} "
            "(diffusers_ti_restore: textual inversion trains at least one placeholder token)"
        )
    return TextualInversionEmbedding(weight, placeholder_token_ids, **options)
