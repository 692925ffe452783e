"""GPU-only weight sync: NCCL broadcast from trainer rank 0 straight into the vLLM workers.

On a GPU cluster the object-store path (safetensors bytes -> every worker) copies the weights
through host memory; broadcasting over NCCL keeps them on the GPUs.  Trainer rank 0 and every
vLLM worker process (tensor-parallel ranks included) form a separate, stateless NCCL group
(vLLM's `StatelessProcessGroup` + `PyNcclCommunicator`, so neither side's default process group
is touched): rank 0 is the trainer, worker i's TP rank r is 1 + i * tp + r.

Protocol of one sync: the controller sends every worker `receive(specs, version)` and the
trainer `broadcast(state)` at the same time; `specs` = [(name, dtype, shape)] in broadcast
order, so the receivers can allocate before each collective.
Tests: tests/integration/test_weight_sync_nccl.py (marker `gpu`).
"""

from __future__ import annotations

from typing import Any


def tensor_specs(state: dict[str, Any]) -> list[tuple[str, str, tuple[int, ...]]]:
    """[(name, dtype name, shape)] in a fixed order: what receivers allocate."""
    return [(k, str(v.dtype).removeprefix("torch."), tuple(v.shape)) for k, v in state.items()]


def make_communicator(host: str, port: int, rank: int, world_size: int, device):
    """Join the stateless NCCL group used only for weight updates."""
    from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
    from vllm.distributed.utils import StatelessProcessGroup

    group = StatelessProcessGroup.create(host=host, port=port, rank=rank, world_size=world_size)
    return PyNcclCommunicator(group, device=device)


class TrainerBroadcaster:
    """Trainer rank 0's end: broadcasts each tensor of the (gathered) state dict."""

    def __init__(self, host: str, port: int, world_size: int):
        import torch

        self.device = torch.device("cuda", torch.cuda.current_device())
        self.comm = make_communicator(host, port, 0, world_size, self.device)

    def broadcast(self, state: dict[str, Any]) -> int:
        import torch

        stream = torch.cuda.current_stream()
        for tensor in state.values():
            self.comm.broadcast(tensor.to(self.device, non_blocking=True), src=0, stream=stream)
        stream.synchronize()
        return len(state)


class NcclReceiverExtension:
    """vLLM worker-extension methods (mixed into WeightLoaderExtension)."""

    def rlkit_init_nccl(self, host: str, port: int, rank_offset: int, world_size: int) -> None:
        from vllm.distributed.parallel_state import get_world_group

        rank = rank_offset + get_world_group().rank
        self._rlkit_comm = make_communicator(host, port, rank, world_size, self.device)

    def rlkit_receive_nccl(self, specs: list[tuple[str, str, tuple[int, ...]]]) -> int:
        import torch

        stream = torch.cuda.current_stream()
        weights = []
        for name, dtype, shape in specs:
            buf = torch.empty(shape, dtype=getattr(torch, dtype), device=self.device)
            self._rlkit_comm.broadcast(buf, src=0, stream=stream)
            weights.append((name, buf))
        stream.synchronize()
        self.model_runner.model.load_weights(weights=weights)
        return len(weights)
