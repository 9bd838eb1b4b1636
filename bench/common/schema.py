"""The vocabulary of every result file, in one torch-free place.

Writers build their records from these names, the report reads the files through them and the
tests check files against them, so a key, an outcome or a property's wording cannot change in one
place only. Nothing here imports torch: the report must be able to load it (and rebuild the page)
without the measuring code. The keys are interfaces that other tools read: add freely, never
rename.
"""

from __future__ import annotations

from dataclasses import dataclass

HOLDS, VIOLATED, UNSUPPORTED = "holds", "violated", "unsupported"
NOT_JUDGED = "not judged"
OUTCOMES = (HOLDS, VIOLATED, UNSUPPORTED, NOT_JUDGED)
"""A verification cell's outcome: measured (``outcome``) and predicted (``expected``).

``not judged``: the implementation accepted the scenario but raised on every drawn case, so no
case was left to judge the property on (the exception itself is P0's finding, never another
property's)."""
NOT_CHECKED = "missing"
"""What the report shows for a cell that has no record (the matrix was cut short, or the file
is older than the scenario); never written to a result file."""

RUNS = "P0"
"""The one property an exception violates; P1–P6 are judged on the cases that run."""
PROPERTIES = {
    RUNS: "runs: construction, forward, backward, the step and reading the table raise nothing",
    "P1": "frozen rows are bit-identical to the weight given, before and after every step",
    "P2": "every trainable row that received a non-zero gradient changes",
    "P3": "trainable rows follow the ideal trajectory (only they are parameters)",
    "P4": "forward equals F.embedding(ids, merged_weight(), ...), in training and eval() mode",
    "P5": "the caller's weight, trainable and ids tensors are never modified",
    "P6": "save / load / continue gives the same trajectory as never stopping",
    "P7": "distributed: every rank holds the same table, and P1 holds on each",
}
"""P0–P7 (defined in full in docs/design.md), worded once for messages, the report and the
README."""
CORE_PROPERTIES = (RUNS, "P1", "P2", "P3", "P4", "P5", "P6")
"""The properties one process can judge; P7 needs ranks."""
DISTRIBUTED_PROPERTY = "P7"

REFERENCE, PEER, EXTERNAL = "reference", "peer", "external"
ORIGINS = {
    REFERENCE: "reference approaches",
    PEER: "as people run them",
    EXTERNAL: "named on the command line",
}
"""Where an implementation comes from (a verification record's ``origin``) and how the report
names the group: ``impls``, ``bench.peers``, or a reference ``MODULE:NAME``."""

SCENARIO_GROUPS = ("optimizer", "option", "dtype", "loop", "distributed", "device")
"""Scenario groups in the order the report lists them."""

ENV_KEYS = (
    "torch_version", "python_version", "cpu_model", "cpu_count", "threads", "gpu_name",
    "cuda_version", "allocator", "commit", "date",
)  # fmt: skip
"""The ``env`` object every record carries."""


@dataclass(frozen=True)
class ResultFileSchema:
    """One result file: its name, the command that writes it, its keys.

    ``key`` makes a record unique (a resumed run skips what it finds); ``required`` are the keys a
    reader cannot do without; ``columns`` are every key a record carries, ``numeric`` those that
    hold numbers and ``boolean`` those that hold true or false (or null): the one loader,
    :func:`bench.report.sources.typed_frame`, coerces both, so no reader re-parses a value.
    """

    name: str
    filename: str
    command: str
    key: tuple[str, ...]
    required: tuple[str, ...]
    columns: tuple[str, ...]
    numeric: tuple[str, ...] = ()
    boolean: tuple[str, ...] = ()


