"""impls.vectors: pretrained vectors files + a vocabulary -> weight, trainable mask, word ids.

Every file is written here into ``tmp_path`` (GloVe text by hand, word2vec text and binary by
gensim itself), so each test knows exactly which vectors the file holds.
"""

import re
import sys

import numpy as np
import pytest
import torch

from impls.vectors import VectorsFileError, load_vectors, read_vectors

pytest.importorskip("gensim")
from gensim.models import KeyedVectors

FILE_VECTORS = {
    "the": [0.5, -1.25, 2.0],
    "movie": [1.5, 0.25, -3.0],
    "good": [-0.75, 4.0, 0.125],
}


def write_glove(path, rows):
    path.write_text("".join(f"{word} {' '.join(map(str, row))}\n" for word, row in rows.items()))
    return path


def write_word2vec(path, rows, binary):
    vectors = KeyedVectors(len(next(iter(rows.values()))))
    vectors.add_vectors(list(rows), np.array(list(rows.values()), dtype=np.float32))
    vectors.save_word2vec_format(str(path), binary=binary)
    return path


@pytest.fixture
def glove_file(tmp_path):
    return write_glove(tmp_path / "vectors.txt", FILE_VECTORS)


def file_row(word):
    return torch.tensor(FILE_VECTORS[word], dtype=torch.float32)


@pytest.mark.parametrize(
    "format, write",
    [
        ("glove", lambda path: write_glove(path, FILE_VECTORS)),
        ("word2vec", lambda path: write_word2vec(path, FILE_VECTORS, binary=False)),
        ("word2vec_binary", lambda path: write_word2vec(path, FILE_VECTORS, binary=True)),
    ],
)
def test_found_words_get_the_files_vectors_and_are_frozen(tmp_path, format, write):
    path = write(tmp_path / f"vectors.{format}")
    inputs = load_vectors(path, ["good", "plot", "the"], format=format)

    assert inputs.word_to_id == {"<pad>": 0, "<unk>": 1, "good": 2, "plot": 3, "the": 4}
    assert torch.equal(inputs.weight[2], file_row("good"))
    assert torch.equal(inputs.weight[4], file_row("the"))
    assert inputs.trainable.tolist() == [False, True, False, True, False]
    assert (inputs.found, inputs.new) == (2, 1)
    assert inputs.weight.shape == (5, 3) and inputs.weight.dtype == torch.float32


def test_padding_row_is_zero_and_frozen_and_unknown_row_trains(glove_file):
    inputs = load_vectors(glove_file, ["plot"])
    assert inputs.padding_idx == 0 and inputs.unknown_idx == 1
    assert torch.equal(inputs.weight[0], torch.zeros(3))
    assert not inputs.trainable[0] and inputs.trainable[1]


def test_specials_can_be_left_out(glove_file):
    no_pad = load_vectors(glove_file, ["the", "plot"], pad_token=None)
    assert no_pad.word_to_id == {"<unk>": 0, "the": 1, "plot": 2}
    assert no_pad.padding_idx is None and no_pad.unknown_idx == 0

    none = load_vectors(glove_file, ["the", "plot"], pad_token=None, unk_token=None)
    assert none.word_to_id == {"the": 0, "plot": 1}
    assert none.trainable.tolist() == [False, True]
    with pytest.raises(KeyError, match="'unseen' is not in the vocabulary"):
        none.encode(["the", "unseen"])


def test_encode_maps_unseen_words_to_the_unknown_token(glove_file):
    inputs = load_vectors(glove_file, ["the", "plot"], unk_token="[UNK]")
    assert inputs.encode(["plot", "unseen", "the"]) == [3, 1, 2]


def test_counts_cover_every_vocabulary_word(glove_file):
    vocabulary = ["the", "a", "movie", "b", "c"]
    inputs = load_vectors(glove_file, vocabulary)
    assert inputs.found + inputs.new == len(vocabulary)
    assert (inputs.found, inputs.new) == (2, 3)
    assert inputs.weight.shape[0] == len(vocabulary) + 2
    assert int((~inputs.trainable).sum()) == inputs.found + 1  # found words and padding


def test_lowercase_looks_up_a_missing_word_lower_cased(glove_file):
    exact = load_vectors(glove_file, ["The", "Movie"])
    assert exact.found == 0

    folded = load_vectors(glove_file, ["The", "Movie"], lowercase=True)
    assert folded.found == 2
    assert folded.word_to_id["The"] == 2
    assert torch.equal(folded.weight[folded.word_to_id["Movie"]], file_row("movie"))


