"""Loading reward functions by dotted path, file path and registered name; clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlkit.rewards import RewardLoadError, load_reward, resolve_reward, reward


def test_dotted_path_loads_shipped_reward():
    fn = load_reward("rewards.math:accuracy")
    assert fn("q", "\\boxed{7}", answer="7") == 1.0


def test_recipe_paths_of_shipped_rewards_are_the_library_functions():
    """`rewards.math:accuracy` & co. re-export the library's code (one definition each)."""
    from rlkit.rewards.builtin import format as fmt
    from rlkit.rewards.builtin import length, math

    assert load_reward("rewards.math:accuracy") is math.accuracy
    assert load_reward("rewards.math:boxed_format") is math.boxed_format
    assert load_reward("rewards.format:think_answer_format") is fmt.think_answer_format
    assert load_reward("rewards.length:overlong_penalty") is length.overlong_penalty


def test_dotted_path_from_a_package_on_sys_path(tmp_path, monkeypatch):
    pkg = tmp_path / "rlkit_test_pkg_a"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("def twice(p, c, **kw):\n    return 2.0 * len(c)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_reward("rlkit_test_pkg_a.mod:twice")("", "abc") == 6.0


def test_file_path_loads_and_source_is_absolute(tmp_path, monkeypatch):
    (tmp_path / "my_reward.py").write_text("def brevity(p, c, **kw):\n    return -len(c) / 10\n")
    monkeypatch.chdir(tmp_path)
    loaded = resolve_reward("my_reward.py:brevity")
    assert loaded.fn("", "12345") == -0.5
    assert loaded.name == "brevity"
    assert loaded.source == f"{tmp_path / 'my_reward.py'}:brevity"


def test_registered_short_name_and_batch_flag():
    @reward("rlkit_test_short_name", batch=True)
    def group_fn(prompts, completions, **kw):
        return [1.0 for _ in prompts]

    loaded = resolve_reward("rlkit_test_short_name")
    assert loaded.fn is group_fn and loaded.batch and loaded.name == "rlkit_test_short_name"
    assert loaded.source is None  # local function: only thread mode can run it


def test_builtin_short_names_resolve_in_a_fresh_process_without_shipped_content():
    """A registered name loads the built-ins list (rlkit.plugins.BUILTIN_MODULES); the library
    never imports the top-level `rewards/` package to find it."""
    code = (
        "import sys\n"
        "from rlkit.rewards import resolve_reward\n"
        "names = ['math_accuracy', 'boxed_format', 'think_answer_format',\n"
        "         'think_closed_format', 'overlong_penalty']\n"
        "srcs = [resolve_reward(n).source for n in names]\n"
        "assert all(s.startswith('rlkit.rewards.builtin.') for s in srcs), srcs\n"
        "shipped = sorted(m for m in sys.modules if m == 'rewards' or m.startswith('rewards.'))\n"
        "assert not shipped, shipped\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_shipped_short_names_resolve_without_prior_import():
    assert resolve_reward("math_accuracy").fn is load_reward("rewards.math:accuracy")
    assert resolve_reward("rere").batch


def test_async_function_detected(tmp_path):
    path = tmp_path / "a.py"
    path.write_text("async def r(p, c, **kw):\n    return 1.0\n")
    assert resolve_reward(f"{path}:r").is_async


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("rlkit_no_such_module_xyz:fn", "module 'rlkit_no_such_module_xyz' not found"),
        ("/nonexistent/dir/r.py:fn", "file '/nonexistent/dir/r.py' not found"),
        ("rewards.math:no_such_fn", "has no attribute 'no_such_fn'"),
        ("rlkit.rewards.builtin.math:_INT", "not a callable"),
        ("rlkit_no_such_short_name", "no reward registered under this name"),
        ("some_file.py", "name the function too"),
        ("", "empty reward spec"),
    ],
)
def test_bad_specs_give_one_clear_error(spec, fragment):
    with pytest.raises(RewardLoadError) as info:
        load_reward(spec)
    assert fragment in str(info.value)


def test_attribute_error_lists_available_callables():
    with pytest.raises(RewardLoadError, match="accuracy"):
        load_reward("rewards.math:acc")


def test_module_whose_dependency_is_missing_is_not_reported_as_missing(tmp_path, monkeypatch):
    (tmp_path / "rlkit_test_broken_dep.py").write_text("import rlkit_missing_dep_qq\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RewardLoadError, match="was found but importing it failed"):
        load_reward("rlkit_test_broken_dep:fn")


def test_file_that_raises_on_import(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("raise RuntimeError('nope')\n")
    with pytest.raises(RewardLoadError, match="executing file .* failed: RuntimeError: nope"):
        load_reward(f"{path}:fn")
