"""Loading user code named in a recipe: `module:function` or `path/to/file.py:function`.

Rewards, advantage estimators, policy losses, loss terms, credit stages, rollout strategies and
trainer hooks all load the same way; each failure raises the caller's error class with one
message naming the kind, the spec and what was wrong.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

FILE_MODULES: dict[str, str] = {}  # synthetic module name -> absolute file path

# Every core module whose import registers built-in algorithms, stages, strategies, request
# kinds or rewards, lowest layer first.  With the method packages (every module of every package
# under `rlkit/methods/`, found on disk) this is the one list of built-ins: registries load it on
# their first miss, so no module imports another only for its registrations, and nothing outside
# a method's folder names it (layers: docs/architecture.md).  Adding a method is one new folder.
BUILTIN_MODULES: tuple[str, ...] = (
    "rlkit.algos.advantages",
    "rlkit.algos.gae",
    "rlkit.algos.policy_losses",
    "rlkit.algos.off_policy",
    "rlkit.algos.loss_terms",
    "rlkit.rewards.builtin.math",
    "rlkit.rewards.builtin.format",
    "rlkit.rewards.builtin.length",
    "rlkit.rewards.builtin.code",
    "rlkit.rewards.builtin.env",
    "rlkit.rewards.builtin.judge",
    "rlkit.credit.stages",
    "rlkit.runtime.actors.request_kinds",
    "rlkit.runtime.controller.strategies",
    "rlkit.agents.multi_turn",
    "rlkit.agents.envs.calculator",
    "rlkit.agents.envs.python_tool",
)
METHODS_PACKAGE = "rlkit.methods"
_BUILTINS_LOADED = False


def method_modules() -> list[str]:
    """Every module of every method package (`rlkit/methods/<name>/*.py`), sorted."""
    import pkgutil

    methods = importlib.import_module(METHODS_PACKAGE)
    out = []
    for pkg in pkgutil.iter_modules(methods.__path__, METHODS_PACKAGE + "."):
        if pkg.ispkg:
            sub = importlib.import_module(pkg.name)
            out += [m.name for m in pkgutil.iter_modules(sub.__path__, pkg.name + ".")]
    return sorted(out)


def load_builtins() -> None:
    """Import every module of `BUILTIN_MODULES` and of the method packages once (they register
    themselves)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    for module in (*BUILTIN_MODULES, *method_modules()):
        importlib.import_module(module)


class PluginLoadError(ValueError):
    """A recipe named code that could not be loaded."""


def load_callable(spec: str, *, kind: str, error: type[Exception] = PluginLoadError):
    """The callable `spec` names (`module:attr` or `file.py:attr`)."""
    if ":" not in spec:
        raise error(
            f"{kind} {spec!r}: expected a registered name, 'module:function' or "
            "'path/to/file.py:function'"
        )
    target, attr = spec.rsplit(":", 1)
    return load_attr(
        spec, import_target(spec, target, kind=kind, error=error), attr, kind=kind, error=error
    )


def import_target(spec: str, target: str, *, kind: str, error: type[Exception]) -> ModuleType:
    """The module named by `target`: a file path (ends in .py or has a slash) or a dotted name."""
    if target.endswith(".py") or "/" in target or os.sep in target:
        return _import_file(spec, target, kind, error)
    return _import_module(spec, target, kind, error)


def _import_module(spec: str, module: str, kind: str, error: type[Exception]) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module != missing and not module.startswith(missing + "."):
            raise error(
                f"{kind} {spec!r}: module {module!r} was found but importing it failed: {exc}"
            ) from exc
        cwd, top = os.getcwd(), missing.split(".")[0]
        in_cwd = os.path.isdir(os.path.join(cwd, top)) or os.path.isfile(f"{cwd}/{top}.py")
        if cwd not in sys.path and in_cwd:
            sys.path.append(cwd)  # recipes name modules relative to the working dir
            return _import_module(spec, module, kind, error)
        raise error(
            f"{kind} {spec!r}: module {module!r} not found ({exc}); "
            f"sys.path has {len(sys.path)} entries, working dir {cwd}"
        ) from exc
    except Exception as exc:
        raise error(
            f"{kind} {spec!r}: importing module {module!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _import_file(spec: str, target: str, kind: str, error: type[Exception]) -> ModuleType:
    path = os.path.abspath(os.path.expanduser(target))
    if not os.path.isfile(path):
        raise error(f"{kind} {spec!r}: file {path!r} not found")
    digest = hashlib.sha1(path.encode()).hexdigest()[:10]
    stem = os.path.splitext(os.path.basename(path))[0]
    mod_name = f"_rlkit_plugin_file_{stem}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    file_spec = importlib.util.spec_from_file_location(mod_name, path)
    if file_spec is None or file_spec.loader is None:
        raise error(f"{kind} {spec!r}: {path!r} is not a loadable Python file")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[mod_name] = module  # before exec: dataclasses/pickle look modules up by name
    FILE_MODULES[mod_name] = path
    try:
        file_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        FILE_MODULES.pop(mod_name, None)
        raise error(
            f"{kind} {spec!r}: executing file {path!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def load_attr(
    spec: str, module: ModuleType, attr: str, *, kind: str, error: type[Exception]
) -> Callable[..., Any]:
    """`module.attr` (dotted attr allowed), which must be callable."""
    obj: Any = module
    for part in attr.split("."):
        if not part or not hasattr(obj, part):
            public = sorted(
                k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
            )
            raise error(
                f"{kind} {spec!r}: module {module.__name__!r} has no attribute {attr!r} "
                f"(callables there: {', '.join(public) or 'none'})"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise error(f"{kind} {spec!r}: {attr!r} is a {type(obj).__name__}, not a callable")
    return obj
