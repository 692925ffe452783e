"""The trainer group: N Ray actors forming one DeepSpeed ZeRO group, and the reference model.

Each rank actor wraps a DeepSpeedPolicyTrainer.  The group splits a training step's samples into
equal contiguous shares, one per rank, and hands every rank the global normalisers so the loss
is the same however the step is split (docs/batch_sizes.md).

With KL (`algo.kl_beta` > 0) every rank also holds a copy of the reference model on its own
device (rlkit.runtime.placement.reference); `TrainerGroup.reference` scores a step's samples on
them, an even share per rank.
"""

from __future__ import annotations

from rlkit.algos.aggregation import global_normalizers
from rlkit.engines.deepspeed_engine import micro_layout
from rlkit.engines.micro_batches import row_lengths, step_layout
from rlkit.engines.train_batch import TrainSample, chunks, deal_by_length, split_even
from rlkit.runtime.placement.rank_group import RankActor, start_rank_group, stop_rank_group
from rlkit.runtime.placement.reference import ReferencePlan
from rlkit.runtime.placement.threads import RankThreads, trainer_rank_threads


class TrainerRank(RankActor):
    """Ray actor body of one rank (created by TrainerGroup through start_rank_group)."""

    def setup(
        self,
        rank: int,
        world: int,
        addr: str,
        port: int,
        model_path: str,
        cfg,
        threads: RankThreads,
        lease=None,
        reference: ReferencePlan | None = None,
    ):
        """`threads` (rlkit.runtime.placement.threads); `lease`: the CoreLease actor when the
        rank borrows idle rollout cores; `reference`: the reference model to hold, if any."""
        import torch

        from rlkit.engines.deepspeed_engine import DeepSpeedPolicyTrainer

        self.threads, self.lease = threads, lease
        torch.set_num_threads(threads.threads)
        self.reference = None
        # The reference first: a ZeRO-3 trainer leaves transformers' ZeRO-3 switch on
        # (HfDeepSpeedConfig), under which from_pretrained would partition the reference too.
        if reference is not None:
            from rlkit.engines.reference import ReferencePolicy

            self.reference = ReferencePolicy(
                model_path,
                device=reference.device,
                dtype=reference.dtype,
                micro_batch=reference.micro_batch,
                packing=reference.packing,
                threads=reference.threads,
            )
        self.trainer = DeepSpeedPolicyTrainer(rank, world, addr, port, model_path, cfg)
        self._trainer_args = (rank, world, addr, port, cfg)  # a weight-only resume rebuilds it
        self._weights_file: str | None = None  # the last `export_weights(to_file=True)`

    def train_step(
        self, samples: list[TrainSample], norms: list[dict], layout: list | None = None
    ) -> dict:
        """One step; with a lease (rlkit.runtime.placement.core_lease) the rank's threads
        follow the rollout workers' idleness pass by pass."""
        if self.lease is None:
            return self.trainer.train_step(samples, norms, layout)
        import torch

        from rlkit.runtime.placement.core_lease import ThreadPicker

        th = self.threads
        picker = ThreadPicker(self.lease, th.threads, th.idle_threads)
        out = self.trainer.train_step(samples, norms, layout, before_pass=picker)
        torch.set_num_threads(th.threads)
        return out | picker.metrics()

    def reference_logprobs(self, samples: list[TrainSample]) -> list[list[float]]:
        """log π_ref of this rank's share (on the rank's threads or GPU, in micro-batches)."""
        return self.reference.logprobs(samples)

    def export_weights(self, to_file: bool = False) -> bytes | str | None:
        """Rank 0's full state dict as safetensors bytes, or with `to_file` as a safetensors
        file in shared memory (its path; the file of the previous export is removed: the
        publisher has seen every load of it finish).  Other ranks: None."""
        from rlkit.engines.model_io import state_dict_to_bytes, write_weights_file

        state = self.trainer.export_state()
        if state is None:
            return None
        if not to_file:
            return state_dict_to_bytes(state)
        self._drop_weights_file()
        self._weights_file = write_weights_file(state)
        return self._weights_file

    def _drop_weights_file(self) -> None:
        from pathlib import Path

        path, self._weights_file = self._weights_file, None
        if path:
            Path(path).unlink(missing_ok=True)

    def start_save(self, folder: str, optimizer: bool = True) -> None:
        """Into the (temporary) checkpoint `folder`: the HF model files (rank 0) and, with
        `optimizer`, every rank's DeepSpeed state under `folder/trainer_state/`.  Now, at the
        step boundary, the snapshot: this step's weights and DeepSpeed state into host memory
        (rlkit.engines.snapshot); a thread then writes them while the rank trains on
        (`save_done`).  One write at a time: a previous one is finished first."""
        from functools import partial

        from rlkit.engines.snapshot import BackgroundWrite, snapshot_engines

        self.save_done(wait=True)
        state = self.trainer.export_state()
        if state is not None:  # rank 0; the live parameters change with the next step
            state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        ds = f"{folder}/trainer_state"
        held = snapshot_engines([self.trainer.engine], ds) if optimizer else []
        self._write = BackgroundWrite(partial(self._write_files, state, held, folder))

    def _write_files(self, state: dict | None, held: list, folder: str) -> None:
        from rlkit.engines.model_io import write_hf_files
        from rlkit.engines.snapshot import write_held

        if state is not None:
            write_hf_files(state, self.trainer.model_path, folder)
        write_held(held)

    def save_done(self, wait: bool = False) -> bool:
        """Whether the last `start_save` is written (its error raised here, once)."""
        write = getattr(self, "_write", None)
        if write is None or (not wait and not write.done_now()):
            return write is None
        self._write = None
        return write.done(wait=True)

    def load_state(self, folder: str) -> None:
        """Model, optimizer, LR scheduler and RNG from a checkpoint's `trainer_state/`; from a
        weight-only checkpoint (none there), the policy from its HF files (`load_weights`)."""
        from rlkit.engines.train_state import load_engines
        from rlkit.runtime.checkpoints import has_trainer_state, step_of

        if not has_trainer_state(folder):
            self.load_weights(folder, step_of(folder))
            return
        load_engines([self.trainer.engine], f"{folder}/trainer_state")

    def load_weights(self, folder: str, step: int) -> None:
        """Rebuild this rank's trainer from the HF model files of `folder` (the group's ranks
        together: DeepSpeed's setup is collective): fresh optimizer (Adam moments and ZeRO's
        master copy from these weights), LR schedule advanced to `step`'s optimizer updates."""
        import warnings

        from rlkit.engines.deepspeed_engine import DeepSpeedPolicyTrainer

        model_path = self.trainer.model_path
        self.trainer.engine = None  # free the old engine's memory before the new one is built
        rank, world, addr, port, cfg = self._trainer_args
        self.trainer = DeepSpeedPolicyTrainer(rank, world, addr, port, folder, cfg)
        self.trainer.model_path = model_path  # later checkpoints copy config/tokenizer from it
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended
            warnings.simplefilter("ignore")
            for _ in range(step * self.trainer.minis * self.trainer.epochs):
                self.trainer.engine.lr_scheduler.step()

    def init_nccl_sync(self, host: str, port: int, world_size: int) -> list | None:
        """GPU only: rank 0 joins the weight-update NCCL group; returns the tensor specs."""
        from rlkit.engines.weight_sync_nccl import TrainerBroadcaster, tensor_specs

        state = self.trainer.export_state()
        if state is None:
            return None
        self.broadcaster = TrainerBroadcaster(host, port, world_size)
        return tensor_specs(state)

    def broadcast_weights(self) -> int:
        """GPU only: every rank gathers (ZeRO-3), rank 0 broadcasts to the rollout workers."""
        state = self.trainer.export_state()
        return 0 if state is None else self.broadcaster.broadcast(state)

    def offload_states(self) -> None:
        self.trainer.offload_states()

    def reload_states(self) -> None:
        self.trainer.reload_states()

    def shutdown(self) -> None:
        self._drop_weights_file()
        self.trainer.shutdown()


