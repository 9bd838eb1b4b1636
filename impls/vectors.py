"""Embedding inputs from a pretrained vectors file and a vocabulary: the case rowfreeze exists for.

A user holds pretrained vectors (GloVe, word2vec) and a data set whose vocabulary they only
partly cover. :func:`load_vectors` returns the ``(V, D)`` table, the bool mask of rows that may
train (the words the file lacks) and the word-to-id mapping, ready for any approach's
``from_pretrained(weight, trainable, padding_idx=...)``.

Files are read by gensim's ``KeyedVectors`` (GloVe text has no header; word2vec text and binary
have a ``<count> <dimensions>`` header) so that parsing is the one the ecosystem already trusts.
What gensim leaves out is added here, because a "frozen" row is only worth proving untouched if it
was read faithfully: errors name the file and, for text files, the line (gensim's own messages
name neither), and the cases gensim passes silently are refused — a repeated word (gensim keeps
the first vector and leaves an empty slot), a word2vec text header that declares fewer vectors
than the file holds (gensim stops reading), trailing bytes after a binary file's declared vectors,
and NaN or infinite values (``torch.equal`` can never prove a NaN row unchanged).

Special tokens are never looked up in the file:

- ``pad_token`` (default ``"<pad>"``) gets id 0, a zero vector and is **frozen**, so it can be
  passed as ``padding_idx`` and stays exactly zero under every approach, weight decay included.
- ``unk_token`` (default ``"<unk>"``) comes next and is **trainable**, initialised like a new word:
  words unseen in training share it, so it should learn what an unseen word tends to mean.

gensim is an optional dependency (``pip install 'rowfreeze[vectors]'``), imported only here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from gensim.models import KeyedVectors

FORMATS = {
    "glove": "GloVe text: one '<word> <value> ... <value>' line per word, no header",
    "word2vec": "word2vec text: a '<count> <dimensions>' header line, then one line per word",
    "word2vec_binary": "word2vec binary: a '<count> <dimensions>' header line, then "
    "'<word> ' and <dimensions> float32 values per word",
}
INIT_STRATEGIES = {
    "normal": "independent normal values, mean 0 and the standard deviation of every value in "
    "the file, so new rows have the pretrained rows' scale",
    "zeros": "all zeros",
    "mean": "the mean of the file's vectors",
}

# Exceptions gensim raises on a malformed file (float(), int(), numpy broadcasting, EOF checks,
# and a TypeError/AssertionError on shapes it could not deduce).
GENSIM_READ_ERRORS = (ValueError, TypeError, EOFError, AssertionError, IndexError)


class VectorsFileError(ValueError):
    """A vectors file that cannot be read faithfully; the message names the file and the fault."""


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


def read_vectors(path: str | os.PathLike, format: str = "glove") -> KeyedVectors:
    """The file's vectors as gensim ``KeyedVectors``; a :class:`VectorsFileError` says why not."""
    check_choice("format", format, FORMATS)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such vectors file")
    if path.stat().st_size == 0:
        raise VectorsFileError(f"{path}: the file is empty; expected {FORMATS[format]}")
    keyed_vectors = gensim_keyed_vectors()
    try:
        vectors = keyed_vectors.load_word2vec_format(
            str(path), binary=format == "word2vec_binary", no_header=format == "glove"
        )
    except GENSIM_READ_ERRORS as error:
        if format == "word2vec_binary":
            problem = binary_read_problem(path, error)
        else:
            problem = first_text_problem(path, has_header=format == "word2vec")
        raise VectorsFileError(
            f"{path}: {problem or f'gensim could not read it: {error}'}"
        ) from error
    problem = unfaithful_read(vectors, path, format)
    if problem:
        raise VectorsFileError(f"{path}: {problem}")
    return vectors


def gensim_keyed_vectors() -> type[KeyedVectors]:
    try:
        from gensim.models import KeyedVectors
    except ImportError as error:
        raise ImportError(
            "impls.vectors reads vectors files with gensim, which is not installed: "
            "pip install 'rowfreeze[vectors]'"
        ) from error
    return KeyedVectors


