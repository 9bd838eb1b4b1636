"""The two-table class of the question that started rowfreeze, as posted.

Where from: the accepted answer to "Is it possible to freeze only certain embedding weights in
the embedding layer in pytorch?" (https://stackoverflow.com/questions/54924582), section
"1. Divide embeddings into two separate objects" (CC BY-SA 4.0): a frozen ``nn.Embedding`` of the
GloVe rows, a trainable one for the words GloVe lacks, and a forward that sends each id to one of
them. ``YourNetwork`` below is that class line for line, its comments included.
What had to change for it to run at all, and nothing else: ``super().__init__()`` (without it,
assigning a submodule raises ``AttributeError``), ``batch.clone()`` for ``batch.copy()``
(tensors have no ``copy``), and ``return embedded_batch`` where the answer continues with
``# Rest of your code``.
What stays, and what the verification matrix shows: the test ``batch > num_embeddings`` sends the
first new id (``num_embeddings`` itself) to the pretrained table, which has no such row
(``IndexError``), so the table cannot be read at all; ``batch -= ...`` and ``batch[~mask] = 0``
rewrite the caller's id tensor in place; and the class assumes the pretrained rows come first.

The factory ``seed_two_tables`` is what a user writes around it: it builds the class from the
pretrained rows and the count of new ones, moves it to the table's device and dtype, and starts
the new rows from the given table (the answer leaves them at ``nn.Embedding``'s random
initialisation). A mask the class cannot express (a trainable row before a frozen one) is refused
with ``ValueError``: the layout is the answer's precondition, not something to remap silently.
It takes no embedding options, as the class takes none.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class YourNetwork(torch.nn.Module):
    def __init__(self, glove_embeddings: np.array, how_many_tokens_not_present: int):
        super().__init__()  # rowfreeze: missing in the answer
        self.pretrained_embedding = torch.nn.Embedding.from_pretrained(glove_embeddings)
        self.trainable_embedding = torch.nn.Embedding(
            how_many_tokens_not_present, glove_embeddings.shape[1]
        )
        # Rest of your network setup

    def forward(self, batch):
        # Which tokens in batch do not have representation, should have indices BIGGER
        # than the pretrained ones, adjust your data creating function accordingly
        mask = batch > self.pretrained_embedding.num_embeddings

        # You may want to optimize it, you could probably get away without copy, though
        # I'm not currently sure how
        pretrained_batch = batch.clone()  # rowfreeze: batch.copy() in the answer
        pretrained_batch[mask] = 0

        embedded_batch = self.pretrained_embedding(pretrained_batch)

        # Every token without representation has to be brought into appropriate range
        batch -= self.pretrained_embedding.num_embeddings
        # Zero out the ones which already have pretrained embedding
        batch[~mask] = 0
        non_pretrained_embedded_batch = self.trainable_embedding(batch)

        # And finally change appropriate tokens from placeholder embedding created by
        # pretrained into trainable embeddings.
        embedded_batch[mask] = non_pretrained_embedded_batch[mask]

        return embedded_batch  # rowfreeze: "# Rest of your code" in the answer


def seed_two_tables(weight: Tensor, trainable: Tensor) -> YourNetwork:
    """``YourNetwork`` for ``weight`` whose ``trainable`` rows are the new words."""
    num_rows = weight.shape[0]
    num_pretrained = int((~trainable).sum())
    if not torch.equal(trainable.cpu(), torch.arange(num_rows) >= num_pretrained):
        raise ValueError(
            "seed_two_tables: the answer's class takes the pretrained rows first and the new rows "
            f"after them; this mask of {num_rows} rows has trainable rows "
            f"{trainable.nonzero().squeeze(1).tolist()[:8]} before a frozen one"
        )
    network = YourNetwork(weight[:num_pretrained], num_rows - num_pretrained).to(weight)
    with torch.no_grad():
        network.trainable_embedding.weight.copy_(weight[num_pretrained:])
    return network
