"""Train a sentiment classifier on real GloVe vectors with each approach; check GloVe rows stay.

The original question, end to end: pretrained GloVe vectors, a labelled data set with words GloVe
lacks, new random rows for those words, and only those rows should train. Both files are the ones
gensim ships for its own tests, found through the installed package at run time (never copied
here): ``test_glove.txt`` (76 words, 50 dimensions, GloVe text format) and
``pang_lee_polarity.cor`` (200 movie-review sentences, one per line as ``__label__pos <text>`` or
``__label__neg <text>``, 100 of each, encoded in Windows-1252: "clich\xe9s", an em dash as 0x97).

Every approach trains the same model (embedding → mean over non-padding tokens → linear) with the
same seed, split, batches, epochs and optimizer: AdamW with weight decay on the embedding and the
head, the default way people train and the setting where a zero gradient is not "no update".
Afterwards ``frozen_rows_identical`` compares the frozen rows of ``merged_weight()`` with
``torch.equal`` against the vectors read from the file (and the padding row against zeros);
``new_rows_changed`` counts trainable rows (new words and ``<unk>``) that differ from their initial
value. ``pretrained_rows`` counts the vocabulary words found in the file, ``new_rows`` the trainable
rows. An approach that refuses ``padding_idx`` trains without it (pooling ignores padding anyway)
and its record says so in ``refused``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.common.environment import environment
from bench.common.frozen_rows import frozen_rows_identical
from bench.common.results import ResultsFile
from bench.common.schema import REALDATA, record
from bench.common.text import error_text, positive_int
from bench.implementations import Implementation, add_approaches_argument, chosen
from impls.base import UnsupportedOption
from impls.vectors import EmbeddingInputs, load_vectors, read_vectors

VECTORS_FILE = "test_glove.txt"
CORPUS_FILE = "pang_lee_polarity.cor"
CORPUS_ENCODING = "cp1252"
LABELS = {"__label__neg": 0, "__label__pos": 1}
MODEL = "mean_pool_linear"
OPTIMIZER = "AdamW"
DEFAULT_EPOCHS = 30
LEARNING_RATE = 0.01
WEIGHT_DECAY = 0.01
BATCH_SIZE = 16
TEST_FRACTION = 0.25
WORD = re.compile(r"[^\W\d_]+")  # runs of letters: "it's" -> "it", "s"


@dataclass(frozen=True)
class Workload:
    """Everything every approach shares, built once so the runs differ only in the approach."""

    inputs: EmbeddingInputs
    frozen_reference: Tensor
    """The frozen rows as they must stay: the file's vectors for found words, zeros for padding."""
    initial_trainable: Tensor
    train_ids: Tensor
    train_labels: Tensor
    test_ids: Tensor
    test_labels: Tensor


class MeanPoolClassifier(nn.Module):
    """Embedding, mean over the non-padding tokens, linear layer to the two labels."""

    def __init__(self, embedding: nn.Module, padding_id: int, num_labels: int):
        super().__init__()
        self.embedding = embedding
        self.padding_id = padding_id
        self.head = nn.Linear(embedding.embedding_dim, num_labels)

    def forward(self, ids: Tensor) -> Tensor:
        keep = (ids != self.padding_id).unsqueeze(-1)
        summed = (self.embedding(ids) * keep).sum(dim=1)
        return self.head(summed / keep.sum(dim=1).clamp(min=1))


def data_files() -> tuple[Path, Path]:
    """The GloVe file and the corpus inside the installed gensim package."""
    try:
        from gensim.test.utils import datapath
    except ImportError as error:
        raise ImportError(
            "the realdata workload reads gensim's test data; install it: pip install "
            "'rowfreeze[vectors]'"
        ) from error
    paths = Path(datapath(VECTORS_FILE)), Path(datapath(CORPUS_FILE))
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found in the installed gensim's test data")
    return paths


