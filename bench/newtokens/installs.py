"""The two ways a case trains only the new rows: ``impls.train_only_rows``, and PEFT's own path.

Both are driven through the same five operations, so the case measures them alike: the model to
train, the parameters for the optimizer, ``attach``, writing the small checkpoint (only what
trained), merging into a plain model, and serving (the small checkpoint loaded into a fresh copy
of the starting model).

PEFT is used exactly as its users do: ``get_peft_model(model, TrainableTokensConfig(...))``,
``save_pretrained`` (the adapter file), ``merge_and_unload()``, and ``PeftModel.from_pretrained``
to serve. With a tied output layer PEFT ties the output layer's adapter to the embedding's
itself; with an untied one the output layer is named in ``target_modules`` so its new rows train
too, as :func:`impls.train_only_rows` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

import impls
from bench.common.schema import PEFT_PEER

TRAINED_ROWS_FILE = "trained_rows.safetensors"
PEFT_ADAPTER_FILE = "adapter_model.safetensors"


class RowsInstall:
    """``impls.train_only_rows(model, new_ids, approach)``."""

    def __init__(self, model: nn.Module, new_ids: Sequence[int], approach: str):
        self.tables = impls.train_only_rows(model, list(new_ids), approach)
        self.model = model

    def parameters(self) -> list[Tensor]:
        return list(self.tables.parameters())

    def attach(self, optimizer) -> None:
        self.tables.attach(optimizer)

    def save(self, directory: Path) -> Path:
        from safetensors.torch import save_file

        path = directory / TRAINED_ROWS_FILE
        save_file(impls.trained_rows_state_dict(self.model), path)
        return path

    def merge(self) -> nn.Module:
        return impls.merge_trained_rows(self.model)

    @staticmethod
    def serve(plain: nn.Module, directory: Path) -> nn.Module:
        from safetensors.torch import load_file

        impls.load_trained_rows(plain, load_file(directory / TRAINED_ROWS_FILE))
        return plain


class PeftInstall:
    """``get_peft_model(model, TrainableTokensConfig(token_indices=new_ids, ...))``."""

    def __init__(self, model: nn.Module, new_ids: Sequence[int]):
        from peft import TrainableTokensConfig, get_peft_model

        config = TrainableTokensConfig(
            token_indices=list(new_ids), target_modules=_untied_targets(model)
        )
        self.model = get_peft_model(model, config)

    def parameters(self) -> list[Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def attach(self, optimizer) -> None:
        """PEFT needs nothing."""

    def save(self, directory: Path) -> Path:
        self.model.save_pretrained(directory)
        return directory / PEFT_ADAPTER_FILE

    def merge(self) -> nn.Module:
        return self.model.merge_and_unload()

    @staticmethod
    def serve(plain: nn.Module, directory: Path) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(plain, directory).merge_and_unload()


def _untied_targets(model: nn.Module) -> list[str] | None:
    """Module names of the input and the untied output layer; None (PEFT's default) if tied."""
    embedding, output = model.get_input_embeddings(), model.get_output_embeddings()
    if output is None or output.weight is embedding.weight:
        return None
    names = {id(module): name for name, module in model.named_modules()}
    return [names[id(embedding)], names[id(output)]]


def install(approach: str, model: nn.Module, new_ids: Sequence[int]) -> RowsInstall | PeftInstall:
    if approach == PEFT_PEER:
        return PeftInstall(model, new_ids)
    return RowsInstall(model, new_ids, approach)
