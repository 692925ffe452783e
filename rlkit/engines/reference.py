"""The reference model π_ref: a frozen copy of the initial policy scoring responses for KL.

It runs micro-batch by micro-batch (built as the trainer's, rlkit.engines.micro_batches) on the
device and in the dtype it is given (rlkit.runtime.placement.reference decides them): never the
whole step in one forward.  The log-probs do not depend on how the samples are grouped (each row
attends to itself only; tests/unit/engines/test_reference.py).
"""

from __future__ import annotations

from typing import Any

from rlkit.engines.logprobs import micro_batch_forward
from rlkit.engines.micro_batches import build
from rlkit.engines.train_batch import TrainSample, chunks, response_values


class ReferencePolicy:
    def __init__(
        self,
        model_path: str,
        *,
        device: str,
        dtype: str,
        micro_batch: int,
        packing: bool,
        threads: int = 0,
    ):
        """`threads`: torch threads of the CPU pass (0: leave the process's setting)."""
        import torch
        from transformers import AutoModelForCausalLM

        torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype)
        self.model: Any = model.to(device).eval().requires_grad_(False)
        self.pad_id = model.config.pad_token_id or 0
        self.micro_batch, self.packing, self.threads = max(1, micro_batch), packing, threads

    def logprobs(self, samples: list[TrainSample]) -> list[list[float]]:
        """log π_ref of every trained response token of every sample (float32 lists; 0.0 at
        environment tokens, which `loss_mask` excludes)."""
        import torch

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        out: list[list[float]] = []
        with torch.no_grad():
            for part in chunks(samples, self.micro_batch):
                logp, _, _ = micro_batch_forward(self.model, build(part, self.pad_id, self.packing))
                out += response_values(logp.float().cpu(), part)
        return out
