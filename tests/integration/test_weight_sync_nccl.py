"""NCCL broadcast weight sync (GPU clusters): trainer rank 0 -> a vLLM engine, then greedy output
equals transformers on the same weights. Needs one CUDA GPU; skipped (with this reason) on CPU."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="NCCL weight sync needs a CUDA GPU"),
]


def test_nccl_broadcast_into_vllm(tmp_path):
    import threading

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlkit.data.tiny_model import build_tiny_model
    from rlkit.engines.dist_env import free_port
    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.engines.vllm_engine import VLLMEngine
    from rlkit.engines.weight_sync_nccl import TrainerBroadcaster, tensor_specs

    path = str(build_tiny_model(tmp_path / "m", seed=0))
    engine = VLLMEngine(path, gpu_memory_utilization=0.3)
    model = AutoModelForCausalLM.from_pretrained(path).cuda()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.3)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    port = free_port()
    joined = threading.Thread(target=engine.init_nccl_sync, args=("127.0.0.1", port, 1, 2))
    joined.start()
    sender = TrainerBroadcaster("127.0.0.1", port, 2)
    joined.join()
    receiving = threading.Thread(target=engine.receive_nccl, args=(tensor_specs(state), 1))
    receiving.start()
    sender.broadcast(state)
    receiving.join()
    assert engine.version == 1
    tok = AutoTokenizer.from_pretrained(path)
    prompt = tok("3+4=", add_special_tokens=False)["input_ids"]
    got = engine.generate([prompt], SamplingConfig(temperature=0.0, max_tokens=8))[0][0]
    want = model.generate(torch.tensor([prompt]).cuda(), do_sample=False, max_new_tokens=8)
    assert got.token_ids == want[0, len(prompt) :].tolist()[: len(got.token_ids)]
