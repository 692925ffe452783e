"""The `code_tests` reward: sandboxed unit tests that count only when they ran to their end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlkit.rewards.builtin.code import build_program, code_tests, extract_code, run_tests
from rlkit.sandbox import SandboxUnavailable, run_python

TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
GOOD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module", autouse=True)
def sandbox():
    try:
        run_python("pass")
    except SandboxUnavailable as e:
        pytest.skip(f"sandbox unavailable here: {e}")


def test_right_and_wrong_solutions():
    assert code_tests("Write add.", f"Here:\n```python\n{GOOD}```\nDone.", TESTS) == 1.0
    assert code_tests("Write add.", GOOD, TESTS) == 1.0  # no fence: the whole text
    assert code_tests("", "def add(a, b):\n    return a - b\n", TESTS) == 0.0
    assert code_tests("", "def add(a, b) return", TESTS) == 0.0  # syntax error
    wrong = run_tests("def add(a, b):\n    return 0\n", TESTS)
    assert not wrong.passed and wrong.reason.startswith("exit 1: AssertionError")


@pytest.mark.parametrize(
    "evasion",
    [
        "import sys\nsys.exit(0)",
        "raise SystemExit",
        "raise SystemExit(0)",
        "import os\nos._exit(0)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        "import os\nos.close(1)",  # the end marker can no longer be written
        "import sys\nsys.stdout = open('/dev/null', 'w')",
        "import atexit, os\natexit.register(lambda: print('rlkit-tests-done-0'))\nos._exit(0)",
        "print('rlkit-tests-done-' + '0' * 32)\nraise SystemExit(0)",
    ],
)
def test_ending_early_fails(evasion):
    outcome = run_tests(f"{GOOD}\n{evasion}\n", TESTS)
    assert not outcome.passed, outcome
    assert outcome.result is not None and not outcome.result.timed_out


def test_exit_zero_without_the_end_marker_is_named():
    outcome = run_tests(f"{GOOD}\nimport os\nos._exit(0)\n", TESTS)
    assert outcome.result.exit_code == 0
    assert outcome.reason == "tests did not run to their end"


def test_timeouts_and_entry_point_checks():
    loop = run_tests("def add(a, b):\n    while True:\n        pass\n", TESTS, timeout_s=1.0)
    assert (loop.passed, loop.reason) == (False, "timed out")
    check = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
    assert code_tests("", GOOD, check, entry_point="add") == 1.0
    assert code_tests("", GOOD.replace("+", "*"), check, entry_point="add") == 0.0


def test_prepend_prompt_completes_a_function_body():
    prompt = 'def add(a, b):\n    """Sum."""\n'
    assert code_tests(prompt, "    return a + b\n", TESTS, prepend_prompt=True) == 1.0
    assert code_tests(prompt, "    return a\n", TESTS, prepend_prompt=True) == 0.0


def test_program_layout_and_extraction():
    program = build_program("x = 1\n", "assert x == 1\n", "f", "NONCE")
    assert program == "x = 1\n\nassert x == 1\n\ncheck(f)\n\nprint('NONCE', flush=True)\n"
    assert extract_code("a\n```py\none\n```\nb\n```python\ntwo\n```") == "two\n"
    assert extract_code("no fence") == "no fence"


def test_registered_name_resolves_in_a_fresh_process():
    code = (
        "from rlkit.rewards import resolve_reward\n"
        "r = resolve_reward('code_tests')\n"
        "assert r.source.startswith('rlkit.rewards.builtin.code'), r.source\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_by_name_in_process_and_thread_reward_pools():
    from rlkit.rewards import RewardPool
    from rlkit.rewards.pool import MODES

    completions = [f"```python\n{GOOD}```", "def add(a, b):\n    return a * b\n"]
    for mode in MODES:  # the sandbox runs from pool worker processes and helper threads alike
        with RewardPool(["code_tests"], mode=mode, timeout_s=30) as pool:
            res = pool.score_batch(["q"] * 2, completions, [{"tests": TESTS}] * 2)
        assert [r.score for r in res] == [1.0, 0.0], [r.error for r in res]
