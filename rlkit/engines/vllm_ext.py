"""A vLLM worker extension that loads new policy weights into a running engine.

vLLM instantiates this mixin inside each of its workers (`LLM(worker_extension_cls=...)`); the
driver writes the weights as a safetensors file in shared memory (`weights_file`) and calls
`llm.collective_rpc("rlkit_load_weights_file", args=(path,))`.  The path travels, not the bytes:
a collective_rpc argument is serialised by the driver, sent to the engine-core process and
broadcast from there to the workers, and for a 135M-parameter model (651 MB in float32) those two
hops took 8-14 s a step on 2 CPU cores, against ~0.5 s to write and map the file.  The method
is not called `update_weights`: the CPU worker has one.  The NCCL methods (GPU clusters) come
from NcclReceiverExtension.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rlkit.engines.weight_sync_nccl import NcclReceiverExtension


class WeightLoaderExtension(NcclReceiverExtension):
    """Mixed into vLLM's worker class; `self.model_runner` is the worker's model runner."""

    def rlkit_load_weights_file(self, path: str) -> int:
        from safetensors.torch import load_file

        tensors = load_file(path)
        self.model_runner.reload_weights(weights_iterator=iter(tensors.items()))
        return len(tensors)


@contextmanager
def weights_file(blob: bytes) -> Iterator[str]:
    """`blob` (safetensors bytes) as a file the engine's workers can read, removed afterwards:
    in /dev/shm when it has room (memory, no disk), else in the temporary directory."""
    from rlkit.engines.model_io import remove_stale_weights_files, shared_memory_path

    path = shared_memory_path(len(blob))
    remove_stale_weights_files(os.path.dirname(path))  # a worker killed mid-load leaves one
    try:
        with open(path, "wb") as f:
            f.write(blob)
        yield path
    finally:
        if os.path.exists(path):
            os.unlink(path)
