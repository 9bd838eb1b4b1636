"""``impls.train_only_rows`` in real transformers models built from their config classes.

GPT-2 has an output layer tied to its token embedding, Llama (``tie_word_embeddings=False``) an
untied one. Each model gets four new tokens (``resize_token_embeddings``), only their rows train
under AdamW with weight decay, and afterwards every frozen row of both layers must be bit for bit
what it was, the new rows must have moved, the small checkpoint must round-trip and the merged
plain model must give the very same logits.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn

import impls
from bench.verify import truth_table

transformers.logging.set_verbosity_error()

OLD_VOCAB, NEW_TOKENS, WIDTH = 40, 4, 16
VOCAB = OLD_VOCAB + NEW_TOKENS
NEW_IDS = torch.arange(OLD_VOCAB, VOCAB)
FROZEN = torch.arange(VOCAB) < OLD_VOCAB
STEPS = 3
ROOT = Path(__file__).resolve().parent.parent
MODELS = ["gpt2", "llama"]
EXACT = ["split", "fused"]


def build(name: str) -> nn.Module:
    """A tiny pretrained-like model (fixed seed) with the new tokens' rows added."""
    torch.manual_seed(0)
    if name == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=OLD_VOCAB, n_positions=16, n_embd=WIDTH, n_layer=1, n_head=2,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )  # fmt: skip
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.LlamaConfig(
            vocab_size=OLD_VOCAB, hidden_size=WIDTH, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
            tie_word_embeddings=False,
        )  # fmt: skip
        model = transformers.LlamaForCausalLM(config)
    model.resize_token_embeddings(VOCAB)
    return model.eval()


@pytest.fixture(scope="module")
def base_models() -> dict[str, nn.Module]:
    return {name: build(name) for name in MODELS}


def batch() -> torch.Tensor:
    """Text that uses every new token, and old ones around them."""
    ids = torch.randint(0, OLD_VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    ids[:, 1::3] = NEW_IDS
    return ids


def tables(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain model's (input, output) weights."""
    return model.get_input_embeddings().weight, model.get_output_embeddings().weight


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch()).logits


def trained(base: nn.Module, approach: str, steps: int = STEPS):
    """A copy of ``base`` whose new rows trained ``steps`` AdamW steps (weight decay 0.1)."""
    model = copy.deepcopy(base)
    installed = impls.train_only_rows(model, NEW_IDS, approach)
    if not list(installed.parameters()):  # freeze_all: nothing to train
        return model, installed
    optimizer = torch.optim.AdamW(installed.parameters(), lr=0.01, weight_decay=0.1)
    installed.attach(optimizer)
    ids = batch()
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    return model, installed


def frozen_rows_identical(merged: nn.Module, base: nn.Module) -> bool:
    return all(
        torch.equal(m[FROZEN], b[FROZEN]) for m, b in zip(tables(merged), tables(base), strict=True)
    )


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("approach", EXACT)
def test_only_new_rows_of_both_layers_train(base_models, model_name, approach):
    base = base_models[model_name]
    _, installed = trained(base, approach)
    assert installed.tied is (model_name == "gpt2")
    assert sorted(installed.tables()) == (
        ["input_embeddings"] if installed.tied else ["input_embeddings", "output_embeddings"]
    )
    merged_in, merged_out = (t.merged_weight() for t in (installed.input, installed.output.table))
    base_in, base_out = tables(base)
    assert torch.equal(merged_in[FROZEN], base_in[FROZEN])
    assert torch.equal(merged_out[FROZEN], base_out[FROZEN])
    assert (merged_in[NEW_IDS] != base_in[NEW_IDS]).any(dim=1).all()
    assert (merged_out[NEW_IDS] != base_out[NEW_IDS]).any(dim=1).all()


@pytest.mark.parametrize("model_name", MODELS)
def test_the_rest_of_the_model_is_frozen_and_unchanged(base_models, model_name):
    base = base_models[model_name]
    model, installed = trained(base, "fused")
    trainable = {id(p) for p in installed.parameters()}
    assert {id(p) for p in model.parameters() if p.requires_grad} == trainable
    body = {k: v for k, v in base.state_dict().items() if "embed" not in k and "wte" not in k}
    after = model.state_dict()
    assert body and all(torch.equal(after[k], v) for k, v in body.items() if "lm_head" not in k)


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("approach", sorted(impls.APPROACHES))
def test_every_approach_merges_to_the_same_logits_and_keeps_its_truth_table(
    base_models, model_name, approach
):
    base = base_models[model_name]
    model, _ = trained(base, approach)
    before_merge = logits(model)
    merged = impls.merge_trained_rows(model)
    assert type(merged.get_input_embeddings()) is nn.Embedding
    assert type(merged.get_output_embeddings()) is nn.Linear
    assert (merged.get_output_embeddings().weight is merged.get_input_embeddings().weight) is (
        model_name == "gpt2"
    )
    assert torch.equal(logits(merged), before_merge)
    frozen_holds = truth_table.expectation(approach, "adamw", "P1").outcome == truth_table.HOLDS
    assert frozen_rows_identical(merged, base) is frozen_holds


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("approach", [*EXACT, "grad_zero", "parametrize"])
def test_trained_rows_round_trip_exactly(base_models, model_name, approach):
    base = base_models[model_name]
    model, installed = trained(base, approach)
    state = impls.trained_rows_state_dict(model)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)

    prefixes = ["input_embeddings"] + ([] if installed.tied else ["output_embeddings"])
    assert sorted(loaded) == sorted(f"{p}.{part}" for p in prefixes for part in ("ids", "rows"))
    for prefix in prefixes:
        assert torch.equal(loaded[f"{prefix}.ids"], NEW_IDS)
        assert loaded[f"{prefix}.rows"].shape == (NEW_TOKENS, WIDTH)

    resumed = copy.deepcopy(base)
    resumed_tables = impls.train_only_rows(resumed, NEW_IDS, approach)
    impls.load_trained_rows(resumed, loaded)
    for prefix, table in resumed_tables.tables().items():
        assert torch.equal(table.trained_rows(), installed.tables()[prefix].trained_rows())

    served = copy.deepcopy(base)  # plain: the rows go straight into nn.Embedding / nn.Linear
    impls.load_trained_rows(served, loaded)
    merged = impls.merge_trained_rows(model)
    if frozen_rows_identical(merged, base):
        assert torch.equal(logits(resumed), logits(merged))
        assert torch.equal(logits(served), logits(merged))
        assert all(torch.equal(s, m) for s, m in zip(tables(served), tables(merged), strict=True))
    else:  # grad_zero: weight decay moved frozen rows, and only the trained rows were saved
        assert not torch.equal(logits(served), logits(merged))


