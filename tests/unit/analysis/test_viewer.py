"""`rlkit view`: the page of a made-up run (metrics.jsonl, two rollout dumps with environment
tokens in the middle of a response, a byte-level tokenizer in the run folder).  The static file
is checked always; the page as a person sees it (scripts run) in headless Chromium when a
`chromium` binary is installed (Debian's `chromium` package; CI has none: skipped)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rlkit.analysis.viewer import build_view, pick_steps, write_view
from rlkit.cli import main as cli_main
from rlkit.data.tiny_model import build_char_tokenizer

PROMPT = "What is 12*34?"
MODEL_1 = "Let me call the tool."
ENV = "<tool_response>408</tool_response>"
MODEL_2 = " The answer is 408 </script><b>x</b>"  # markup in a sample stays text


def _metrics(step: int) -> dict:
    return {
        "step": step,
        "reward/mean": 0.25 * step,
        "loss": 1.0 / step,
        "time/step_s": 2.0,
        "time/train_s": 0.5,
        "perf/rollout_busy_frac": 0.8,
        "algo/advantage": "grpo",  # not a number: no curve
    }


def _row(tok, step: int, group: int, sample: int, reward: float) -> dict:
    p, m1, env, m2 = (tok.encode(t) for t in (PROMPT, MODEL_1, ENV, MODEL_2))
    ids = p + m1 + env + m2
    mask = [0] * len(p) + [1] * len(m1) + [0] * len(env) + [1] * len(m2)
    adv = [0.0] * len(p) + [reward - 0.5] * len(m1) + [0.0] * len(env) + [reward - 0.5] * len(m2)
    return {
        "group_id": group,
        "sample": sample,
        "version": step - 1,
        "turns": 2,
        "finish_reason": "stop",
        "reward": reward,
        "components": {"accuracy": reward},
        "reward_failed": False,
        "prompt_len": len(p),
        "token_ids": ids,
        "loss_mask": mask,
        "advantages": adv,
        "logprobs": [0.0] * len(ids),
        "prompt_text": PROMPT,
        "text": MODEL_1 + ENV + MODEL_2,
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "demo"
    tok = build_char_tokenizer()
    tok.save_pretrained(run / "base_model")
    (run / "config.yaml").write_text("name: demo\nmodel:\n  kind: tiny\n  path: null\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps(_metrics(s)) + "\n" for s in (1, 2)))
    (run / "rollouts").mkdir()
    for step in (1, 2):
        rows = [_row(tok, step, g, j, float(j)) for g in (2 * step, 2 * step + 1) for j in (0, 1)]
        (run / "rollouts" / f"step_{step}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
    (run / "timeline.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TIMELINE))
    return run


def _req(worker, group, sample, start, end, version, aborted=False) -> dict:
    return {
        "kind": "request", "request": f"{group}:{sample}", "group": group, "sample": sample,
        "worker": worker, "start": 1000.0 + start, "end": 1000.0 + end, "version": version,
        "finish": "abort" if aborted else "stop", "tokens": 0 if aborted else 9,
        "aborted": aborted,
    }  # fmt: skip


# requests of two workers over two steps (one aborted), two train steps, two publishes
TIMELINE = [
    _req(0, 2, 0, 0.0, 1.0, 0), _req(0, 2, 1, 0.1, 1.2, 0), _req(1, 3, 0, 0.0, 0.8, 0),
    _req(1, 3, 1, 0.2, 3.0, 0, aborted=True), _req(0, 4, 0, 1.5, 2.5, 1),
    {"kind": "train", "step": 1, "start": 1001.2, "end": 1001.9},
    {"kind": "publish", "step": 1, "start": 1001.9, "end": 1002.0},
    {"kind": "train", "step": 2, "start": 1002.6, "end": 1003.1},
    {"kind": "publish", "step": 2, "start": 1003.1, "end": 1003.2},
]  # fmt: skip


@pytest.fixture(scope="module")
def page(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("view") / "view.html"
    assert cli_main(["view", str(run_dir), "--out", str(out)]) == 0
    return out


def _data(html: str) -> dict:
    block = re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_page_is_self_contained_and_holds_the_run(page):
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and "@import" not in html  # no outside stylesheet
    assert html.count("</script>") == 2  # the sample's "</script>" did not end a script
    assert 'id="step"' in html  # the step selector
    # model and environment tokens styled apart
    env_rule = re.search(r"\.tok\.env \{([^}]*)\}", html)
    assert env_rule and "dashed" in env_rule.group(1) and "italic" in env_rule.group(1)
    data = _data(html)
    assert data["decoded"] and sorted(data["samples"]) == ["1", "2"]
    assert [r["step"] for r in data["metrics"]] == [1, 2]
    assert "algo/advantage" not in data["metrics"][0]
    s = data["samples"]["2"][0]
    assert (s["group"], s["sample"], s["components"]) == (4, 0, {"accuracy": 0.0})
    pieces = [data["vocab"][str(i)] for i in s["ids"]]
    assert "".join(pieces) == MODEL_1 + ENV + MODEL_2  # decoded with the run's tokenizer
    env = "".join(p for p, m in zip(pieces, s["mask"]) if m == 0)
    assert env == ENV
    assert all(a == -0.5 for a, m in zip(s["adv"], s["mask"]) if m)
    tl = data["timeline"]  # seconds from the first row; [worker, start, end, version, aborted..]
    assert tl["requests"][0] == [1, 0.0, 0.8, 0, 0, 3, 0, 9]  # sorted by end
    assert [r[4] for r in tl["requests"]] == [0, 0, 0, 0, 1] and tl["total_requests"] == 5
    assert tl["train"] == [[1, 1.2, 1.9], [2, 2.6, 3.1]] and [p[0] for p in tl["publish"]] == [1, 2]


def test_timeline_keeps_the_last_requests_and_is_absent_without_a_file(run_dir, tmp_path):
    from rlkit.analysis.viewer import timeline_view

    tl = timeline_view(run_dir, max_requests=2)
    assert [r[5:7] for r in tl["requests"]] == [[4, 0], [3, 1]] and tl["total_requests"] == 5
    assert timeline_view(tmp_path) is None


def test_without_a_tokenizer_ids_are_shown(run_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("base_model"))
    view = build_view(bare)
    assert not view["decoded"] and "token ids shown" in view["tokenizer"]
    some = view["samples"]["1"][0]["ids"][0]
    assert view["vocab"][str(some)] == f"⟨{some}⟩"
    assert view["samples"]["1"][0]["text"] == MODEL_1 + ENV + MODEL_2  # shown beside the ids


def test_pick_steps_spreads_and_keeps_the_ends():
    assert pick_steps([1, 2, 3], 5) == [1, 2, 3]
    assert pick_steps(list(range(1, 101)), 5) == [1, 26, 51, 75, 100]
    assert pick_steps([1, 2, 3], 1) == [3]
    assert pick_steps([1, 2, 3], 0) == [1, 2, 3]


def test_view_of_a_folder_without_a_run_fails_clearly(tmp_path, capsys):
    assert cli_main(["view", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    assert write_view(tmp_path).is_file()  # an empty run still gives a page (with notes)


# ---- what a person sees: the page rendered by headless Chromium ----

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(url: str, tmp: Path, *extra: str) -> str:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={tmp / 'profile'}", *extra, url,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Tokens(HTMLParser):
    """The spans inside `div.tokens` (the sample browser, not the legend): (class, text) each,
    per sample; the svg paths of class `curve`; the step options."""

    def __init__(self):
        super().__init__()
        self.samples: list[list[tuple[str, str]]] = []
        self.curves: list[str] = []
        self.options: list[str] = []
        self.span: str | None = None
        self.depth = 0  # inside a div.tokens

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class") or ""
        if tag == "div" and cls == "tokens":
            self.samples.append([])
            self.depth = 1
        elif tag == "div" and self.depth:
            self.depth += 1
        elif tag == "span" and self.depth:
            self.span = cls
            self.samples[-1].append((cls, ""))
        elif tag == "path" and cls == "curve":
            self.curves.append(a.get("d", ""))
        elif tag == "option":
            self.options.append(a.get("value", ""))

    def handle_endtag(self, tag):
        if tag == "div" and self.depth:
            self.depth -= 1
        elif tag == "span":
            self.span = None

    def handle_data(self, data):
        if self.span is not None:
            cls, text = self.samples[-1][-1]
            self.samples[-1][-1] = (cls, text + data)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_chromium_shows_curves_timeline_and_samples(page, tmp_path):
    dom = Tokens()
    dom.feed(chromium(page.as_uri() + "#step=1", tmp_path, "--dump-dom"))
    # reward/mean, loss, time/step_s, in that order: reward rises, loss falls (svg y is down)
    ys = [[float(v) for v in re.findall(r"[ML][\d.]+ ([\d.]+)", d)] for d in dom.curves]
    assert len(ys) == 3 and ys[0][0] > ys[0][1] and ys[1][0] < ys[1][1] and ys[2][0] == ys[2][1]
    assert {"1", "2"} <= set(dom.options)
    assert len(dom.samples) == 4  # step 1: two groups of two samples
    for spans in dom.samples:
        assert "".join(t for _, t in spans) == MODEL_1 + ENV + MODEL_2  # what a reader sees
        assert "".join(t for c, t in spans if c == "tok env") == ENV
        assert "".join(t for c, t in spans if c == "tok model") == MODEL_1 + MODEL_2
    # the default step is the last one: its groups (4 and 5), not step 1's (2 and 3)
    default = chromium(page.as_uri(), tmp_path, "--dump-dom")
    assert "group 4 · 2 samples" in default and "group 2 · 2 samples" not in default
    assert 'class="span train"' in default  # the timeline's trainer lane
    # the request timeline: a bar per request (aborted ones apart), two publish lines
    bars = re.findall(r'<rect [^>]*class="req( odd| aborted)?"', default)
    assert len(bars) == 5 and bars.count(" aborted") == 1 and bars.count(" odd") == 1
    assert default.count('class="publish"') == 2 and "worker 1" in default
    shot = tmp_path / "shot.png"
    chromium(page.as_uri(), tmp_path, "--window-size=1000,900", f"--screenshot={shot}")
    assert shot.stat().st_size > 5000  # a rendered page, not a blank one