VERIFICATION = ResultFileSchema(
    name="verification",
    filename="verification.json",
    command="verify",
    key=("approach", "scenario", "property"),
    required=("approach", "scenario", "property", "outcome"),
    columns=(
        "approach",
        "origin",
        "scenario",
        "group",
        "property",
        "outcome",
        "expected",
        "explanation",
        "examples",
        "counterexample",
        "max_abs_change",
        "detail",
        "raised",
        "weight_decay",
        "sparse_gradients",
        "params",
        "env",
    ),
    numeric=("examples", "max_abs_change", "weight_decay"),
    boolean=("sparse_gradients",),
)
"""``weight_decay`` is the decay the scenario's optimizer applies (its default included) and
``sparse_gradients`` whether the table's gradients are sparse: the two facts that decide which
user setups a cell speaks for. ``origin`` is one of ``ORIGINS``; ``raised`` is the exception
(``Type: message``) when a violation is an error the implementation raised, null otherwise.
``detail`` says what the counterexample shows, or why the cell is unsupported, or how many drawn
cases the implementation refused."""

CASE_FIELDS = (
    "approach", "device", "dtype", "V", "D", "trainable_fraction", "n_trainable", "T",
    "optimizer", "sparse", "sweep", "profile", "compile", "process", "malloc", "loss",
)  # fmt: skip
"""What a benchmark row measured. ``compile`` is null for eager cases, else how the step was
compiled (``fullgraph``: the module; ``fullgraph_loss``: forward and loss as one graph);
``process`` is null for a case measured in a fresh process of its own, ``long-lived`` for one
timed beside every approach's model in one process (the ``longlived`` sweep), ``side-by-side``
for the ``compiled`` sweep's eager and compiled steps timed in one process; ``malloc`` is null
for a process whose ``malloc`` runs as it started (its ``env.allocator`` says which), ``retained``
for one that called :func:`impls.allocator.retain_freed_memory` before building any model (the
``retained`` sweep); ``loss`` is null for a step that computes the benchmark's weighted loss and
differentiates it, ``given-gradient`` for one that hands the output its gradient directly, as a
model's next layer would (the ``gradient`` sweep)."""
CASE_COLUMNS = (
    "device", "dtype", "V", "D", "trainable_fraction", "T", "optimizer", "sparse", "compile",
    "process", "malloc", "loss",
)  # fmt: skip
"""The case fields that tell two benchmark cases apart (``n_trainable`` follows from V and the
fraction; approach, sweep and profile do not change what is measured)."""
LATER_CASE_COLUMNS = ("compile", "process", "malloc", "loss")
"""Case columns added after results files were first written, each null for what every row did
before it existed (eager, a fresh process, ``malloc`` as started, the weighted loss): a reader
takes a file that lacks one as null there, so runs from before and after it still pair."""
MEASURED_FIELDS = (
    "median_s", "iqr_s", "rounds", "tokens_per_s", "persistent_bytes", "peak_bytes",
    "bound_bytes", "bandwidth_bytes_per_s", "bound_s", "fraction_of_bound", "loss_bytes",
    "fraction_of_bound_with_loss", "allreduce_bytes",
    "frozen_rows_identical", "estimated_bytes", "peak_method", "threads", "load_before", "noisy",
    "attempts",
)  # fmt: skip
"""``threads``, ``load_before`` and ``noisy`` say whether a time can be trusted
(:mod:`bench.common.load` states the rule); ``attempts`` counts the measurements made."""
RESULTS = ResultFileSchema(
    name="results",
    filename="results.json",
    command="run",
    key=(*(f for f in CASE_FIELDS if f != "n_trainable"), "phase"),
    required=("approach", "phase", "status"),
    columns=(*CASE_FIELDS, "phase", "status", "reason", *MEASURED_FIELDS, "seed", "env"),
    numeric=(
        "V",
        "D",
        "trainable_fraction",
        "n_trainable",
        "T",
        "median_s",
        "iqr_s",
        "rounds",
        "tokens_per_s",
        "persistent_bytes",
        "peak_bytes",
        "bound_bytes",
        "bandwidth_bytes_per_s",
        "bound_s",
        "fraction_of_bound",
        "loss_bytes",
        "fraction_of_bound_with_loss",
        "allreduce_bytes",
        "threads",
        "load_before",
        "attempts",
    ),
    boolean=("sparse", "frozen_rows_identical", "noisy"),
)
OK, SKIPPED, FAILED = "ok", "skipped", "failed"
STATUSES = (OK, SKIPPED, FAILED)
"""A benchmark or new-tokens row's ``status``: measured, not attempted (with ``reason``), or
attempted and failed (with ``reason``)."""
FINISHED = (OK, SKIPPED)
"""Statuses a resumed run does not attempt again (a failed case is retried)."""
HEADLINE_SWEEP, STEP_PHASE = "headline", "step"
"""The sweep and phase of the headline figure: the full training step at the headline case."""
COMPILED_SWEEP = "compiled"
"""The headline case again with ``compile`` set, compared with its eager rows."""
LONG_LIVED_SWEEP = "longlived"
"""The headline case again, several approaches in one long-lived process (``process``
``long-lived``), compared with their fresh-process rows."""
RETAINED_SWEEP = "retained"
"""The headline case again, the fastest approaches eager, each in a fresh process that keeps freed
memory (``malloc`` ``retained``), compared with the headline's fresh processes."""
GRADIENT_SWEEP = "gradient"
"""The headline case again, the fastest approaches eager in one process that keeps freed memory,
each step taken with the benchmark's loss and with the output's gradient given (``loss``
``given-gradient``), compared with each other."""