@pytest.mark.parametrize("model_name", MODELS)
def test_merged_model_saves_and_loads_as_an_ordinary_model(base_models, model_name, tmp_path):
    model, _ = trained(base_models[model_name], "fused")
    expected = logits(model)
    impls.merge_trained_rows(model).save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.equal(logits(reloaded), expected)


@pytest.mark.parametrize("approach", ["fused", "grad_zero"])
def test_tie_weights_cannot_silently_undo_the_install(base_models, approach):
    model, installed = trained(base_models["gpt2"], approach, steps=1)
    expected = logits(model)
    with pytest.raises(AttributeError):
        model.tie_weights()
    assert model.get_input_embeddings() is installed.input
    assert model.get_output_embeddings() is installed.output
    assert installed.output.table is installed.input
    assert torch.equal(logits(model), expected)


def test_untied_tie_weights_is_a_no_op(base_models):
    model, installed = trained(base_models["llama"], "fused", steps=1)
    model.tie_weights()
    assert impls.installed_tables(model).tables() == installed.tables()


def test_split_projection_gradients_match_a_plain_output_layer():
    torch.manual_seed(0)
    weight, hidden = torch.randn(30, 8), torch.randn(2, 5, 8, requires_grad=True)
    table = impls.APPROACHES["split"].from_pretrained(weight, torch.tensor([3, 7, 29]))
    table.project(hidden).square().sum().backward()
    grad_hidden, grad_rows = hidden.grad.clone(), table.trainable_weight.grad.clone()

    plain = weight.clone().requires_grad_(True)
    hidden.grad = None
    F.linear(hidden, plain).square().sum().backward()
    torch.testing.assert_close(grad_hidden, hidden.grad)
    torch.testing.assert_close(grad_rows, plain.grad[[3, 7, 29]])


