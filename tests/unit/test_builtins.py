"""Built-ins come from one place: the core list plus every method package found on disk, loaded
on a registry's first miss; a new method is one new folder (no other file names it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import rlkit.methods
from rlkit import plugins


def test_a_fresh_process_finds_method_pieces_by_name_alone():
    code = textwrap.dedent(
        """
        import sys
        from rlkit.algos.registry import ADVANTAGES, TOKEN_HOOKS
        from rlkit.runtime.actors.request_kinds import REQUEST_KINDS
        from rlkit.runtime.controller.strategies import ROLLOUT_STRATEGIES
        assert not any(m.startswith("rlkit.methods.") for m in sys.modules)
        assert REQUEST_KINDS["constrained_beam"].jobs is not None
        assert "constrained_beam" in ROLLOUT_STRATEGIES
        assert {"grpo_vps", "asyppo"} <= set(ADVANTAGES.names())
        assert "attention_credit" in TOKEN_HOOKS
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_new_method_folder_is_loaded_without_naming_it(tmp_path, monkeypatch):
    pkg = tmp_path / "toy_method"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""A toy method."""\n')
    (pkg / "advantage.py").write_text(
        "from rlkit.algos.registry import register_advantage\n\n"
        "@register_advantage('toy_method_adv')\n"
        "def toy(*, rewards, group_ids, mask):\n"
        "    return rewards\n"
    )
    monkeypatch.setattr(rlkit.methods, "__path__", [*rlkit.methods.__path__, str(tmp_path)])
    monkeypatch.setattr(plugins, "_BUILTINS_LOADED", False)
    assert "rlkit.methods.toy_method.advantage" in plugins.method_modules()
    from rlkit.algos.registry import ADVANTAGES

    try:
        assert ADVANTAGES["toy_method_adv"].__name__ == "toy"
    finally:
        ADVANTAGES.pop("toy_method_adv", None)
        for name in [m for m in sys.modules if m.startswith("rlkit.methods.toy_method")]:
            del sys.modules[name]
