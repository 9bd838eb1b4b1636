"""The keys of ``newtokens.json``, torch-free so the report can read the file without torch."""

from __future__ import annotations

FILENAME = "newtokens.json"
KEY = ("approach", "model", "device")
COLUMNS = (
    "approach", "model", "device", "tied", "vocab_size", "new_tokens", "embedding_dim", "status",
    "reason", "frozen_rows_identical", "new_rows_changed", "new_rows", "max_frozen_change",
    "loss_first", "loss_last", "step_median_s", "forward_median_s", "backward_median_s",
    "optimizer_median_s", "peak_bytes", "peak_method", "estimated_bytes", "checkpoint_bytes",
    "full_checkpoint_bytes", "merged_logits_equal", "checkpoint_logits_equal", "isolated",
    "profile", "seed", "optimizer", "learning_rate", "weight_decay", "batch_size",
    "sequence_length", "warmup_steps", "measured_steps", "pretrain_steps", "pretrain_loss",
    "new_words", "load_1m", "threads", "env",
)  # fmt: skip
"""Every key of a record (None where a skipped or failed case has no value)."""
PEFT = "peft_trainable_tokens"
"""PEFT's trainable tokens, the peer (the name ``bench.perf.peers`` gives it)."""
