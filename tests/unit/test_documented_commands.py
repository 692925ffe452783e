"""Every command line the docs show parses with the real parser of its command.

Collected from README.md and docs/*.md: each line of a ```bash block that starts with
`rlkit `, `python -m launch.submit`, `python benchmarks/...` or `python -m benchmarks...`
(with or without `.venv/bin/`), and each inline `code` span that starts the same way.  Synopsis
notation is read as a user would type it: `[--last 5]` is typed as `--last 5`, `...` is left
out, and the placeholders N and K are numbers.

A ```bash line is a whole command: it must parse as is.  An inline span may name only some
options of a command (`rlkit eval --suite rec`), so for spans the required arguments are not
asked for, and a span that ends on an option name (`rlkit eval --items`) mentions that option;
everything a span does show must still be accepted.  Only parsing: nothing runs.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STARTS = ("rlkit ", "python -m launch.submit", "python benchmarks/", "python -m benchmarks.")
# an inline span is a command when its second word is one (not `rlkit eval: error: ...`)
INLINE_COMMAND = re.compile(
    r"rlkit [a-z]+( |$)|python (-m launch\.submit|benchmarks/|-m benchmarks\.)"
)
PLACEHOLDER_INTS = {"N": "2", "K": "2"}
INLINE = re.compile(r"`([^`\n]+)`")
# `rlkit CMD`: the module whose `build_parser` parses it (rlkit.cli dispatches to its `main`)
RLKIT_COMMANDS = {
    "eval": "rlkit.eval.cli",
    "compare": "rlkit.analysis.cli",
    "view": "rlkit.analysis.viewer",
}


class ParseError(Exception):
    pass


def _strip_venv(line: str) -> str:
    return line.removeprefix(".venv/bin/")


def _is_command(text: str) -> bool:
    return _strip_venv(text).startswith(STARTS)


def bash_block_lines(text: str) -> list[tuple[int, str]]:
    """(line number, command) of the ```bash blocks; `\\` continuations joined, comments cut."""
    found: list[tuple[int, str]] = []
    in_bash, parts, start = False, [], 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("```"):
            in_bash = not in_bash and line == "```bash"
            continue
        if not in_bash or not (parts or _is_command(line)):
            continue
        if not parts:
            start = no
        parts.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            found.append((start, " ".join(parts)))
            parts = []
    return found


def inline_spans(text: str) -> list[tuple[int, str]]:
    """(line number, command) of inline code spans outside fenced blocks."""
    found, fenced = [], False
    for no, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            spans = (m.group(1) for m in INLINE.finditer(line))
            found += [(no, s) for s in spans if INLINE_COMMAND.match(_strip_venv(s))]
    return found


def words(command: str) -> list[str]:
    """The words a user types for `command`: shell words, `[...]` opened up, `...` dropped."""
    out, depth = [], 0
    for w in shlex.split(command, comments=True):
        if w.startswith("["):
            depth, w = depth + 1, w[1:]
        if w.endswith("]") and depth:
            depth, w = depth - 1, w[:-1]
        if w and w != "...":
            out.append(PLACEHOLDER_INTS.get(w, w))
    return out


def command_parser(argv: list[str]) -> tuple[str, argparse.ArgumentParser | None, str, list]:
    """(name, parser, parse method, arguments) of a command line's words.  A benchmark script
    without `build_parser` takes no arguments (parser None)."""
    argv = [_strip_venv(argv[0]), *argv[1:]]
    if argv[0] == "rlkit":
        cmd, rest = argv[1], argv[2:]
        if cmd == "train":
            from rlkit.cli import train_parser

            return "rlkit train", train_parser(), "parse_intermixed_args", rest
        module = RLKIT_COMMANDS.get(cmd)
        if module is None:
            raise ParseError(
                f"rlkit has no command {cmd!r} (known: train, {', '.join(RLKIT_COMMANDS)})"
            )
        parser = importlib.import_module(module).build_parser()
        return f"rlkit {cmd}", parser, "parse_intermixed_args", rest
    assert argv[0] == "python", argv
    if argv[1:3] == ["-m", "launch.submit"]:
        from launch.submit import build_parser

        return "launch.submit", build_parser(), "parse_intermixed_args", argv[3:]
    if argv[1] == "-m":
        module, rest = argv[2], argv[3:]
    else:
        module, rest = argv[1].removesuffix(".py").replace("/", "."), argv[2:]
    mod = importlib.import_module(module)
    builder = getattr(mod, "build_parser", None)
    return module, None if builder is None else builder(), "parse_args", rest


