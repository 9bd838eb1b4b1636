"""Runs on 2 gloo ranks over loopback, shared by verification (P7 under DDP and FSDP2) and the
benchmarks (what DDP all-reduces per step)."""
