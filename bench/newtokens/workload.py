"""The models, the profiles, and the workload prepared once and shared by every case.

Two real transformers architectures, built from their config classes (nothing downloaded): GPT-2,
whose output layer is tied to the token embedding, and Llama with ``tie_word_embeddings=False``.
Small ones are pre-trained here for a few hundred steps on the training stories (the whole model
trains, with the tokenizer as trained: the new words still cut into pieces), then the new words are
added to the tokenizer and ``resize_token_embeddings`` adds their rows (transformers' default
initialisation: drawn around the mean of the old rows). That resized model is the start of every
case. The ``full`` profile adds the same two architectures with an LLM-sized table (Llama 3's
128,000 rows of width 2,048; one transformer layer, since only the table's cost is in question):
the tokenizer's rows come first, the rest are rows this text never uses (as most of a real
vocabulary is in any one text), the new rows last. Those are not pre-trained, and their new rows
come from the model's own initialiser (``mean_resizing=False``: the mean-and-covariance draw
needs a 2,048 × 2,048 covariance over all 128,000 rows, minutes on a CPU).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from . import corpus

ARCHITECTURES = ("gpt2", "llama")
TIED = {"gpt2": True, "llama": False}
PRETRAIN_LEARNING_RATE = 3e-3
LLM_ROWS, LLM_WIDTH = 128_000, 2_048


@dataclass(frozen=True)
class ModelSpec:
    """One model of a profile and how its cases train."""

    name: str
    architecture: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int | None = None
    intermediate: int | None = None
    rows: int | None = None
    """Rows before the new tokens; None: the tokenizer's vocabulary (else padded up to it)."""
    pretrain_steps: int = 0
    batch_size: int = 8
    warmup_steps: int = 2
    measured_steps: int = 20

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture: expected one of {ARCHITECTURES}, got {self.architecture!r}"
            )

    @property
    def tied(self) -> bool:
        return TIED[self.architecture]

    def build(self, vocab_size: int, positions: int) -> nn.Module:
        """The model from its config class, freshly initialised (seed it first)."""
        import transformers

        # Its notices (the default loss chosen, how new rows are drawn) are not problems here.
        transformers.logging.set_verbosity_error()
        if self.architecture == "gpt2":
            config = transformers.GPT2Config(
                vocab_size=vocab_size,
                bos_token_id=corpus.EOS_ID,
                eos_token_id=corpus.EOS_ID,
                n_positions=positions,
                n_embd=self.hidden,
                n_layer=self.layers,
                n_head=self.heads,
            )
            return transformers.GPT2LMHeadModel(config)
        config = transformers.LlamaConfig(
            vocab_size=vocab_size,
            bos_token_id=corpus.EOS_ID,
            eos_token_id=corpus.EOS_ID,
            hidden_size=self.hidden,
            intermediate_size=self.intermediate or 4 * self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads or self.heads,
            max_position_embeddings=positions,
            tie_word_embeddings=False,
        )
        return transformers.LlamaForCausalLM(config)


@dataclass(frozen=True)
class NewTokensProfile:
    name: str
    models: tuple[ModelSpec, ...]
    tokenizer_vocab: int = 2_000
    new_tokens: int = 16
    sequence_length: int = 64
    learning_rate: float = 1e-2
    case_timeout_s: float = 600.0

    def only(self, models: list[str]) -> NewTokensProfile:
        known = [m.name for m in self.models]
        unknown = [m for m in models if m not in known]
        if unknown:
            raise ValueError(f"models: expected names from {known}, got {unknown[0]!r}")
        return dataclasses.replace(self, models=tuple(m for m in self.models if m.name in models))


SMALL = (
    ModelSpec("gpt2", "gpt2", hidden=64, layers=2, heads=4, pretrain_steps=150),
    ModelSpec("llama", "llama", hidden=64, layers=2, heads=4, kv_heads=2, pretrain_steps=150),
)
LLM_SIZED = (
    ModelSpec(
        "gpt2_llm_table", "gpt2", hidden=LLM_WIDTH, layers=1, heads=16, rows=LLM_ROWS,
        batch_size=2, warmup_steps=1, measured_steps=5,
    ),
    ModelSpec(
        "llama_llm_table", "llama", hidden=LLM_WIDTH, layers=1, heads=16, kv_heads=8,
        intermediate=5_632, rows=LLM_ROWS, batch_size=2, warmup_steps=1, measured_steps=5,
    ),
)  # fmt: skip
PROFILES = {
    "quick": NewTokensProfile("quick", SMALL),
    "full": NewTokensProfile(
        "full",
        tuple(dataclasses.replace(m, pretrain_steps=600, measured_steps=50) for m in SMALL)
        + LLM_SIZED,
        case_timeout_s=1800.0,
    ),
}


