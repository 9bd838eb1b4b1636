"""From an approach name to something the suite can build: a registry name, a peer or MODULE:NAME.

Every command and test names implementations the same way, so one module resolves them:

- a name of ``impls.APPROACHES``: a reference approach, used as is;
- a name of ``bench.peers.PEERS``: an implementation people run, written down in ``bench.peers``;
- ``MODULE:NAME``: anything importable (the current directory or ``PYTHONPATH``). ``NAME`` is a
  class meeting the ``impls`` contract (it has ``from_pretrained``, ``merged_weight`` and
  ``attach``), used as is, or a factory ``NAME(weight, trainable, **options) -> nn.Module``,
  wrapped in a :class:`BlackBox`.

Anything not in ``impls`` is judged as a black box: an error it raises while training is a result
(a violation of the property being checked), not a crash of the suite. An error of the kind a
constructor raises for input it does not accept (``TypeError``, ``ValueError``,
``NotImplementedError``) is a refusal, re-raised as :class:`impls.UnsupportedOption` naming the
implementation, so every caller that already records refusals records this one too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

import impls
from bench.common.schema import EXTERNAL, PEER, REFERENCE
from bench.common.text import error_text
from bench.peers import PEERS
from impls.base import EmbeddingOptions, UnsupportedOption
from impls.validation import as_trainable_mask, check_weight

REFUSALS = (TypeError, ValueError, NotImplementedError)
"""What a constructor raises for input it does not accept: the case is unsupported."""


class BadReference(ValueError):
    """An approach name that names nothing the suite can build; says what was expected."""


@dataclass(frozen=True)
class Implementation:
    """One implementation under test. ``name`` is the reference exactly as given."""

    name: str
    target: Callable
    origin: str

    @property
    def black_box(self) -> bool:
        """Whether errors raised while training are results (everything outside ``impls``)."""
        return self.origin != REFERENCE

    @property
    def follows_contract(self) -> bool:
        return all(hasattr(self.target, a) for a in ("from_pretrained", "merged_weight", "attach"))

    def from_pretrained(self, weight: Tensor, trainable: Tensor, **options) -> nn.Module:
        """Build it on ``weight`` with ``trainable`` rows and the embedding ``options``."""
        if not self.black_box:
            return self.target.from_pretrained(weight, trainable, **options)
        try:
            if self.follows_contract:
                return self.target.from_pretrained(weight, trainable, **options)
            return BlackBox.build(self.name, self.target, weight, trainable, options)
        except UnsupportedOption:
            raise
        except REFUSALS as refusal:
            raise UnsupportedOption(
                f"{self.name!r} refused this table, mask or options: {error_text(refusal)}"
            ) from refusal

    def __reduce__(self):
        # A worker process imports the target again, from the current directory too (as the
        # parent did), instead of looking the name up in a registry it may not share.
        return _unpickle, (self.name, self.origin, self.target.__module__, self.target.__qualname__)


def _unpickle(name: str, origin: str, module_name: str, qualname: str) -> Implementation:
    return Implementation(name, _import(f"{module_name}:{qualname}"), origin)


def resolve(reference: str) -> Implementation:
    """The implementation ``reference`` names; :class:`BadReference` says why it names none."""
    if not isinstance(reference, str):
        raise BadReference(f"approach: expected a name or MODULE:NAME string, got {reference!r}")
    if reference in impls.APPROACHES:
        return Implementation(reference, impls.APPROACHES[reference], REFERENCE)
    if reference in PEERS:
        return Implementation(reference, _import(PEERS[reference]), PEER)
    if ":" in reference:
        return Implementation(reference, _import(reference), EXTERNAL)
    raise BadReference(
        f"approach: {reference!r} is neither a registered name ({', '.join(default_names())}) "
        "nor a reference MODULE:NAME to a class meeting the impls contract or a factory "
        "NAME(weight, trainable, **options) -> torch.nn.Module"
    )


def implementation_of(approach: Implementation | str) -> Implementation:
    """``approach`` itself, or the implementation its reference names (public entry points that
    a user calls with a name resolve it here, once)."""
    return approach if isinstance(approach, Implementation) else resolve(approach)


def default_names() -> list[str]:
    """What the commands run by default: every reference approach, then every peer."""
    return [*impls.APPROACHES, *PEERS]


def chosen(implementations: list[Implementation] | None) -> list[Implementation]:
    """A command's ``--approaches``, or by default every reference approach and peer."""
    return implementations or [resolve(name) for name in default_names()]


def approach_argument(value: str) -> Implementation:
    """argparse ``type=``: a registered name or an importable ``MODULE:NAME``, resolved here,
    once, where the name enters; everything after the parser holds the :class:`Implementation`."""
    try:
        return resolve(value)
    except BadReference as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_approaches_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--approaches NAME|MODULE:NAME ...``, the same for every command, parsed into
    :class:`Implementation` objects; ``None`` (not given) stands for :func:`chosen`'s default."""
    parser.add_argument(
        "--approaches",
        nargs="+",
        type=approach_argument,
        default=None,
        metavar="NAME|MODULE:NAME",
        help=f"{what}: registered names or references MODULE:NAME to a contract class or a "
        "factory NAME(weight, trainable, **options) -> nn.Module (default: every reference "
        f"approach and peer: {', '.join(default_names())})",
    )


