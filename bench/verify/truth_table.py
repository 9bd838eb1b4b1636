"""The truth table: which (approach, scenario, property) cells hold, break, or cannot run — and why.

Every cell holds unless a rule below says otherwise; an implementation the table has no rule for
(a user's ``MODULE:NAME``) is expected to hold every property. No rule may say that every
implementation violates a property (or cannot be judged on it): such a rule would be about the
scenario, not the code, and a cell where a correct and a broken implementation get the same
verdict measures nothing; :class:`Rule` refuses it. Each rule carries the one sentence that
explains it; the tests assert every cell both ways (a "holds" cell
on every example, a "violated" cell by a concrete example) and ``python -m bench verify`` writes
the sentence beside the measured outcome, so the report can show the reason next to the evidence.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bench.common.schema import HOLDS, NOT_JUDGED, RUNS, UNSUPPORTED, VIOLATED

ANY = None  # a rule field that matches everything

WEIGHT_DECAY = frozenset(
    {"sgd_weight_decay", "adam_weight_decay", "adamw", "adamw_foreach", "adamw_fused", "checkpoint"}
)
FACTORED = frozenset({"adafactor"})
SPARSE = frozenset({"sparse_adam", "sparse_sgd", "sparse_adagrad"})

EMBEDDING_OPTIONS = SPARSE | {
    "padding_on_frozen",
    "padding_on_trainable",
    "max_norm",
    "scale_grad_by_freq",
}
DISTRIBUTED = frozenset({"ddp", "fsdp2"})

# The implementations as people run them (bench.peers).
PEFT, SEED, DIFFUSERS = "peft_trainable_tokens", "seed_two_tables", "diffusers_ti_restore"

ZERO_GRADIENT = frozenset({"grad_zero", "grad_hook", "detach_mask"})
WHOLE_TABLE_IN_OPTIMIZER = ZERO_GRADIENT | {"parametrize", "restore", "full", DIFFUSERS}
DENSE_REBUILD = frozenset({"concat", "index_copy", "parametrize", "detach_mask", PEFT})
STEP_IN_BACKWARD = "step_in_backward"


@dataclass(frozen=True)
class Rule:
    approaches: Collection[str] | None
    scenarios: Collection[str] | None
    properties: Collection[str] | None
    outcome: str
    why: str

    def __post_init__(self) -> None:
        if self.approaches is ANY and self.outcome in (VIOLATED, NOT_JUDGED):
            raise ValueError(
                f"approaches: a rule that every implementation is {self.outcome} "
                f"({self.why!r}) is about the scenario, not the code; expected the approaches it "
                "speaks for (a scenario whose ideal run fails must change its settings instead)"
            )

    def matches(self, approach: str, scenario: str, prop: str) -> bool:
        return all(
            field is None or value in field
            for field, value in (
                (self.approaches, approach),
                (self.scenarios, scenario),
                (self.properties, prop),
            )
        )


@dataclass(frozen=True)
class Expectation:
    outcome: str
    why: str = ""


RULES: tuple[Rule, ...] = (
    Rule(
        {SEED},
        EMBEDDING_OPTIONS,
        ANY,
        UNSUPPORTED,
        "the answer's class takes no embedding options (no padding_idx, max_norm, "
        "scale_grad_by_freq or sparse), so its factory refuses them",
    ),
    Rule(
        {SEED},
        DISTRIBUTED,
        ANY,
        UNSUPPORTED,
        "the distributed runs train every fourth row, a mask the class cannot express: it takes "
        "the pretrained rows first and the new rows after them",
    ),
    Rule(
        {SEED},
        ANY,
        {RUNS},
        VIOLATED,
        "the table cannot be read: `batch > num_embeddings` sends the first new id "
        "(num_embeddings itself) to the pretrained table, which has no such row, and a mask "
        "without a pretrained or without a new row leaves one of the two tables empty; the "
        "lookup raises",
    ),
    Rule(
        {SEED},
        {"torch_func"},
        {"P5"},
        NOT_JUDGED,
        "under torch.func.vmap the answer's boolean-mask assignment (pretrained_batch[mask] = 0) "
        "raises before forward rewrites the ids in place, so no case changes them and every "
        "case raises (P0)",
    ),
    Rule(
        {SEED},
        ANY,
        {"P5"},
        VIOLATED,
        "forward rewrites the caller's id tensor in place (batch -= num_embeddings, then "
        "batch[~mask] = 0), so the ids a model passes on are not the ids it was given; this "
        "happens before the lookup that raises (P0)",
    ),
    Rule(
        {SEED},
        ANY,
        ANY,
        NOT_JUDGED,
        "every case raises (P0): reading the whole table looks up the first new id, so no run "
        "ends with a table to judge",
    ),
    Rule(
        DENSE_REBUILD | {"grad_zero"},
        SPARSE,
        ANY,
        UNSUPPORTED,
        "sparse=True is refused: a sparse gradient cannot flow back through a table rebuilt "
        "every forward, nor be index-assigned as the zero-gradient answer needs",
    ),
    Rule(
        {"full"},
        ANY,
        {"P1"},
        VIOLATED,
        "control: every row is a parameter, so the frozen rows train like the others",
    ),
    Rule(
        {"freeze_all"},
        ANY,
        {"P2", "P3"},
        VIOLATED,
        "control: no row requires a gradient, so the new rows never move",
    ),
    Rule(
        ZERO_GRADIENT,
        WEIGHT_DECAY,
        {"P1"},
        VIOLATED,
        "a zero gradient is not 'no update': weight decay still shrinks the frozen rows "
        "(AdamW decays by lr·wd·w every step, SGD/Adam add wd·w to the zero gradient)",
    ),
    Rule(
        ZERO_GRADIENT,
        {"asgd"},
        {"P1"},
        VIOLATED,
        "ASGD shrinks every parameter by (1 - lambd·eta) each step (lambd = 1e-4 by default), "
        "whatever its gradient, so zero-gradient rows decay",
    ),
    Rule(
        {"grad_zero", "grad_hook"},
        {"torch_func"},
        {"P1"},
        VIOLATED,
        "the frozen rows' gradient is zeroed by a hook on the Parameter (grad_hook) or on its "
        ".grad accumulation (grad_zero); torch.func.grad over functional_call runs neither, so "
        "the frozen rows get their real gradient and train",
    ),
    Rule(
        {"grad_zero", "grad_hook", "freeze_all"},
        {"max_norm"},
        {"P1"},
        VIOLATED,
        "max_norm renormalises every looked-up row of the table in place during forward; when "
        "that table is the parameter itself, frozen rows longer than max_norm are rewritten",
    ),
    Rule(
        DENSE_REBUILD,
        {"max_norm"},
        {"P3"},
        VIOLATED,
        "max_norm renormalises the table rebuilt for this forward, not the stored trainable rows, "
        "so they are never shortened in place as nn.Embedding (and the ideal) would do",
    ),
    Rule(
        {"full"},
        {"clip_grad_norm", "ddp", "fsdp2"},
        {"P3", "P7"},
        VIOLATED,
        "the frozen rows train; through the shared gradient norm (clipping) that reaches the "
        "trainable rows too, and P7 includes P1 on every rank",
    ),
    Rule(
        {DIFFUSERS},
        {"fsdp2"},
        {RUNS},
        VIOLATED,
        "the script's write-back (weight[index_no_updates] = orig_embeds_params[...]) mixes "
        "the sharded DTensor parameter with plain tensors, which torch refuses: the first step "
        "raises",
    ),
    Rule(
        {DIFFUSERS},
        {"fsdp2"},
        ANY,
        NOT_JUDGED,
        "the first step raises (P0), so there is no trained table to judge",
    ),
    Rule(
        {DIFFUSERS},
        ANY,
        {"P1", "P7"},
        VIOLATED,
        "only rows outside min(ids)..max(ids) are written back, so a frozen row between two "
        "trainable ids is optimised like any other row (P7 includes P1 on every rank)",
    ),
    Rule(
        {"restore", DIFFUSERS},
        {"clip_grad_norm"},
        {"P3"},
        VIOLATED,
        "clip_grad_norm_ takes one norm over all parameters; the whole table's real frozen-row "
        "gradients enter it, so trainable rows are scaled differently than in the ideal",
    ),
    Rule(
        ZERO_GRADIENT,
        {"float16_adam_eps"},
        {"P1"},
        VIOLATED,
        "Adam's eps = 1e-8 underflows to 0 in float16, so a zero-gradient row gets 0/0 = NaN: the "
        "frozen rows of zero-gradient approaches become NaN",
    ),
    Rule(
        {"grad_zero", "grad_hook"},
        {"fsdp2"},
        {"P1", "P7"},
        VIOLATED,
        "fully_shard replaces each parameter by a new sharded (DTensor) parameter, so the hook "
        "registered on the original never runs and frozen rows get their real gradients",
    ),
    Rule(
        {"freeze_all"},
        {"ddp"},
        ANY,
        UNSUPPORTED,
        "DistributedDataParallel refuses a module with no parameter that requires a gradient",
    ),
    Rule(
        {"restore"},
        {"fsdp2"},
        ANY,
        UNSUPPORTED,
        "the write-back index_copy_ mixes the sharded DTensor parameter with plain tensors, which "
        "torch refuses; restoring would have to write each rank's own shard of rows",
    ),
    Rule(
        WHOLE_TABLE_IN_OPTIMIZER,
        FACTORED,
        {"P3"},
        VIOLATED,
        "Adafactor factors the second moment of the whole V×D parameter into row and column "
        "means, so the frozen rows' gradients (zero or not) change every trainable row's step",
    ),
    Rule(
        {STEP_IN_BACKWARD},
        {"grad_accumulation"},
        {"P3", "P4"},
        VIOLATED,
        "the rows step at every backward, so a step of 2 accumulated micro-batches is 2 steps "
        "(P3), and the second micro-batch already reads rows the first one moved (P4)",
    ),
    Rule(
        {STEP_IN_BACKWARD},
        {"clip_grad_norm"},
        {"P3"},
        VIOLATED,
        "the rows have stepped on the raw gradient during backward; clip_grad_norm_ runs after "
        "it, when their gradient is gone",
    ),
    Rule(
        {STEP_IN_BACKWARD},
        DISTRIBUTED,
        ANY,
        UNSUPPORTED,
        "attach refuses a process group of more than one rank: the rows would step on the "
        "rank's own gradient before DDP or FSDP all-reduces it",
    ),
    Rule(
        {PEFT},
        FACTORED | DISTRIBUTED,
        {RUNS},
        HOLDS,
        "these cases always have a trainable row (Adafactor needs one; the distributed runs "
        "train every fourth row), so PEFT's empty-index failure never arises",
    ),
    Rule(
        {PEFT},
        ANY,
        {RUNS},
        VIOLATED,
        "PEFT builds its index with torch.tensor(token_indices), a float tensor when no row is "
        "trainable, and index_copy refuses it: with an empty trainable set every forward raises",
    ),
)


def expectation(approach: str, scenario: str, prop: str) -> Expectation:
    """The recorded outcome of one cell (the first matching rule, else ``holds``)."""
    for rule in RULES:
        if rule.matches(approach, scenario, prop):
            return Expectation(rule.outcome, rule.why)
    return Expectation(HOLDS)