def test_lowercase_prefers_the_word_as_written(tmp_path):
    path = write_glove(tmp_path / "cased.txt", {"Apple": [1.0, 2.0], "apple": [3.0, 4.0]})
    inputs = load_vectors(path, ["Apple"], lowercase=True)
    assert torch.equal(inputs.weight[2], torch.tensor([1.0, 2.0]))


def many_new_words(tmp_path, init, seed=0):
    generator = np.random.default_rng(1)
    rows = {f"w{i}": (3.0 + 2.0 * generator.standard_normal(8)).tolist() for i in range(50)}
    path = write_glove(tmp_path / "wide.txt", rows)
    vocabulary = ["w0", *(f"new{i}" for i in range(500))]
    file_values = np.array(list(rows.values()), dtype=np.float32)
    return load_vectors(path, vocabulary, init=init, seed=seed), file_values


def test_normal_init_has_the_pretrained_scale_and_zero_mean(tmp_path):
    inputs, file_values = many_new_words(tmp_path, "normal")
    new = inputs.weight[inputs.trainable]
    assert new.std().item() == pytest.approx(float(file_values.std()), rel=0.1)
    assert abs(new.mean().item()) < 0.1 * float(file_values.std())


def test_normal_init_is_reproducible_by_seed(tmp_path):
    first, _ = many_new_words(tmp_path, "normal", seed=7)
    again, _ = many_new_words(tmp_path, "normal", seed=7)
    other, _ = many_new_words(tmp_path, "normal", seed=8)
    assert torch.equal(first.weight, again.weight)
    new = first.trainable
    assert not torch.equal(first.weight[new], other.weight[new])
    assert torch.equal(first.weight[~new], other.weight[~new])


def test_zeros_and_mean_init(tmp_path):
    zeros, _ = many_new_words(tmp_path, "zeros")
    assert torch.equal(zeros.weight[zeros.trainable], torch.zeros(501, 8))

    mean, file_values = many_new_words(tmp_path, "mean")
    expected = torch.from_numpy(file_values.mean(axis=0)).expand(501, 8)
    assert torch.allclose(mean.weight[mean.trainable], expected)
    assert torch.equal(mean.weight[2], torch.from_numpy(file_values[0]))  # "w0" was found


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("format", "fasttext", "format: expected one of 'glove', 'word2vec', 'word2vec_binary'"),
        ("init", "uniform", "init: expected one of 'normal', 'zeros', 'mean', got 'uniform'"),
    ],
)
def test_unknown_choices_are_refused(glove_file, argument, value, message):
    with pytest.raises(ValueError, match=message):
        load_vectors(glove_file, ["the"], **{argument: value})


@pytest.mark.parametrize(
    "vocabulary, error, message",
    [
        ([], ValueError, "vocabulary: is empty"),
        ("the movie", TypeError, "vocabulary: expected an iterable of words"),
        (["the", "movie", "the"], ValueError, "'the' appears twice, at items 0 and 2"),
        (["the", 3], TypeError, "vocabulary: item 1 is 3"),
        (["the", "<pad>"], ValueError, "item 1 is the special token '<pad>'"),
    ],
)
def test_bad_vocabularies_are_refused(glove_file, vocabulary, error, message):
    with pytest.raises(error, match=message):
        load_vectors(glove_file, vocabulary)


def test_seed_must_be_an_int(glove_file):
    with pytest.raises(TypeError, match="seed: expected an int, got '1'"):
        load_vectors(glove_file, ["the"], seed="1")


def test_pad_and_unk_must_differ(glove_file):
    with pytest.raises(ValueError, match="pad_token and unk_token: must differ"):
        load_vectors(glove_file, ["the"], pad_token="<x>", unk_token="<x>")