def _import(reference: str) -> Callable:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise BadReference(f"approach: expected MODULE:NAME, got {reference!r}")
    with _current_directory_importable():
        try:
            module = importlib.import_module(module_name)
        except Exception as error:
            raise BadReference(
                f"approach {reference!r}: module {module_name!r} cannot be imported "
                f"({error_text(error)}); expected a module importable from the current "
                "directory or PYTHONPATH"
            ) from error
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise BadReference(
                f"approach {reference!r}: module {module_name!r} has no attribute {attribute!r}; "
                "expected a class meeting the impls contract or a factory "
                "NAME(weight, trainable, **options) -> torch.nn.Module"
            )
        target = getattr(target, part)
    if not callable(target):
        raise BadReference(
            f"approach {reference!r}: {attribute!r} is a {type(target).__name__}, not callable; "
            "expected a class meeting the impls contract or a factory"
        )
    return target


@contextlib.contextmanager
def _current_directory_importable() -> Iterator[None]:
    """``python -m`` puts the current directory on ``sys.path``, pytest and worker processes may
    not; a reference to a module in the current directory must work from all of them."""
    here = os.getcwd()
    added = "" not in sys.path and here not in sys.path
    if added:
        sys.path.append(here)
    try:
        yield
    finally:
        if added:
            sys.path.remove(here)


class _PlainLookups(TorchFunctionMode):
    """Every ``F.embedding`` call inside the block (``nn.Embedding``'s included, and a module's
    own) looks up without ``padding_idx`` and ``max_norm``: the table as stored, with a gradient
    to every row. That is how a table is read as a whole (an output layer tied to it, or the
    merged table): neither option changes the table, only a lookup of ids."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.embedding:
            call = _EMBEDDING_SIGNATURE.bind(*args, **(kwargs or {}))
            call.arguments.pop("padding_idx", None)
            call.arguments.pop("max_norm", None)
            return func(*call.args, **call.kwargs)
        return func(*args, **(kwargs or {}))


_EMBEDDING_SIGNATURE = inspect.signature(F.embedding)


class BlackBox(nn.Module):
    """A module built by a factory, seen only through its forward.

    The suite knows nothing of its insides: ``forward`` is the module's; ``attach`` calls the
    module's own when it has one; ``merged_weight`` is the module's forward on every id, so a
    table stored in pieces (or not stored at all) is read the way a model would read it (with
    one exception for ``F.embedding``'s options, see ``merged_weight``). The
    optimizer gets ``parameters()``, all of them: those that do not require a gradient never get
    one, and torch's optimizers skip a parameter without a gradient, so exactly the parameters
    that require a gradient are optimised.
    """

    def __init__(self, reference: str, module: nn.Module, weight: Tensor, trainable_mask, options):
        super().__init__()
        self.reference = reference
        self.module = module
        self.options = options
        self.num_embeddings, self.embedding_dim = weight.shape
        # The harness's record of which rows should train, not part of the implementation: a
        # plain attribute, so it is neither in the state dict nor counted as its memory.
        self.trainable_mask = trainable_mask.clone()

    @classmethod
    def build(
        cls, reference: str, factory: Callable, weight: Tensor, trainable: Tensor, options: dict
    ) -> BlackBox:
        """Call ``factory`` with the caller's tensors (so writing to them shows as P5) and only
        the options that differ from ``nn.Embedding``'s defaults (what a scenario sets)."""
        weight = check_weight(weight)
        mask = as_trainable_mask(trainable, weight.shape[0], weight.device)
        given = trainable if trainable.dtype == torch.bool else mask
        active = EmbeddingOptions(**options).active()
        module = factory(weight, given, **active)
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"{reference!r} returned a {type(module).__name__}; expected a torch.nn.Module "
                "whose forward maps ids to vectors"
            )
        return cls(reference, module, weight, mask, EmbeddingOptions(**options))

    def forward(self, ids: Tensor) -> Tensor:
        return self.module(ids)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        attach = getattr(self.module, "attach", None)
        if attach is not None:
            attach(optimizer)

    def effective_weight(self) -> Tensor:
        """The table, differentiable (what an output layer tied to it multiplies by): the
        module's own ``effective_weight()`` where it has one, else its forward on every id."""
        own = getattr(self.module, "effective_weight", None)
        if own is not None:
            return own()
        with _PlainLookups():
            return self.module(torch.arange(self.num_embeddings, device=self.trainable_mask.device))

    @torch.no_grad()
    def merged_weight(self) -> Tensor:
        """The table as the forward gives it for every id, detached; reading it changes nothing.

        ``max_norm`` makes a lookup renormalise the rows it reads, in place: looking up every id
        would rewrite rows training never touched, and return them shortened. So the module's
        tensors are put back afterwards, and every ``F.embedding`` looks up without ``max_norm``
        and ``padding_idx`` while the table is read (both change a lookup, neither the table).
        """
        saved = [(t, t.clone()) for t in self._tensors()] if self.options.max_norm else []
        try:
            with _PlainLookups():
                ids = torch.arange(self.num_embeddings, device=self.trainable_mask.device)
                return self.module(ids).detach().clone()
        finally:
            for tensor, value in saved:
                tensor.copy_(value)

    def _tensors(self) -> list[Tensor]:
        return [*self.module.parameters(), *self.module.buffers()]

    def extra_repr(self) -> str:
        return f"{self.reference!r}, trainable={int(self.trainable_mask.sum())}"