def read_corpus(path: Path) -> list[tuple[int, list[str]]]:
    """(label, tokens) per line; a line without a known label is an error naming it."""
    examples = []
    for number, line in enumerate(path.read_text(encoding=CORPUS_ENCODING).splitlines(), start=1):
        label, _, text = line.partition(" ")
        if label not in LABELS:
            raise ValueError(
                f"{path}: line {number}: expected a label in {sorted(LABELS)}, got {label!r}"
            )
        examples.append((LABELS[label], tokenize(text)))
    return examples


def tokenize(text: str) -> list[str]:
    return WORD.findall(text.lower())


def build_workload(seed: int) -> Workload:
    vectors_path, corpus_path = data_files()
    examples = read_corpus(corpus_path)
    random.Random(seed).shuffle(examples)
    n_test = round(len(examples) * TEST_FRACTION)
    train, test = examples[n_test:], examples[:n_test]
    counts = Counter(token for _, tokens in train for token in tokens)
    vocabulary = sorted(counts, key=lambda word: (-counts[word], word))
    inputs = load_vectors(vectors_path, vocabulary, format="glove", init="normal", seed=seed)

    file_vectors = read_vectors(vectors_path, format="glove")
    frozen_ids = (~inputs.trainable).nonzero().squeeze(1).tolist()
    id_to_word = list(inputs.word_to_id)
    frozen_reference = torch.zeros(len(frozen_ids), inputs.weight.shape[1])
    for row, word_id in enumerate(frozen_ids):
        if word_id != inputs.padding_idx:
            frozen_reference[row] = torch.tensor(file_vectors[id_to_word[word_id]])

    train_ids, train_labels = batch_tensors(inputs, train)
    test_ids, test_labels = batch_tensors(inputs, test)
    return Workload(
        inputs=inputs,
        frozen_reference=frozen_reference,
        initial_trainable=inputs.weight[inputs.trainable].clone(),
        train_ids=train_ids,
        train_labels=train_labels,
        test_ids=test_ids,
        test_labels=test_labels,
    )


def batch_tensors(
    inputs: EmbeddingInputs, examples: list[tuple[int, list[str]]]
) -> tuple[Tensor, Tensor]:
    """Token ids padded to the longest sentence, and the labels."""
    encoded = [inputs.encode(tokens) for _, tokens in examples]
    ids = torch.full((len(encoded), max(map(len, encoded))), inputs.padding_idx)
    for row, sentence in enumerate(encoded):
        ids[row, : len(sentence)] = torch.tensor(sentence)
    return ids, torch.tensor([label for label, _ in examples])


def train_approach(
    implementation: Implementation, workload: Workload, epochs: int, seed: int
) -> dict:
    """Train one approach on the shared workload; the realdata.json record for it.

    An approach that refuses the workload even without ``padding_idx``, or a black box that
    raises while training, gets a record without results that says why in ``refused`` or
    ``error``: what it does on real data is a finding too.
    """
    inputs = workload.inputs
    settings = {
        "approach": implementation.name,
        "pretrained_rows": inputs.found,
        "new_rows": int(inputs.trainable.sum()),
        "epochs": epochs,
        "optimizer": OPTIMIZER,
        "learning_rate": LEARNING_RATE,
        "weight_decay": WEIGHT_DECAY,
        "batch_size": BATCH_SIZE,
        "seed": seed,
        "model": MODEL,
        "train_sentences": len(workload.train_ids),
        "test_sentences": len(workload.test_ids),
        "env": environment(),
    }
    refused = None
    try:
        embedding = implementation.from_pretrained(
            inputs.weight, inputs.trainable, padding_idx=inputs.padding_idx
        )
    except UnsupportedOption as refusal:
        refused = str(refusal)
        try:
            embedding = implementation.from_pretrained(inputs.weight, inputs.trainable)
        except UnsupportedOption as second:
            refused = f"{refused}; without padding_idx: {second}"
            return record(REALDATA, **settings, refused=refused)
    try:
        measured = _train(embedding, workload, epochs, seed)
    except Exception as error:
        if not implementation.black_box:
            raise
        return record(REALDATA, **settings, refused=refused, error=error_text(error))
    return record(REALDATA, **settings, **measured, refused=refused)


