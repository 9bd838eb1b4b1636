"""The text: gensim's Lee corpus, a tokenizer trained on it here, and the words to add as tokens.

``lee_background.cor`` (300 news stories, one a line, about 60,000 words) ships with gensim for
its own tests; it is found through the installed package at run time, never copied. Stories are
split into training and held-out ones (every fifth is held out), the tokenizer is trained on the
training stories only (byte-pair encoding on whitespace/punctuation pre-tokens, the way the GPT-2
and Llama tokenizers are built, at a small vocabulary), and the new tokens are whole words that
this tokenizer cuts into several pieces — the words a real vocabulary extension adds.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

CORPUS_FILE = "lee_background.cor"
SPECIAL_TOKENS = ("<unk>", "<pad>", "<eos>")
EOS_ID = SPECIAL_TOKENS.index("<eos>")
"""The trainer gives the special tokens the first ids, in order."""
HELD_OUT_EVERY = 5
"""Story i is held out when i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1."""
WORD = re.compile(r"[A-Za-z]+")
MIN_LETTERS = 6
MIN_PIECES = 3
"""A new token is a word of at least MIN_LETTERS letters that the trained tokenizer cuts into at
least MIN_PIECES tokens."""


def corpus_path() -> Path:
    """The Lee corpus inside the installed gensim package."""
    try:
        from gensim.test.utils import datapath
    except ImportError as error:
        raise ImportError(
            "the newtokens workload reads gensim's test data; install it: pip install "
            "'rowfreeze[vectors]'"
        ) from error
    path = Path(datapath(CORPUS_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the installed gensim's test data")
    return path


@dataclass(frozen=True)
class Stories:
    train: list[str]
    held_out: list[str]


def read_stories(path: Path) -> Stories:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    stories = [line for line in lines if line]
    if len(stories) < HELD_OUT_EVERY:
        raise ValueError(f"{path}: expected at least {HELD_OUT_EVERY} stories, got {len(stories)}")
    held = {i for i in range(len(stories)) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1}
    return Stories(
        train=[s for i, s in enumerate(stories) if i not in held],
        held_out=[s for i, s in enumerate(stories) if i in held],
    )


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A byte-pair-encoding tokenizer trained on ``texts``, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS[0]))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    unk, pad, eos = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token=unk, pad_token=pad, eos_token=eos
    )


def choose_new_words(tokenizer, texts: Sequence[str], count: int) -> list[str]:
    """The ``count`` most frequent long words of ``texts`` that ``tokenizer`` cuts into pieces."""
    frequency = Counter(word for text in texts for word in WORD.findall(text))
    candidates = [
        word
        for word in sorted(frequency, key=lambda w: (-frequency[w], w))
        if len(word) >= MIN_LETTERS and len(tokenizer.tokenize(word)) >= MIN_PIECES
    ]
    if len(candidates) < count:
        raise ValueError(
            f"new_tokens: expected at most {len(candidates)} (the words of at least "
            f"{MIN_LETTERS} letters cut into {MIN_PIECES}+ pieces), got {count}"
        )
    return candidates[:count]


def add_words(tokenizer, words: Sequence[str]) -> list[int]:
    """Add ``words`` as whole-word tokens (as a user does); their new ids, in order."""
    from tokenizers import AddedToken

    added = tokenizer.add_tokens([AddedToken(word, single_word=True) for word in words])
    if added != len(words):
        raise ValueError(f"words: expected {len(words)} new tokens, the tokenizer added {added}")
    return tokenizer.convert_tokens_to_ids(list(words))


def token_stream(tokenizer, texts: Sequence[str]) -> Tensor:
    """Every text's token ids, each text followed by the end-of-sequence token."""
    ids: list[int] = []
    for encoded in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        ids += [*encoded, tokenizer.eos_token_id]
    return torch.tensor(ids, dtype=torch.long)


def chunks(stream: Tensor, length: int) -> Tensor:
    """``(N, length)`` consecutive pieces of ``stream`` (the incomplete last one dropped)."""
    count = stream.numel() // length
    return stream[: count * length].view(count, length)


def using(sequences: Tensor, ids: Sequence[int]) -> Tensor:
    """The sequences that contain at least one of ``ids``."""
    hit = torch.isin(sequences, torch.tensor(list(ids), dtype=sequences.dtype)).any(dim=1)
    return sequences[hit]
