"""Loading policies for training and exporting their weights for rollout engines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_model_dir(path: str | Path) -> Path:
    """Fail early, naming the path, when a model folder is missing or incomplete: no
    config.json, a weights file that is not safetensors (corrupt, truncated, an LFS pointer),
    a shard the index names but the folder lacks, or a tokenizer with more tokens than the
    model's embedding rows (token ids the model cannot embed)."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"model path not found: {p}")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"model path {p} has no config.json (not an HF model folder)")
    _check_weights(p)
    _check_tokenizer(p)
    return p


def _check_weights(p: Path) -> None:
    import json

    from safetensors import safe_open

    index = p / "model.safetensors.index.json"
    if index.is_file():
        names = set(json.loads(index.read_text()).get("weight_map", {}).values())
        missing = sorted(n for n in names if not (p / n).is_file())
        if missing:
            raise FileNotFoundError(f"model path {p}: shards named in {index.name} missing: "
                                    f"{missing[:3]}")  # fmt: skip
    for shard in sorted(p.glob("*.safetensors")):
        try:
            with safe_open(str(shard), "pt") as fh:  # reads the header only
                fh.keys()
        except Exception as exc:
            msg = f"model weights {shard}: not a readable safetensors file ({exc})"
            raise ValueError(msg) from None


def _check_tokenizer(p: Path) -> None:
    import json

    if not any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        return
    vocab = json.loads((p / "config.json").read_text()).get("vocab_size")
    if not vocab:
        return
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(p))
    special = {k: getattr(tok, f"{k}_token_id", None) for k in ("eos", "bos", "pad")}
    too_big = {k: i for k, i in special.items() if i is not None and i >= vocab}
    if tok.vocab_size > vocab or too_big:
        raise ValueError(
            f"model path {p}: tokenizer does not fit the model (a tokenizer of another model?): "
            f"{tok.vocab_size} base tokens, special ids {too_big or special}, but config.json "
            f"vocab_size is {vocab}"
        )


def apply_lora(model, lora_cfg):
    """Wrap `model` with peft LoRA adapters (only the adapters train); `lora_cfg` is the
    recipe's `model.lora` section."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=lora_cfg.r,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=list(lora_cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, cfg)


def merged_state_dict(model) -> dict:
    """The full (LoRA-merged) state dict with the base model's parameter names, on CPU.

    Tied weights are cloned: safetensors refuses shared storage, and vLLM wants `lm_head.weight`
    even when it is tied to the embeddings."""
    import torch

    if hasattr(model, "get_base_model"):  # peft
        state = _lora_merged(model.get_base_model())
    else:
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    state = with_lm_head(state)
    return {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def _lora_merged(base) -> dict:
    """W + ΔW of every LoRA layer, computed out of place.  peft's merge_adapter/unmerge_adapter
    would add and subtract ΔW in place, and W + ΔW − ΔW is not W in floating point: every export
    would nudge the frozen weights (and a resumed run, which exported a different number of
    times, would not repeat the uninterrupted one)."""
    import torch
    from peft.tuners.lora import LoraLayer

    deltas: dict = {}
    with torch.no_grad():
        for name, mod in base.named_modules():
            if isinstance(mod, LoraLayer) and not mod.merged:
                for adapter in mod.active_adapters:
                    if adapter in mod.lora_A:
                        key = f"{name}.base_layer.weight"
                        deltas[key] = deltas.get(key, 0) + mod.get_delta_weight(adapter)
        return {
            k.replace(".base_layer", ""): (v + deltas[k] if k in deltas else v).to("cpu", copy=True)
            for k, v in base.state_dict().items()
            if "lora_" not in k
        }


def with_lm_head(state: dict) -> dict:
    """Add a (cloned) `lm_head.weight` for tied embeddings: vLLM's reload expects it."""
    if "lm_head.weight" not in state and "model.embed_tokens.weight" in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    return state


def load_folder_state(model_dir: str | Path) -> dict:
    """The full state dict of an HF folder's safetensors shards (with `lm_head.weight`)."""
    from safetensors.torch import load_file

    state: dict = {}
    for shard in sorted(Path(model_dir).glob("*.safetensors")):
        state.update(load_file(str(shard)))
    return with_lm_head(state)


