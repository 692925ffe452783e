"""A vLLM worker extension that loads new policy weights into a running engine.

vLLM instantiates this mixin inside each of its workers (`LLM(worker_extension_cls=...)`); the
driver calls `llm.collective_rpc("rlkit_load_weights", args=(blob,))`.  Tensors passed through
collective_rpc arrive as Python lists on the CPU build, so the weights travel as safetensors
bytes and are rebuilt here.  The method is not called `update_weights`: the CPU worker has one.
The NCCL methods (GPU clusters) come from NcclReceiverExtension.
"""

from __future__ import annotations

from rlkit.engines.weight_sync_nccl import NcclReceiverExtension


class WeightLoaderExtension(NcclReceiverExtension):
    """Mixed into vLLM's worker class; `self.model_runner` is the worker's model runner."""

    def rlkit_load_weights(self, blob: bytes) -> int:
        from safetensors.torch import load

        tensors = load(blob)
        self.model_runner.reload_weights(weights_iterator=iter(tensors.items()))
        return len(tensors)