def _raising(parser: argparse.ArgumentParser, *, relaxed: bool) -> argparse.ArgumentParser:
    """`parser` with its errors raised (not printed and exited); `relaxed`: nothing required."""

    def error(message: str):
        raise ParseError(message)

    parser.error = error  # type: ignore[method-assign]
    if relaxed:
        for action in parser._actions:
            action.required = False
        for group in parser._mutually_exclusive_groups:
            group.required = False
    return parser


def parse(command: str, *, whole: bool) -> argparse.Namespace | None:
    """Parse `command` with its command's parser; raises ParseError naming what failed."""
    name, parser, method, rest = command_parser(words(command))
    if parser is None:
        if rest:
            raise ParseError(f"{name} takes no arguments, the docs give {rest}")
        return None
    parser = _raising(parser, relaxed=not whole)
    try:
        return getattr(parser, method)(rest)
    except ParseError as exc:
        mentions_option = rest and rest[-1].startswith("-") and "expected one argument" in str(exc)
        if whole or not mentions_option:
            raise
        return None


def _collect() -> list:
    cases = []
    for doc in DOCS:
        text, rel = doc.read_text(encoding="utf-8"), doc.relative_to(ROOT)
        cases += [pytest.param(c, True, id=f"{rel}:{n}") for n, c in bash_block_lines(text)]
        cases += [pytest.param(c, False, id=f"{rel}:{n}:inline") for n, c in inline_spans(text)]
    return cases


CASES = _collect()


def test_the_docs_show_commands_of_every_kind():
    """The collector finds the documented lines (an empty table would pass vacuously)."""
    whole = [c.values[0] for c in CASES if c.values[1]]
    for start in ("rlkit train", "rlkit eval", "rlkit compare", "launch.submit", "benchmarks"):
        assert any(start in c for c in whole), start
    assert any("--resume" in c and "=" in c.split("--resume")[1] for c in whole)


@pytest.mark.parametrize(("command", "whole"), CASES)
def test_documented_command_parses(command: str, whole: bool):
    try:
        parse(command, whole=whole)
    except ParseError as exc:
        pytest.fail(f"{command!r} does not parse: {exc}")


def test_overrides_may_follow_options():
    """The form the issue found broken: overrides after `--resume` (and between options)."""
    a = parse("rlkit train r.yaml --resume runs/x trainer.total_steps=6 async.alpha=1", whole=True)
    assert (a.recipe, a.resume, a.overrides) == (
        "r.yaml",
        "runs/x",
        ["trainer.total_steps=6", "async.alpha=1"],
    )
    s = parse(
        "python -m launch.submit r.yaml --address http://h:8265 trainer.lr=1 --no-wait", whole=True
    )
    assert (s.overrides, s.address, s.no_wait) == (["trainer.lr=1"], "http://h:8265", True)
    c = parse("rlkit compare runs/a --metric m runs/b --out o", whole=True)
    assert (c.groups, c.metric) == (["runs/a", "runs/b"], "m")


def test_a_wrong_line_fails():
    """The check can fail: an unknown option, a missing required one, a stray argument."""
    with pytest.raises(ParseError, match="unrecognized"):
        parse("rlkit eval --suite gsm8k --model m --out o --bogus 1", whole=True)
    with pytest.raises(ParseError, match="required"):
        parse("rlkit eval --suite gsm8k --model m", whole=True)
    with pytest.raises(ParseError, match="takes no arguments"):
        parse("python benchmarks/async_vs_sync.py --steps 3", whole=True)
    with pytest.raises(ParseError, match="unrecognized"):
        parse("rlkit eval --suite rec --nonsense", whole=False)
    with pytest.raises(ParseError, match="no command 'evaluate'"):
        parse("rlkit evaluate --suite rec", whole=True)