REALDATA = ResultFileSchema(
    name="realdata",
    filename="realdata.json",
    command="realdata",
    key=("approach",),
    required=("approach",),
    columns=(
        "approach",
        "pretrained_rows",
        "new_rows",
        "frozen_rows_identical",
        "new_rows_changed",
        "max_frozen_change",
        "test_accuracy",
        "train_accuracy",
        "seconds",
        "epochs",
        "optimizer",
        "learning_rate",
        "weight_decay",
        "batch_size",
        "seed",
        "model",
        "train_sentences",
        "test_sentences",
        "refused",
        "error",
        "env",
    ),
    numeric=("max_frozen_change", "test_accuracy", "train_accuracy", "seconds"),
    boolean=("frozen_rows_identical",),
)

PEFT_PEER = "peft_trainable_tokens"
"""PEFT's trainable tokens, measured beside the approaches: its layer in the matrix and the
benchmarks (``bench.peers.peft_trainable_tokens``), its whole user path (``get_peft_model``) in
the newtokens workload."""

NEWTOKENS = ResultFileSchema(
    name="newtokens",
    filename="newtokens.json",
    command="newtokens",
    key=("approach", "model", "device"),
    required=("approach", "model", "device", "status"),
    columns=(
        "approach", "model", "device", "tied", "vocab_size", "new_tokens", "embedding_dim",
        "status", "reason", "frozen_rows_identical", "new_rows_changed", "new_rows",
        "max_frozen_change", "loss_first", "loss_last", "step_median_s", "step_iqr_s",
        "forward_median_s", "backward_median_s", "optimizer_median_s", "peak_bytes",
        "peak_method", "estimated_bytes", "checkpoint_bytes", "full_checkpoint_bytes",
        "merged_logits_equal", "checkpoint_logits_equal", "isolated", "threads", "load_before",
        "noisy", "attempts", "profile", "seed", "optimizer", "learning_rate", "weight_decay",
        "batch_size", "sequence_length", "warmup_steps", "measured_steps", "pretrain_steps",
        "pretrain_loss", "new_words", "env",
    ),
    numeric=(
        "vocab_size", "new_tokens", "embedding_dim", "new_rows_changed", "new_rows",
        "max_frozen_change", "loss_first", "loss_last", "step_median_s", "step_iqr_s",
        "forward_median_s", "backward_median_s", "optimizer_median_s", "peak_bytes",
        "estimated_bytes", "checkpoint_bytes", "full_checkpoint_bytes", "threads", "load_before",
        "attempts",
    ),
    boolean=(
        "tied", "frozen_rows_identical", "merged_logits_equal", "checkpoint_logits_equal",
        "isolated", "noisy",
    ),
)  # fmt: skip
"""One record per (approach, model, device) of ``python -m bench newtokens``: an approach (or
``PEFT_PEER``) trains only the rows of tokens added to a language model. ``frozen_rows_identical``
covers every frozen row of the input table and of the output layer; ``new_rows_changed`` counts
changed new rows over both (``new_rows`` of them: one table if tied, two if not);
``checkpoint_bytes`` is the trained-rows file as written, ``full_checkpoint_bytes`` the whole
model's tensors; ``merged_logits_equal`` compares the merged plain model's logits with the
trained model's, ``checkpoint_logits_equal`` those of the starting model given only the small
checkpoint. Times are medians over the measured steps (``step_iqr_s`` their spread)."""