TEXT_FILE_FAULTS = [
    (
        "glove",
        "the 1 2 3\nmovie 4 5 6\ngood 7 x 9\n",
        "line 3: value 'x' of 'good' is not a number",
    ),
    ("glove", "the 1 2 3\nmovie 4 5\ngood 7 8 9\n", "line 2: 2 values for 'movie', expected 3"),
    ("glove", "the 1 2 3\nmovie 4 5 6 7\n", "line 2: 4 values for 'movie', expected 3"),
    ("glove", "the 1 2 3\nthe 4 5 6\n", "line 2: the word 'the' repeats line 1"),
    ("glove", "the 1 2 3\nmovie 4 nan 6\n", "line 2: value 'nan' of 'movie' is not finite"),
    ("glove", "the 1 2 3\n\nmovie 4 5 6\n", "line 2: blank line"),
    ("glove", "the\t1 2 3\n", "line 1: values must be separated by single spaces"),
    ("glove", "the\nmovie 4 5 6\n", "line 1: the word 'the' has no values"),
    ("glove", "the 1 2 3\nmovie 4 5 6\xff\n", "line 2: value '6\xff' of 'movie' is not a number"),
    ("word2vec", "the 1 2 3\n", "line 1: expected the word2vec header '<count> <dimensions>'"),
    ("word2vec", "2 3\nthe 1 2 3\nmovie 4 5\n", "line 3: 2 values for 'movie', expected 3"),
    (
        "word2vec",
        "3 3\nthe 1 2 3\nmovie 4 5 6\n",
        "the header declares 3 vectors but the file holds 2",
    ),
    (
        "word2vec",
        "1 3\nthe 1 2 3\nmovie 4 5 6\n",
        "the header declares 1 vectors but the file holds 2",
    ),
]


@pytest.mark.parametrize("format, text, message", TEXT_FILE_FAULTS)
def test_a_faulty_text_file_is_named_with_its_line(tmp_path, format, text, message):
    path = tmp_path / "faulty.txt"
    path.write_text(text)
    with pytest.raises(VectorsFileError, match=f"^{re.escape(str(path))}: {message}"):
        load_vectors(path, ["the"], format=format)


def test_invalid_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"the 1 2 3\ncaf\xe9 4 5 6\n")
    with pytest.raises(VectorsFileError, match=f"^{re.escape(str(path))}: line 2: not valid UTF-8"):
        read_vectors(path, "glove")


@pytest.mark.parametrize("format", ["glove", "word2vec", "word2vec_binary"])
def test_an_empty_file_is_refused(tmp_path, format):
    path = tmp_path / "empty.vec"
    path.touch()
    with pytest.raises(VectorsFileError, match=f"^{re.escape(str(path))}: the file is empty"):
        load_vectors(path, ["the"], format=format)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.txt: no such vectors file"):
        load_vectors(tmp_path / "absent.txt", ["the"])


def test_a_truncated_binary_file_is_refused(tmp_path):
    path = write_word2vec(tmp_path / "vectors.bin", FILE_VECTORS, binary=True)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(
        VectorsFileError, match=f"^{re.escape(str(path))}: could not read the 3 vectors of 3"
    ):
        read_vectors(path, "word2vec_binary")


def test_bytes_after_a_binary_files_declared_vectors_are_refused(tmp_path):
    path = write_word2vec(tmp_path / "vectors.bin", FILE_VECTORS, binary=True)
    data = path.read_bytes()
    path.write_bytes(b"2 3\n" + data[len(b"3 3\n") :])
    with pytest.raises(VectorsFileError, match="bytes follow the 2 vectors the header declares"):
        read_vectors(path, "word2vec_binary")


def test_binary_file_with_a_repeated_word_is_refused(tmp_path):
    path = write_word2vec(tmp_path / "vectors.bin", {"the": [1.0, 2.0], "a": [3.0, 4.0]}, True)
    path.write_bytes(path.read_bytes().replace(b"a ", b"the "))
    with pytest.raises(VectorsFileError, match="a word repeats: the header declares 2 vectors"):
        read_vectors(path, "word2vec_binary")


def test_binary_file_with_a_non_finite_value_is_refused(tmp_path):
    path = write_word2vec(tmp_path / "vectors.bin", {"the": [1.0, 2.0], "a": [3.0, np.inf]}, True)
    with pytest.raises(VectorsFileError, match=r"vector 2 \('a'\) has a non-finite value"):
        read_vectors(path, "word2vec_binary")


def test_missing_gensim_is_a_clear_import_error(glove_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "gensim.models", None)
    with pytest.raises(ImportError, match=r"pip install 'rowfreeze\[vectors\]'"):
        load_vectors(glove_file, ["the"])


def test_the_callers_vocabulary_is_not_changed(glove_file):
    vocabulary = ["movie", "plot"]
    load_vectors(glove_file, vocabulary)
    assert vocabulary == ["movie", "plot"]
