"""The critic group: Ray actors forming one DeepSpeed group that holds M value models.

PPO uses M = 1 (the critic sees every sample); with M > 1 the estimator declares how a step's
samples are shared among the critics (`critic_split`, rlkit.algos.declared; by default sample j
of a group -> critic j mod M, disjoint).  The
controller asks for values before a step (GAE on the mean value V̄ = mean_m V_m) and trains the
critics on the returns while the policy trains: `train_async` returns Ray refs at once and the
dispatch waits for them together with the policy step (rlkit.runtime.controller.trainer_dispatch).

Placement (`critic.placement`): `separate` ranks reserve `critic.rank_cpus` CPUs each, wherever
Ray finds room (their own DeepSpeed group, their own share of the cluster); `colocated` ranks
reserve 0 CPUs and critic rank r is pinned to the node of trainer rank r (when the trainer group
is given), so the critics share the trainer's CPUs and that node's GPUs.  Either way the critics
are their own torch.distributed group (never the trainer's): placement moves processes, not
process groups.
"""

from __future__ import annotations

from rlkit.engines.train_batch import TrainSample, split_even
from rlkit.runtime.placement.rank_group import RankActor, start_rank_group, stop_rank_group


class CriticRank(RankActor):
    """Ray actor body of one critic rank."""

    def setup(self, rank: int, world: int, addr: str, port: int, model_path: str, cfg):
        import torch

        torch.set_num_threads(1)
        from rlkit.engines.critic_engine import DeepSpeedCritics

        self.critics = DeepSpeedCritics(rank, world, addr, port, model_path, cfg)

    def values(self, samples: list[TrainSample]) -> list:
        return self.critics.values(samples)

    def train_step(self, samples, returns, old_values, subsets, norms) -> dict:
        return self.critics.train_step(samples, returns, old_values, subsets, norms)

    def save_state(self, folder: str) -> None:
        from rlkit.engines.train_state import save_engines

        save_engines(self.critics.engines, f"{folder}/critic_state")

    def load_state(self, folder: str) -> None:
        from rlkit.engines.train_state import load_engines

        load_engines(self.critics.engines, f"{folder}/critic_state")

    def shutdown(self) -> None:
        self.critics.shutdown()


