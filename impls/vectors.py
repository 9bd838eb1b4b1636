"""Embedding inputs from a pretrained vectors file and a vocabulary: the case rowfreeze exists for.

A user holds pretrained vectors (GloVe, word2vec) and a data set whose vocabulary they only
partly cover. :func:`load_vectors` returns the ``(V, D)`` table, the bool mask of rows that may
train (the words the file lacks) and the word-to-id mapping, ready for any approach's
``from_pretrained(weight, trainable, padding_idx=...)``.

The file is read by :func:`impls.vectors_file.read_vectors`, which refuses what gensim would read
unfaithfully.

Special tokens are never looked up in the file:

- ``pad_token`` (default ``"<pad>"``) gets id 0, a zero vector and is **frozen**, so it can be
  passed as ``padding_idx`` and stays exactly zero under every approach, weight decay included.
- ``unk_token`` (default ``"<unk>"``) comes next and is **trainable**, initialised like a new word:
  words unseen in training share it, so it should learn what an unseen word tends to mean.

gensim is an optional dependency (``pip install 'rowfreeze[vectors]'``), imported only by
:mod:`impls.vectors_file`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from gensim.models import KeyedVectors

from .vectors_file import FORMATS, VectorsFileError, check_choice, read_vectors

__all__ = [
    "FORMATS",
    "INIT_STRATEGIES",
    "EmbeddingInputs",
    "VectorsFileError",
    "load_vectors",
    "read_vectors",
]

INIT_STRATEGIES = {
    "normal": "independent normal values, mean 0 and the standard deviation of every value in "
    "the file, so new rows have the pretrained rows' scale",
    "zeros": "all zeros",
    "mean": "the mean of the file's vectors",
}

# Exceptions gensim raises on a malformed file (float(), int(), numpy broadcasting, EOF checks,
# and a TypeError/AssertionError on shapes it could not deduce).
GENSIM_READ_ERRORS = (ValueError, TypeError, EOFError, AssertionError, IndexError)


@dataclass(frozen=True, eq=False)
class EmbeddingInputs:
    """What an approach's ``from_pretrained`` needs, and the counts that show nothing was dropped.

    ``found + new`` is the vocabulary's length; ``weight`` has one more row per special token.
    """

    weight: Tensor
    """``(V, D)`` float32: zeros for padding, the file's vector for a found word, else the init."""
    trainable: Tensor
    """bool ``(V,)``: True for new words and the unknown token, False for found words and pad."""
    word_to_id: dict[str, int]
    """Every row's word, specials first, then the vocabulary in the order given."""
    found: int
    """Vocabulary words whose vector came from the file (frozen rows)."""
    new: int
    """Vocabulary words the file lacks (trainable rows, initialised by the chosen strategy)."""
    padding_idx: int | None
    unknown_idx: int | None

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; a word outside the vocabulary maps to the unknown token."""
        ids = []
        for token in tokens:
            token_id = self.word_to_id.get(token, self.unknown_idx)
            if token_id is None:
                raise KeyError(
                    f"tokens: {token!r} is not in the vocabulary and no unk_token was given"
                )
            ids.append(token_id)
        return ids


def load_vectors(
    path: str | os.PathLike,
    vocabulary: Iterable[str],
    format: str = "glove",
    init: str = "normal",
    seed: int = 0,
    lowercase: bool = False,
    pad_token: str | None = "<pad>",
    unk_token: str | None = "<unk>",
) -> EmbeddingInputs:
    """Build the embedding table for ``vocabulary`` from the pretrained vectors in ``path``.

    ``format`` is one of :data:`FORMATS`; ``init`` (one of :data:`INIT_STRATEGIES`) fills the rows
    of words the file lacks and of ``unk_token``, drawn from a generator seeded with ``seed``.
    With ``lowercase=True`` a word not found as written is looked up lower-cased (GloVe 6B's
    words are all lower-case); the vocabulary keeps its own spelling in ``word_to_id``.
    """
    check_choice("format", format, FORMATS)
    check_choice("init", init, INIT_STRATEGIES)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    specials = special_tokens(pad_token, unk_token)
    words = check_vocabulary(vocabulary, specials)
    file_vectors = read_vectors(path, format)

    id_to_word = specials + words
    file_rows = [find_row(file_vectors, word, lowercase) for word in words]
    found_ids = [len(specials) + i for i, row in enumerate(file_rows) if row is not None]
    trainable = torch.ones(len(id_to_word), dtype=torch.bool)
    trainable[found_ids] = False
    padding_idx = 0 if pad_token is not None else None
    if padding_idx is not None:
        trainable[padding_idx] = False

    weight = torch.zeros(len(id_to_word), file_vectors.vector_size)
    weight[trainable] = new_rows(init, int(trainable.sum()), file_vectors.vectors, seed)
    weight[found_ids] = torch.from_numpy(
        file_vectors.vectors[[row for row in file_rows if row is not None]]
    )
    return EmbeddingInputs(
        weight=weight,
        trainable=trainable,
        word_to_id={word: i for i, word in enumerate(id_to_word)},
        found=len(found_ids),
        new=len(words) - len(found_ids),
        padding_idx=padding_idx,
        unknown_idx=id_to_word.index(unk_token) if unk_token is not None else None,
    )


def special_tokens(pad_token: str | None, unk_token: str | None) -> list[str]:
    for argument, token in (("pad_token", pad_token), ("unk_token", unk_token)):
        if token is not None and (not isinstance(token, str) or not token):
            raise TypeError(f"{argument}: expected a non-empty str or None, got {token!r}")
    if pad_token is not None and pad_token == unk_token:
        raise ValueError(f"pad_token and unk_token: must differ, both are {pad_token!r}")
    return [token for token in (pad_token, unk_token) if token is not None]


def check_vocabulary(vocabulary: Iterable[str], specials: Sequence[str]) -> list[str]:
    """The vocabulary as a list of distinct non-empty words, none of them a special token."""
    if isinstance(vocabulary, str) or not isinstance(vocabulary, Iterable):
        raise TypeError(
            f"vocabulary: expected an iterable of words (list, set, dict keys), "
            f"got {type(vocabulary).__name__}"
        )
    words = list(vocabulary)
    if not words:
        raise ValueError("vocabulary: is empty; expected at least one word")
    position: dict[str, int] = {}
    for i, word in enumerate(words):
        if not isinstance(word, str) or not word:
            raise TypeError(f"vocabulary: item {i} is {word!r}; expected a non-empty str")
        if word in specials:
            raise ValueError(
                f"vocabulary: item {i} is the special token {word!r}; specials are added "
                f"by load_vectors (pass pad_token/unk_token=None to leave one out)"
            )
        if word in position:
            raise ValueError(
                f"vocabulary: {word!r} appears twice, at items {position[word]} and {i}"
            )
        position[word] = i
    return words


def find_row(file_vectors: KeyedVectors, word: str, lowercase: bool) -> int | None:
    """The file's row for ``word``, with ``lowercase`` else for ``word.lower()``; None if absent."""
    row = file_vectors.key_to_index.get(word)
    if row is None and lowercase:
        row = file_vectors.key_to_index.get(word.lower())
    return row


def new_rows(init: str, count: int, file_vectors: np.ndarray, seed: int) -> Tensor:
    """``count`` rows filled by ``init``; statistics come from every vector in the file, so they
    do not depend on which vocabulary words happen to be found."""
    width = file_vectors.shape[1]
    if init == "zeros":
        return torch.zeros(count, width)
    if init == "mean":
        return torch.from_numpy(file_vectors.mean(axis=0)).expand(count, width)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, width, generator=generator) * float(file_vectors.std())