class TrainerGroup:
    """Creates the rank actors and fans a step out to them."""

    def __init__(
        self,
        model_path: str,
        cfg,
        *,
        world: int,
        rank_cpus: float,
        env: dict,
        num_gpus: float = 0.0,
        bundles=None,
        lease=None,
        reference: ReferencePlan | None = None,
    ):
        """`cfg` is the whole RecipeConfig; every rank receives it as is.  `num_gpus` /
        `bundles`: each rank's GPU share and placement group (rlkit.runtime.placement.gpus);
        `lease`: the CoreLease the ranks read (rlkit.runtime.placement.core_lease);
        `reference`: where the ranks hold the reference model (None: no KL)."""
        self.world = world
        self.max_len = cfg.rollout.max_tokens
        self.mini_batches = cfg.trainer.mini_batches
        self.micro_tokens = cfg.trainer.micro_batch_tokens
        self.packing = cfg.trainer.packing
        self.micro, _ = micro_layout(
            cfg.samples_per_step, world, self.mini_batches, cfg.trainer.micro_batch_size
        )
        self.ranks, self._setup = start_rank_group(
            TrainerRank,
            world,
            rank_cpus,
            env,
            model_path,
            cfg,
            trainer_rank_threads(cfg, world),
            lease,
            reference,
            num_gpus=num_gpus,
            bundles=bundles,
        )
        self.reference = None if reference is None else ReferenceOnRanks(self.ranks)
        self.nccl_specs: list | None = None  # set by init_nccl_sync (GPU weight sync)

    def wait_ready(self) -> None:
        """Block until every rank has joined the group and built its engine."""
        import ray

        ray.get(self._setup)

    def train_step_async(self, samples: list[TrainSample]) -> list:
        """Start one training step; returns one ObjectRef of metrics per rank.

        Mini-batch k is the k-th contiguous chunk of the batch (whole groups, whatever the
        world size), dealt to the ranks by length (`deal_by_length`): rank r's share is its
        part of every mini-batch, in order, so the rank's own `split_even` finds them again."""
        dealt = [
            deal_by_length(mini, self.world, row_lengths(mini))
            for mini in split_even(samples, self.mini_batches)
        ]
        minis = [[parts[r] for parts in dealt] for r in range(self.world)]
        shares = [[s for mini in rank for s in mini] for rank in minis]
        norms = [
            global_normalizers([s.num_trained for rank in minis for s in rank[k]], self.max_len)
            for k in range(self.mini_batches)
        ]
        # micro-batches of every rank together: the same count per mini-batch on every rank
        layout = step_layout(minis, self.micro, self.micro_tokens, self.packing)
        return [r.train_step.remote(s, norms, lay) for r, s, lay in zip(self.ranks, shares, layout)]

    def init_nccl_sync(self, workers: list, tp_size: int = 1) -> None:
        """GPU only: trainer rank 0 + every worker's TP ranks form one NCCL group."""
        import ray

        world = 1 + len(workers) * tp_size
        host, port = ray.get(self.ranks[0].rendezvous.remote())  # rank 0 hosts the store
        joins = [
            w.init_nccl_sync.remote(host, port, 1 + i * tp_size, world)
            for i, w in enumerate(workers)
        ]
        specs = ray.get([r.init_nccl_sync.remote(host, port, world) for r in self.ranks])[0]
        ray.get(joins)
        self.nccl_specs = specs

    def offload_states_async(self) -> list:
        """GPU hybrid engine: every rank's DeepSpeed states to host memory (runtime.hybrid)."""
        return [r.offload_states.remote() for r in self.ranks]

    def reload_states_async(self) -> list:
        return [r.reload_states.remote() for r in self.ranks]

    def broadcast_weights_async(self) -> list:
        return [r.broadcast_weights.remote() for r in self.ranks]

    def export_weights_async(self, to_file: bool = False):
        """ObjectRef of rank 0's safetensors bytes, or with `to_file` of the path of the file it
        wrote (all ranks take part in a ZeRO-3 gather)."""
        refs = [r.export_weights.remote(to_file) for r in self.ranks]
        return refs[0]

    def start_save(self, folder: str, optimizer: bool = True) -> None:
        """Every rank's part of the checkpoint into `folder` (see TrainerRank; the weights
        only when not `optimizer`, `trainer.save_optimizer: false`).  Returns when every rank
        holds its snapshot in memory; the writes go on behind the next train step."""
        import ray

        ray.get([r.start_save.remote(folder, optimizer) for r in self.ranks])

    def save_done(self) -> bool:
        """Whether every rank has written its part (a rank's write error is raised here).  The
        question queues behind a running train step on each rank."""
        import ray

        return all(ray.get([r.save_done.remote() for r in self.ranks]))

    def load_state(self, folder: str) -> None:
        import ray

        ray.get([r.load_state.remote(folder) for r in self.ranks])

    def shutdown(self) -> None:
        stop_rank_group(self.ranks)


def merge_rank_metrics(per_rank: list[dict]) -> dict:
    """Shares of a step total (`.../share`: the loss, each term, the KL) add up over ranks and
    lose the suffix (`loss/share` -> `loss`); everything else is averaged."""
    out: dict[str, float] = {}
    for k in per_rank[0]:
        vals = [m[k] for m in per_rank]
        if k.endswith("/share"):
            out["loss" if k == "loss/share" else k[: -len("/share")]] = sum(vals)
        else:
            out[k] = sum(vals) / len(vals)
    return out


class ReferenceOnRanks:
    """The reference model as the credit stages call it (`logprobs`): its copies live in the
    trainer ranks; each scores a contiguous share of the samples."""

    def __init__(self, ranks: list):
        self.ranks = ranks

    def logprobs(self, samples: list[TrainSample]) -> list[list[float]]:
        import ray

        share = -(-len(samples) // len(self.ranks))  # ceil: the last ranks may get fewer
        parts = chunks(samples, max(1, share))
        done = ray.get([r.reference_logprobs.remote(p) for r, p in zip(self.ranks, parts)])
        return [lp for part in done for lp in part]
