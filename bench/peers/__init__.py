"""Implementations as people run them: each a faithful copy of code in the wild.

The reference approaches in ``impls`` are corrected and generalised; these are not. Each module
says where its code comes from, what was kept and what had to change for it to run at all, and
the verification matrix, the benchmarks and the report show them beside the reference approaches
as their own group, so the popular recipes are judged by the same evidence.

``PEERS`` maps each peer's name to its reference ``MODULE:NAME`` (resolved by
``bench.implementations``); it imports nothing, so listing the peers costs nothing.
"""

PEERS: dict[str, str] = {
    "peft_trainable_tokens": "bench.peers.peft_trainable_tokens:PeftTrainableTokens",
    "seed_two_tables": "bench.peers.seed_two_tables:seed_two_tables",
    "diffusers_ti_restore": "bench.peers.diffusers_ti_restore:diffusers_ti_restore",
}