FAULTY, CORRECT = "faulty", "correct"
KILLED, SURVIVED, FALSE_ALARM = "killed", "survived", "false alarm"
MUTATION_OUTCOMES = {FAULTY: (KILLED, SURVIVED), CORRECT: (HOLDS, FALSE_ALARM)}
"""A mutation record's ``outcome`` by ``role``: a faulty variant is killed (some cell of the
matrix is violated) or survives; a correct implementation holds every cell it runs, or the
matrix raises a false alarm on it."""

MUTATION = ResultFileSchema(
    name="mutation",
    filename="mutation.json",
    command="mutate",
    key=("approach",),
    required=("approach", "role", "outcome"),
    columns=(
        "approach", "role", "kind", "bug", "outcome", "scenario", "property", "detail",
        "counterexample", "cells", "refused_cells", "violated_cells", "survives_because",
        "profile", "env",
    ),
    numeric=("cells", "refused_cells"),
)  # fmt: skip
"""One record per implementation of ``python -m bench mutate``: ``role`` is ``FAULTY`` or
``CORRECT``; ``bug`` and ``kind`` say what a faulty variant gets wrong (for a correct one,
how it works); ``scenario`` and ``property`` name the first cell that killed it (or the first
false alarm), ``detail`` and ``counterexample`` are that cell's; ``cells`` counts the cells
judged (a faulty variant stops at its first violation) and ``refused_cells`` those it refused
(unsupported); ``violated_cells`` lists every violated ``scenario/property``;
``survives_because`` says why a survivor is not seen."""

PRIMITIVES = ResultFileSchema(
    name="primitives",
    filename="primitives.json",
    command="run",
    key=("device", "dtype", "primitive"),
    required=("device", "primitive", "status"),
    columns=(
        "device", "dtype", "primitive", "compared_with", "what", "rows", "width", "status",
        "reason", "median_s", "iqr_s", "bytes_moved", "env",
    ),
    numeric=("rows", "width", "median_s", "iqr_s", "bytes_moved"),
)  # fmt: skip
"""torch kernels the fast path cannot avoid, timed on the headline case's shapes beside what
each is compared with (:mod:`bench.perf.primitives`)."""

RESULT_FILES = (VERIFICATION, RESULTS, REALDATA, NEWTOKENS, MUTATION, PRIMITIVES)


def record(schema: ResultFileSchema, **values: object) -> dict[str, object]:
    """A record with exactly ``schema.columns``, in order; absent values are null.

    A value for a key the schema does not list is a programming error, caught here rather than
    by a reader that never sees the key.
    """
    unknown = set(values) - set(schema.columns)
    if unknown:
        raise ValueError(
            f"values: unknown {schema.filename} keys {sorted(unknown)}; expected some of "
            f"{list(schema.columns)}"
        )
    return {column: values.get(column) for column in schema.columns}