def state_dict_to_bytes(state: dict) -> bytes:
    from safetensors.torch import save

    return save(state)


def load_weights_state(weights: bytes | str) -> dict:
    """The state dict of what a rollout engine's `load_weights` takes: safetensors bytes, or
    the path of a safetensors file on this host (rlkit.runtime.controller.weight_publisher)."""
    from safetensors.torch import load, load_file

    return load_file(weights) if isinstance(weights, str) else load(weights)


def shared_memory_path(size: int) -> str:
    """A fresh file name for `size` bytes of weights: in /dev/shm when it has room for twice
    that (memory, no disk; a publisher briefly holds two versions), else in the temporary
    directory."""
    import os
    import shutil
    import tempfile
    import uuid

    folder = "/dev/shm"
    if not os.path.isdir(folder) or shutil.disk_usage(folder).free < 2 * size:
        folder = tempfile.gettempdir()
    return os.path.join(folder, f"rlkit-weights-{os.getpid()}-{uuid.uuid4().hex}.safetensors")


def write_weights_file(state: dict) -> str:
    """`state` as a safetensors file (`shared_memory_path`); the caller removes it.  Files
    that killed writers left behind in that folder go first (`remove_stale_weights_files`)."""
    import os

    from safetensors.torch import save_file

    size = sum(t.numel() * t.element_size() for t in state.values())
    path = shared_memory_path(size)
    remove_stale_weights_files(os.path.dirname(path))
    save_file(state, path)
    return path


def remove_stale_weights_files(folder: str | Path) -> int:
    """Remove the weights files (`rlkit-weights-<pid>-*.safetensors`) whose writing process is
    gone: a rank or worker killed outright (OOM killer, `kill -9`, a restart) cannot remove its
    own, and in /dev/shm each holds memory (651 MB for SmolLM2-135M).  Returns the count."""
    removed = 0
    for path in Path(folder).glob("rlkit-weights-*-*.safetensors"):
        pid = path.name.split("-")[2]
        if pid.isdigit() and not _process_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _process_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def write_hf_files(state: dict, model_dir_src: str | Path, folder: str | Path) -> None:
    """Config, tokenizer and generation files of `model_dir_src` plus `state` as
    `model.safetensors` into the existing `folder` (transformers and vLLM load it)."""
    import shutil

    from safetensors.torch import save_file

    folder = Path(folder)
    for f in Path(model_dir_src).iterdir():
        if (
            f.is_file()
            and not f.name.endswith((".safetensors", ".bin"))
            and f.name != "model.safetensors.index.json"
        ):
            shutil.copy2(f, folder / f.name)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


@contextmanager
def atomic_folder(out_dir: str | Path) -> Iterator[Path]:
    """Yield the hidden sibling `.NAME.tmp` to fill; on success it is fsynced and only then
    renamed to NAME (an existing NAME is first moved to `.NAME.old`, removed afterwards).  An
    exception midway removes the temporary folder; a killed process leaves at most a hidden
    `.NAME.tmp` / `.NAME.old`, cleaned up (or restored) by the next save of NAME.  So NAME is
    always absent or complete, and the previous checkpoint is never touched before the new one
    is whole."""
    import shutil

    out = Path(out_dir)
    tmp, old = partial_paths(out)
    recover(out)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for sub in [tmp, *(d for d in tmp.rglob("*") if d.is_dir())]:
            _fsync_folder(sub)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    _fsync_folder(out.parent, files=False)
    shutil.rmtree(old, ignore_errors=True)


def partial_paths(out: Path) -> tuple[Path, Path]:
    """The hidden temporary and set-aside siblings of a folder being saved."""
    return out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")


def recover(out: Path) -> None:
    """After a crash during a save of `out`: restore the set-aside copy if the rename onto
    `out` never happened, drop the unfinished temporary folder."""
    import shutil

    tmp, old = partial_paths(out)
    shutil.rmtree(tmp, ignore_errors=True)
    if old.exists():
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(out)


def _fsync_folder(folder: Path, files: bool = True) -> None:
    """Flush the folder's files and its entries to disk (a rename is only as durable)."""
    import os

    paths = [f for f in folder.iterdir() if f.is_file()] if files else []
    for f in paths:
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