def check_choice(argument: str, value: object, choices: dict[str, str]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{argument}: expected one of {', '.join(map(repr, choices))}, got {value!r}"
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


def unfaithful_read(vectors: KeyedVectors, path: Path, format: str) -> str | None:
    """What gensim accepted without error but did not read faithfully, or None."""
    repeated_word = len(vectors.key_to_index) != len(vectors.index_to_key)
    finite_rows = np.isfinite(vectors.vectors).all(axis=1)
    if format != "word2vec_binary":
        unread_lines = format == "word2vec" and count_nonblank_lines(path) - 1 != len(vectors)
        # gensim splits on " " only; a tab-separated line becomes one long "word"
        tab_in_word = any("\t" in word for word in vectors.key_to_index)
        suspect = repeated_word or tab_in_word or unread_lines
        if suspect or vectors.vector_size < 1 or not finite_rows.all():
            problem = first_text_problem(path, has_header=format == "word2vec")
            return problem or "gensim returned fewer vectors than the file holds"
        return None
    if repeated_word:
        return (
            f"a word repeats: the header declares {len(vectors.index_to_key)} vectors but only "
            f"{len(vectors.key_to_index)} distinct words were read (gensim keeps the first)"
        )
    if vectors.vector_size < 1:
        return "the header declares 0 dimensions"
    if not finite_rows.all():
        row = int(np.flatnonzero(~finite_rows)[0])
        return f"vector {row + 1} ({vectors.index_to_key[row]!r}) has a non-finite value"
    return binary_trailing_bytes(vectors, path)


def first_text_problem(path: Path, has_header: bool) -> str | None:
    """The first fault of a text vectors file as ``"line N: ..."``, or None if it finds none.

    Run only after gensim failed or returned something unfaithful, so a good file is parsed once.
    """
    width = declared = None
    width_from = "the header" if has_header else "line 1"
    line_of_word: dict[str, int] = {}
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                line = raw.decode("utf-8").rstrip()
            except UnicodeDecodeError as error:
                return f"line {number}: not valid UTF-8 ({error.reason} at byte {error.start})"
            if has_header and number == 1:
                fields = line.split()
                if len(fields) != 2 or not all(field.isdecimal() for field in fields):
                    return (
                        f"line 1: expected the word2vec header '<count> <dimensions>', "
                        f"got {line[:60]!r}"
                    )
                declared, width = int(fields[0]), int(fields[1])
                continue
            if not line:
                if has_header and len(line_of_word) == declared:
                    continue  # blank lines after the declared vectors are harmless
                return f"line {number}: blank line; expected a word followed by its values"
            word, *values = line.split(" ")
            problem = line_problem(word, values, width, width_from)
            if problem:
                return f"line {number}: {problem}"
            width = width or len(values)
            if word in line_of_word:
                return f"line {number}: the word {word!r} repeats line {line_of_word[word]}"
            line_of_word[word] = number
    if declared is not None and declared != len(line_of_word):
        return f"the header declares {declared} vectors but the file holds {len(line_of_word)}"
    return None


def line_problem(word: str, values: list[str], width: int | None, width_from: str) -> str | None:
    if not word:
        return "starts with a space; expected a word followed by its values"
    if not values:
        return f"the word {word!r} has no values"
    if width is not None and len(values) != width:
        return f"{len(values)} values for {word!r}, expected {width} (the width of {width_from})"
    if "\t" in word or "" in values:
        return "values must be separated by single spaces (found a tab or two spaces in a row)"
    for value in values:
        try:
            number = float(value)
        except ValueError:
            return f"value {value!r} of {word!r} is not a number"
        if not np.isfinite(number):
            return f"value {value!r} of {word!r} is not finite"
    return None


def binary_read_problem(path: Path, error: Exception) -> str:
    with path.open("rb") as file:
        header = file.readline()
    fields = header.split()
    if len(fields) != 2 or not all(field.isdigit() for field in fields):
        return f"expected the word2vec header '<count> <dimensions>', got {header[:60]!r}"
    count, width = map(int, fields)
    return (
        f"could not read the {count} vectors of {width} float32 values the header declares: {error}"
    )


def binary_trailing_bytes(vectors: KeyedVectors, path: Path) -> str | None:
    """gensim stops after the header's count; bytes beyond those vectors mean the count is wrong.

    Each record is ``word``, a space and ``4·D`` bytes, optionally followed by a newline (the
    original C tool writes one, gensim does not).
    """
    with path.open("rb") as file:
        header_bytes = len(file.readline())
    record_bytes = sum(len(word.encode("utf-8")) + 1 for word in vectors.index_to_key)
    largest = header_bytes + record_bytes + len(vectors) * (4 * vectors.vector_size + 1)
    extra = path.stat().st_size - largest
    if extra > 0:
        return (
            f"{extra} bytes follow the {len(vectors)} vectors the header declares; "
            f"the header's count is probably wrong"
        )
    return None


def count_nonblank_lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for line in file if line.strip())