def start_pinned_group(cls, world: int, rank_cpus: float, env: dict, nodes: list[str], *args):
    """start_rank_group with rank r pinned to Ray node `nodes[r % len(nodes)]` (hard affinity)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = ray.remote(num_cpus=rank_cpus, runtime_env={"env_vars": env})(cls)
    ranks = [
        actor.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[r % len(nodes)], soft=False)
        ).remote()
        for r in range(world)
    ]
    addr, port = ray.get(ranks[0].rendezvous.remote())
    setups = [rank.setup.remote(i, world, addr, port, *args) for i, rank in enumerate(ranks)]
    return ranks, setups


def actor_nodes(actors: list) -> list[str]:
    """Ray node ids of rank actors (through their `rendezvous`, which reports the node IP)."""
    import ray

    by_ip = {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    ips = [addr for addr, _ in ray.get([a.rendezvous.remote() for a in actors])]
    return [by_ip[ip] for ip in ips]


class CriticGroup:
    def __init__(
        self,
        model_path: str,
        cfg,
        *,
        world: int,
        rank_cpus: float,
        env: dict,
        nodes: list[str] | None = None,
        num_gpus: float = 0.0,
    ):
        """`cfg` is the whole RecipeConfig, handed to every rank as is; `nodes` (Ray node ids,
        one per rank, cycled) pins the ranks: colocated placement; `num_gpus`: each separate
        rank's GPUs on a GPU cluster (rlkit.runtime.placement.gpus)."""
        from rlkit.algos.declared import critic_count, critic_split

        self.world, self.num_critics = world, critic_count(cfg)
        self.split = critic_split(cfg)  # the estimator's: each critic's share of a step
        if nodes:
            self.ranks, self._setup = start_pinned_group(
                CriticRank, world, rank_cpus, env, nodes, model_path, cfg
            )
        else:
            self.ranks, self._setup = start_rank_group(
                CriticRank, world, rank_cpus, env, model_path, cfg, num_gpus=num_gpus
            )

    def wait_ready(self) -> None:
        import ray

        ray.get(self._setup)

    def values(self, samples: list[TrainSample]) -> list[list[list[float]]]:
        """[critic][sample][token] values (each rank scores an equal share)."""
        import ray

        shares = ray.get(
            [r.values.remote(s) for r, s in zip(self.ranks, split_even(samples, self.world))]
        )
        return [[v for share in shares for v in share[m]] for m in range(self.num_critics)]

    def train_async(self, samples, returns, old_values, group_sizes: list[int]) -> list:
        """Start one step of every critic on its subset; ObjectRefs of per-rank metrics."""
        subsets = self.split(group_sizes, self.num_critics)
        norms = [
            {
                "num_tokens": float(sum(samples[i].num_trained for i in sub)),
                "num_seqs": float(len(sub)),
            }
            for sub in subsets
        ]
        per_rank = [[split_even(sub, self.world)[r] for sub in subsets] for r in range(self.world)]
        return [
            rank.train_step.remote(samples, returns, old_values, per_rank[r], norms)
            for r, rank in enumerate(self.ranks)
        ]

    def save_state(self, folder: str) -> None:
        """Every critic's model, optimizer and RNG under the checkpoint's `critic_state/`."""
        import ray

        ray.get([r.save_state.remote(folder) for r in self.ranks])

    def load_state(self, folder: str) -> None:
        import ray

        ray.get([r.load_state.remote(folder) for r in self.ranks])

    def shutdown(self) -> None:
        stop_rank_group(self.ranks)


def critic_model_path(cfg, actor_path: str) -> str:
    """The critics' backbone folder: `critic.model_path` (checked to share the actor's
    tokenizer), a tiny Qwen2 built from `critic.tiny` with the actor's tokenizer under the run
    dir (AsyPPO's mini-critics), or the actor's own initial weights."""
    from pathlib import Path

    from transformers import AutoTokenizer

    c = cfg.critic
    if c.model_path:
        if Path(c.model_path).is_dir():  # a hub id or a path only the workers see: unchecked
            check_same_tokenizer(c.model_path, actor_path)
        return c.model_path
    if c.tiny is None:
        return actor_path
    from rlkit.data.tiny_model import build_tiny_model

    t = c.tiny
    from rlkit.runtime.prepare import run_dir_of

    out = run_dir_of(cfg) / "critic_model"
    return str(
        build_tiny_model(
            out,
            hidden_size=t.hidden_size,
            num_layers=t.num_layers,
            num_heads=t.num_heads,
            intermediate_size=t.intermediate_size,
            max_position_embeddings=max(256, cfg.rollout.max_model_len),
            seed=t.seed,
            tokenizer=AutoTokenizer.from_pretrained(actor_path),
        )
    )


def check_same_tokenizer(critic_path: str, actor_path: str) -> None:
    """A critic reads the actor's token ids: its embedding must cover the actor's vocab and,
    when the folder has a tokenizer, map every token to the same id."""
    from transformers import AutoConfig, AutoTokenizer

    actor = AutoTokenizer.from_pretrained(actor_path)
    vocab = AutoConfig.from_pretrained(critic_path).vocab_size
    if vocab < len(actor):
        raise ValueError(
            f"critic.model_path {critic_path}: vocab_size {vocab} < the actor's {len(actor)}"
        )
    try:
        own = AutoTokenizer.from_pretrained(critic_path)
    except (OSError, ValueError):
        return  # no tokenizer files: the embedding size check above is all we can do
    if own.get_vocab() != actor.get_vocab():
        raise ValueError(f"critic.model_path {critic_path}: not the actor's tokenizer")
