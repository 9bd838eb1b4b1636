"""Reading a pretrained vectors file faithfully, or saying exactly why not.

Files are read by gensim's ``KeyedVectors`` (GloVe text has no header; word2vec text and binary
have a ``<count> <dimensions>`` header) so that parsing is the one the ecosystem already trusts.
What gensim leaves out is added here, because a "frozen" row is only worth proving untouched if it
was read faithfully: errors name the file and, for text files, the line (gensim's own messages
name neither), and the cases gensim passes silently are refused — a repeated word (gensim keeps
the first vector and leaves an empty slot), a word2vec text header that declares fewer vectors
than the file holds (gensim stops reading), trailing bytes after a binary file's declared vectors,
and NaN or infinite values (``torch.equal`` can never prove a NaN row unchanged).

gensim is an optional dependency (``pip install 'rowfreeze[vectors]'``), imported only here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gensim.models import KeyedVectors

FORMATS = {
    "glove": "GloVe text: one '<word> <value> ... <value>' line per word, no header",
    "word2vec": "word2vec text: a '<count> <dimensions>' header line, then one line per word",
    "word2vec_binary": "word2vec binary: a '<count> <dimensions>' header line, then "
    "'<word> ' and <dimensions> float32 values per word",
}

# Exceptions gensim raises on a malformed file (float(), int(), numpy broadcasting, EOF checks,
# and a TypeError/AssertionError on shapes it could not deduce).
GENSIM_READ_ERRORS = (ValueError, TypeError, EOFError, AssertionError, IndexError)


class VectorsFileError(ValueError):
    """A vectors file that cannot be read faithfully; the message names the file and the fault."""


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
            "impls.vectors_file reads vectors files with gensim, which is not installed: "
            "pip install 'rowfreeze[vectors]'"
        ) from error
    return KeyedVectors


def check_choice(argument: str, value: object, choices: dict[str, str]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{argument}: expected one of {', '.join(map(repr, choices))}, got {value!r}"
        )


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