@dataclass(frozen=True)
class PreparedModel:
    """Everything a case's process needs to rebuild its starting model and data (picklable)."""

    spec: ModelSpec
    sequence_length: int
    old_rows: int
    new_ids: tuple[int, ...]
    train: Tensor
    """(N, L) training sequences, each using at least one new token."""
    held_out: Tensor
    """(H, L) held-out sequences using new tokens, for the merged-logits check."""
    state_path: str | None
    """The pre-trained, resized state dict; None: initialised from ``seed`` (LLM-sized)."""
    pretrain_loss: float | None
    seed: int

    @property
    def vocab_size(self) -> int:
        return self.old_rows + len(self.new_ids)

    def batch(self, step: int) -> Tensor:
        """The ``step``-th batch: consecutive training sequences, cycling."""
        rows = torch.arange(step * self.spec.batch_size, (step + 1) * self.spec.batch_size)
        return self.train[rows % self.train.shape[0]]

    def initial_model(self, device: str = "cpu") -> nn.Module:
        """The model every case starts from: pre-trained (or seeded), new rows added."""
        spec = self.spec
        torch.manual_seed(self.seed)
        with torch.device(device):
            if self.state_path is None:
                model = spec.build(self.old_rows, self.sequence_length)
                model.resize_token_embeddings(self.vocab_size, mean_resizing=False)
                return model
            model = spec.build(self.vocab_size, self.sequence_length)
        state = torch.load(self.state_path, map_location=device, weights_only=True)
        model.load_state_dict(state)
        return model


@dataclass(frozen=True)
class Workload:
    """The prepared models of a profile, and the words added as tokens."""

    profile: NewTokensProfile
    new_words: tuple[str, ...]
    models: dict[str, PreparedModel]
    directory: tempfile.TemporaryDirectory


def prepare(profile: NewTokensProfile, seed: int = 0) -> Workload:
    """Train the tokenizer, choose the new words, pre-train the small models, add the rows."""
    stories = corpus.read_stories(corpus.corpus_path())
    tokenizer = corpus.train_tokenizer(stories.train, profile.tokenizer_vocab)
    words = corpus.choose_new_words(tokenizer, stories.train, profile.new_tokens)
    length = profile.sequence_length
    pretrain = corpus.chunks(corpus.token_stream(tokenizer, stories.train), length)
    old_rows = len(tokenizer)
    new_ids = corpus.add_words(tokenizer, words)
    train = corpus.using(
        corpus.chunks(corpus.token_stream(tokenizer, stories.train), length), new_ids
    )
    held = corpus.using(
        corpus.chunks(corpus.token_stream(tokenizer, stories.held_out), length), new_ids
    )
    if not len(train) or not len(held):
        raise ValueError(f"{words}: no training or held-out sequence uses the new words")
    directory = tempfile.TemporaryDirectory(prefix="rowfreeze-newtokens-")
    models = {}
    for spec in profile.models:
        rows = spec.rows or old_rows
        if rows < old_rows:
            raise ValueError(f"{spec.name}: rows={rows} is below the tokenizer's {old_rows}")
        shift = _shift_new_ids(old_rows, rows, len(new_ids))
        state_path, loss = None, None
        if spec.rows is None:
            state_path = str(Path(directory.name) / f"{spec.name}.pt")
            loss = _pretrain(spec, pretrain, old_rows, len(new_ids), seed, state_path)
        models[spec.name] = PreparedModel(
            spec=spec,
            sequence_length=length,
            old_rows=rows,
            new_ids=tuple(range(rows, rows + len(new_ids))),
            train=shift[train],
            held_out=shift[held[: spec.batch_size]],
            state_path=state_path,
            pretrain_loss=loss,
            seed=seed,
        )
    return Workload(profile, tuple(words), models, directory)


def _shift_new_ids(old_rows: int, rows: int, count: int) -> Tensor:
    """Token id -> row: old tokens keep their id, new ones move after the ``rows`` old rows."""
    return torch.cat([torch.arange(old_rows), torch.arange(rows, rows + count)])


def _pretrain(
    spec: ModelSpec, sequences: Tensor, old_rows: int, new_tokens: int, seed: int, path: str
) -> float:
    """Train the whole small model on the text, add the new rows, save; the last batch loss."""
    torch.manual_seed(seed)
    model = spec.build(old_rows, sequences.shape[1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LEARNING_RATE)
    order = torch.randperm(sequences.shape[0], generator=torch.Generator().manual_seed(seed))
    loss = torch.tensor(float("nan"))
    for step in range(spec.pretrain_steps):
        rows = torch.arange(step * spec.batch_size, (step + 1) * spec.batch_size)
        ids = sequences[order[rows % len(order)]]
        optimizer.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
    model.resize_token_embeddings(old_rows + new_tokens)
    torch.save(model.state_dict(), path)
    return loss.detach().item()
