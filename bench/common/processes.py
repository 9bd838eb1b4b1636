"""Run one function in a fresh process, so a case's peak memory is its own and a crash is a row.

Why a fork server: a spawned process re-imports torch (a second or more) and PEFT (several) for
every case; the fork server imports them once and forks a child per case in milliseconds. Each
child is still a new process with its own address space, started before anything of the case is
allocated. The server itself is started fresh by ``multiprocessing`` (not forked from this
process), so it inherits no CUDA context and no OpenMP thread pool from the caller.

Every way a child can end badly becomes an :class:`IsolatedFailure` with a reason: an exception
(its type and message, e.g. torch's out-of-memory error), death by a signal (the kernel's OOM
killer sends SIGKILL), or running past the timeout (the child is killed).
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from typing import Any

from bench.common.text import error_text

PRELOAD = [
    "torch",
    "impls",
    "bench.perf.measure",
    "peft.tuners.trainable_tokens.layer",
    "torch.distributed",
    "bench.distributed.rank",
    # what DDP and FSDP2 import on first use (about 800 modules, seconds on 2 busy cores)
    "torch._dynamo",
    "torch.distributed.fsdp",
    "torch.distributed.tensor",
    # the newtokens workload's models (seconds of transformers imports)
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.models.llama.modeling_llama",
    "bench.newtokens.case",
]
"""Imported once by the fork server, for every kind of child (a benchmark case, a rank); a module
that is not installed is skipped by it. One list for all, because a process has one fork server
and whichever caller starts it first decides what it preloads."""

JOIN_TIMEOUT_S = 10


class IsolatedFailure(RuntimeError):
    """The child raised, died or timed out; ``str()`` says which and why."""


def _child(send, function: Callable, args: tuple) -> None:
    try:
        outcome = ("ok", function(*args))
    except BaseException as error:  # every failure must reach the parent
        outcome = ("error", error_text(error))
    send.send(outcome)
    send.close()


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (the kernel's out-of-memory killer sends it)" if name == "SIGKILL" else ""
        return f"the case's process was killed by {name}{hint}"
    return f"the case's process exited with code {exitcode} without a result"


def fork_context() -> multiprocessing.context.ForkServerContext:
    """The process's ``forkserver`` context, preloading :data:`PRELOAD`.

    Children are forked from that server, so only the first one pays the imports (seconds on a
    small machine, which would otherwise count against the first case's timeout), and the server
    is a fresh single-threaded process (unlike forking the caller, which may hold threads, locks
    or a CUDA context).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def run_isolated(function: Callable, *args: Any, timeout_s: float) -> Any:
    """``function(*args)`` in a fresh process; its return value, or :class:`IsolatedFailure`."""
    context = fork_context()
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, function, args), daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(timeout_s):
            raise IsolatedFailure(
                f"timed out after {timeout_s:g} s (the case's process was killed)"
            )
        try:
            status, payload = receive.recv()
        except EOFError:
            process.join(JOIN_TIMEOUT_S)
            raise IsolatedFailure(_exit_reason(process.exitcode)) from None
    finally:  # also on KeyboardInterrupt: no case keeps running after its parent stops
        receive.close()
        if process.is_alive():
            process.kill()
        process.join(JOIN_TIMEOUT_S)
    if status == "error":
        raise IsolatedFailure(payload)
    return payload
