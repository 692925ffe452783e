"""Evaluation during training: an actor with its own engine, fed the policy's weights at eval
steps, running an `rlkit eval` suite while the trainer goes on (nothing pauses)."""

from __future__ import annotations

from typing import Any


class EvalWorker:
    """Ray actor body (see Spine.maybe_eval)."""

    def __init__(self, engine_kind: str, model_path: str, engine_kw: dict):
        import torch
        from transformers import AutoTokenizer

        torch.set_num_threads(1)
        from rlkit.engines import make_rollout_engine

        self.engine = make_rollout_engine(engine_kind, model_path, **engine_kw)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)

    def evaluate(
        self,
        blob: bytes,
        version: int,
        suite: str,
        data: str,
        items: str | None,
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        from rlkit.eval import run_suite

        self.engine.load_weights(blob, version)
        metrics = run_suite(
            suite,
            engine=self.engine,
            tokenizer=self.tokenizer,
            data=data,
            items=items,
            settings={"progress": False, **settings},
        )
        return {
            "step": version,
            **{f"eval/{suite}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))},
        }