class TinyLM(nn.Module):
    """A model following the conventions by hand: an untied output layer with a bias."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, WIDTH, padding_idx=0)
        self.head = nn.Linear(WIDTH, VOCAB)

    def get_input_embeddings(self):
        return self.embed

    def set_input_embeddings(self, module):
        self.embed = module

    def get_output_embeddings(self):
        return self.head

    def set_output_embeddings(self, module):
        self.head = module

    def forward(self, ids):
        return self.head(torch.tanh(self.embed(ids)))


class Encoder(TinyLM):
    """No output layer: only the input table is installed."""

    def get_output_embeddings(self):
        return None


def test_bias_and_padding_idx_are_kept_through_install_and_merge():
    model = TinyLM()
    bias = model.head.bias.detach().clone()
    installed = impls.train_only_rows(model, NEW_IDS, "split")
    assert installed.input.options.padding_idx == 0
    optimizer = torch.optim.AdamW(installed.parameters(), weight_decay=0.1)
    model(batch()).sum().backward()
    optimizer.step()
    expected = model(batch())
    impls.merge_trained_rows(model)
    assert model.embed.padding_idx == 0 and torch.equal(model.head.bias, bias)
    assert torch.equal(model(batch()), expected)


def test_a_model_without_output_layer_installs_only_the_input_table():
    model = Encoder()
    installed = impls.train_only_rows(model, NEW_IDS)
    assert installed.output is None and list(installed.tables()) == ["input_embeddings"]
    impls.merge_trained_rows(model)
    assert type(model.embed) is nn.Embedding


class NoConventions(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)


class LinearInput(TinyLM):
    def get_input_embeddings(self):
        return self.head


class NarrowHead(TinyLM):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(WIDTH, VOCAB - 1)


INSTALL_ERRORS = [
    ("not a module", lambda: object(), {}, TypeError, r"model: expected a torch\.nn\.Module"),
    (
        "no conventions",
        NoConventions,
        {},
        TypeError,
        r"model: .*conventions.*NoConventions without \['get_input_embeddings', "
        r"'set_input_embeddings'\]",
    ),
    (
        "input not an embedding",
        LinearInput,
        {},
        TypeError,
        r"get_input_embeddings\(\): expected an nn\.Embedding, got Linear",
    ),
    (
        "output of another vocabulary",
        NarrowHead,
        {},
        ValueError,
        r"get_output_embeddings\(\): expected a weight of shape \(44, 16\).*got \(43, 16\)",
    ),
    (
        "id out of range",
        TinyLM,
        {"trainable": [3, VOCAB]},
        IndexError,
        r"trainable: row id 44 is out of range; expected ids in \[0, 44\)",
    ),
    (
        "unknown approach",
        TinyLM,
        {"approach": "lora"},
        ValueError,
        r"approach: expected a name in \[.*'fused'.*\].*got 'lora'",
    ),
]


@pytest.mark.parametrize(
    "make, kwargs, error, message",
    [case[1:] for case in INSTALL_ERRORS],
    ids=[case[0] for case in INSTALL_ERRORS],
)
def test_install_refuses_bad_input_naming_what_was_expected(make, kwargs, error, message):
    arguments = {"trainable": NEW_IDS, **kwargs}
    with pytest.raises(error, match=message):
        impls.train_only_rows(make(), **arguments)


def test_installing_twice_or_merging_a_plain_model_is_refused():
    model = TinyLM()
    impls.train_only_rows(model, NEW_IDS)
    with pytest.raises(ValueError, match=r"already a Fused .*merge_trained_rows\(model\) first"):
        impls.train_only_rows(model, NEW_IDS)
    with pytest.raises(ValueError, match=r"expected a model prepared by impls\.train_only_rows"):
        impls.merge_trained_rows(TinyLM())
    with pytest.raises(AttributeError, match="has no weight to tie"):
        model.head.weight = nn.Parameter(torch.zeros(VOCAB, WIDTH))


def checkpoint(**changes) -> dict[str, torch.Tensor]:
    model = TinyLM()
    impls.train_only_rows(model, NEW_IDS)
    state = impls.trained_rows_state_dict(model)
    return {k: v for k, v in {**state, **changes}.items() if v is not None}


LOAD_ERRORS = [
    (
        "other ids",
        {"input_embeddings.ids": NEW_IDS - 1},
        ValueError,
        r"state_dict\['input_embeddings\.ids'\]: expected the installed table's trainable ids "
        r"\[40, 41, 42, 43\] \(4 ids\), got \[39, 40, 41, 42\]",
    ),
    (
        "other width",
        {"input_embeddings.rows": torch.zeros(NEW_TOKENS, WIDTH + 1)},
        ValueError,
        r"state_dict\['input_embeddings\.rows'\]: expected shape \(4, 16\).*got a torch\.float32 "
        r"tensor of shape \(4, 17\)",
    ),
    (
        "tied checkpoint for an untied model",
        {"output_embeddings.ids": None, "output_embeddings.rows": None},
        ValueError,
        r"state_dict: expected the keys \['input_embeddings\.ids', 'input_embeddings\.rows', "
        r"'output_embeddings\.ids', 'output_embeddings\.rows'\] .*untied.*got \['input_embed",
    ),
    (
        "id out of range",
        {"output_embeddings.ids": torch.tensor([1, 2, 3, 99])},
        IndexError,
        r"state_dict\['output_embeddings\.ids'\]: row id 99 is out of range; expected ids in "
        r"\[0, 44\)",
    ),
    (
        "float ids",
        {"input_embeddings.ids": NEW_IDS.float()},
        TypeError,
        r"state_dict\['input_embeddings\.ids'\]: expected a 1-D integer tensor",
    ),
]


PLAIN_LOAD_ERRORS = [case for case in LOAD_ERRORS if case[0] != "other ids"]
"""A plain model takes rows for any ids in range; the rest applies to it too."""


@pytest.mark.parametrize(
    "installed, changes, error, message",
    [(True, *case[1:]) for case in LOAD_ERRORS]
    + [(False, *case[1:]) for case in PLAIN_LOAD_ERRORS],
    ids=[f"installed-{case[0]}" for case in LOAD_ERRORS]
    + [f"plain-{case[0]}" for case in PLAIN_LOAD_ERRORS],
)
def test_a_checkpoint_that_does_not_match_the_model_is_refused(installed, changes, error, message):
    model = TinyLM()
    if installed:
        impls.train_only_rows(model, NEW_IDS)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=message):
        impls.load_trained_rows(model, checkpoint(**changes))
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items()), "nothing may be written"