def _train(embedding: nn.Module, workload: Workload, epochs: int, seed: int) -> dict:
    """Train, then compare the table with the file: the measured fields of the record."""
    inputs = workload.inputs
    torch.manual_seed(seed)
    model = MeanPoolClassifier(embedding, inputs.padding_idx, num_labels=len(LABELS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    embedding.attach(optimizer)
    order = torch.Generator().manual_seed(seed)

    start = time.perf_counter()
    for _ in range(epochs):
        for batch in torch.randperm(len(workload.train_ids), generator=order).split(BATCH_SIZE):
            optimizer.zero_grad()
            logits = model(workload.train_ids[batch])
            F.cross_entropy(logits, workload.train_labels[batch]).backward()
            optimizer.step()
    seconds = time.perf_counter() - start

    merged = embedding.merged_weight()
    frozen = ~inputs.trainable
    frozen_change = (merged[frozen] - workload.frozen_reference).abs()
    changed = (merged[inputs.trainable] != workload.initial_trainable).any(dim=1)
    return {
        "frozen_rows_identical": frozen_rows_identical(
            workload.frozen_reference, merged[frozen], inputs.trainable[frozen]
        ),
        "new_rows_changed": int(changed.sum()),
        "max_frozen_change": float(frozen_change.max()) if frozen_change.numel() else 0.0,
        "test_accuracy": accuracy(model, workload.test_ids, workload.test_labels),
        "train_accuracy": accuracy(model, workload.train_ids, workload.train_labels),
        "seconds": seconds,
    }


@torch.no_grad()
def accuracy(model: nn.Module, ids: Tensor, labels: Tensor) -> float:
    return float((model(ids).argmax(dim=1) == labels).float().mean())


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run on one intra-op thread: the model is tiny (about 1,300 × 50 table, 16 sentences a
    batch), so threads cost more than they save, and on a busy 2-core machine ten times more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_workload(
    implementations: Sequence[Implementation], epochs: int, seed: int = 0
) -> Iterator[dict]:
    """One record per implementation, all trained on the same workload, each yielded as it
    finishes."""
    with one_thread():
        workload = build_workload(seed)
        for implementation in implementations:
            yield train_approach(implementation, workload, epochs, seed)


def format_table(records: list[dict]) -> str:
    first = records[0]
    lines = [
        f"{first['pretrained_rows']} vocabulary words found in GloVe (frozen), "
        f"{first['new_rows']} trainable rows; {first['epochs']} epochs of {OPTIMIZER} "
        f"(weight_decay={WEIGHT_DECAY})",
        f"{'approach':<22} {'frozen identical':>16} {'max change':>11} {'new changed':>11} "
        f"{'test acc':>8} {'train acc':>9} {'seconds':>8}",
    ]
    for r in records:
        if r["frozen_rows_identical"] is None:
            lines.append(f"{r['approach']:<22} not run: {r['error'] or r['refused']}")
            continue
        lines.append(
            f"{r['approach']:<22} {r['frozen_rows_identical']!s:>16} "
            f"{r['max_frozen_change']:>11.2e} {r['new_rows_changed']:>11} "
            f"{r['test_accuracy']:>8.3f} {r['train_accuracy']:>9.3f} {r['seconds']:>8.2f}"
        )
    ran = [r for r in records if r["frozen_rows_identical"] is not None]
    lines.extend(f"note: {r['refused']}" for r in ran if r["refused"])
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("reports"), help="directory for realdata.json/.csv"
    )
    parser.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    add_approaches_argument(parser, "approaches to train")


def main(args: argparse.Namespace) -> int:
    with ResultsFile(args.out / REALDATA.filename, key=REALDATA.key, resume=False) as results:
        for finished in run_workload(chosen(args.approaches), args.epochs, args.seed):
            results.append(finished)
    print(format_table(results.records))
    print(f"wrote {results.path} and {results.csv_path}")
    return 0
