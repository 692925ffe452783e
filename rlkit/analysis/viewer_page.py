"""The page of `rlkit view` (rlkit.analysis.viewer): HTML, styles and script in one string, the
run's data in one JSON block.  Nothing is fetched: no CDN, no font, no image, so the file opens
offline and can be mailed or archived as is.  The script draws the curves and the timeline as
inline SVG and the sample browser as DOM; `#step=N` in the address opens step N's samples.
"""

from __future__ import annotations

import html
import json
from typing import Any

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 17px; border-bottom: 1px solid #ccc; margin-top: 28px; }
nav a { margin-right: 12px; }
.note { color: #666; font-size: 12px; }
#curve-grid { display: flex; flex-wrap: wrap; gap: 8px; }
svg.chart { border: 1px solid #ddd; background: #fff; }
svg .curve { fill: none; stroke: #1f77b4; stroke-width: 1.6; }
svg .axis { stroke: #999; stroke-width: 1; } svg text { font-size: 10px; fill: #444; }
svg .span.step { fill: #d9e4f0; stroke: #fff; } svg .span.step.odd { fill: #c3d3e6; }
svg .span.train { fill: #e07b39; } svg .span.rollout { fill: #3b8e5a; }
svg .req { fill: #3b6fb0; } svg .req.odd { fill: #7fa7d9; } svg .req.aborted { fill: #d03b3b; }
svg .publish { stroke: #7a3fa0; stroke-width: 1.5; }
.group { border: 1px solid #ccc; border-radius: 6px; margin: 10px 0; padding: 6px 10px; }
.group h3 { font-size: 14px; margin: 4px 0; }
.sample { border-top: 1px dashed #ddd; padding: 6px 0; }
.meta { font-size: 12px; color: #444; margin-bottom: 4px; }
.meta b { color: #000; }
.components { font-size: 11px; color: #555; }
.tokens { white-space: pre-wrap; font: 13px/1.7 ui-monospace, monospace; }
.tok { border-radius: 2px; }
.tok.model { border-bottom: 1px solid #bbb; }
.tok.env { background: #eceff4; color: #5a6b85; font-style: italic; border: 1px dashed #9aa9c2; }
.legend span { margin-right: 14px; padding: 1px 4px; }
.prompt { white-space: pre-wrap; font-size: 12px; color: #555; }
"""

SCRIPT = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const NS = 'http://www.w3.org/2000/svg';
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function sv(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmt(x) {
  if (typeof x !== 'number') return String(x);
  const big = Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3);
  return big ? x.toExponential(2) : (+x.toPrecision(4)).toString();
}
function rect(x0, x1, y, h, cls, tip, extra) {  // a span of the timeline, at least 0.5 px wide
  const r = sv('rect', {x: x0, y: y, width: Math.max(x1 - x0, 0.5), height: h, class: cls,
    ...(extra || {})});
  r.appendChild(sv('title', {}, tip));
  return r;
}

// ---- curves ----
const DEFAULT_CURVES = ['reward/mean', 'loss', 'response_length/mean', 'entropy/mean',
  'grad_norm', 'pg/clip_frac', 'advantage/abs_mean', 'audit/reward_mismatch', 'time/step_s',
  'throughput/tokens_per_s'];
function series(key) {
  return D.metrics.filter(r => key in r && 'step' in r).map(r => [r.step, r[key]]);
}
function lineChart(key, pts) {
  const W = 300, H = 150, L = 52, R = 10, T = 20, B = 26;
  const svg = sv('svg', {width: W, height: H, class: 'chart', 'data-metric': key});
  svg.appendChild(sv('text', {x: L, y: 13, 'font-weight': 'bold'}, key));
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const Y = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  svg.appendChild(sv('line', {x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis'}));
  svg.appendChild(sv('line', {x1: L, y1: T, x2: L, y2: H - B, class: 'axis'}));
  svg.appendChild(sv('text', {x: L - 4, y: T + 4, 'text-anchor': 'end'}, fmt(y1)));
  svg.appendChild(sv('text', {x: L - 4, y: H - B, 'text-anchor': 'end'}, fmt(y0)));
  svg.appendChild(sv('text', {x: L, y: H - 8}, 'step ' + x0));
  svg.appendChild(sv('text', {x: W - R, y: H - 8, 'text-anchor': 'end'}, 'step ' + x1));
  const d = pts.map((p, i) => (i ? 'L' : 'M') + X(p[0]).toFixed(1) + ' ' + Y(p[1]).toFixed(1));
  svg.appendChild(sv('path', {d: d.join(' '), class: 'curve'}));
  if (pts.length === 1) {
    svg.appendChild(sv('circle', {cx: X(xs[0]), cy: Y(ys[0]), r: 3, class: 'curve'}));
  }
  return svg;
}
function drawCurves() {
  const grid = document.getElementById('curve-grid');
  const keys = [...new Set(D.metrics.flatMap(r => Object.keys(r)))]
    .filter(k => k !== 'step').sort();
  if (!D.metrics.length) grid.appendChild(el('p', 'note', 'No metrics.jsonl in this run.'));
  for (const k of DEFAULT_CURVES) if (keys.includes(k)) grid.appendChild(lineChart(k, series(k)));
  const pick = document.getElementById('metric-pick'), any = document.getElementById('curve-any');
  for (const k of keys) pick.appendChild(new Option(k, k));
  pick.onchange = () => { any.replaceChildren(lineChart(pick.value, series(pick.value))); };
}

// ---- timeline: steps end to end; train span = time/train_s, ending where the step ends ----
function drawTimeline() {
  const box = document.getElementById('timeline-chart');
  const recs = D.metrics.filter(r => 'time/step_s' in r);
  if (!recs.length) {
    box.appendChild(el('p', 'note', 'No time/step_s in metrics.jsonl.'));
    return;
  }
  const total = recs.reduce((s, r) => s + r['time/step_s'], 0) || 1;
  const W = 960, L = 70, R = 10, lane = 24, H = 3 * lane + 30;
  const svg = sv('svg', {width: W, height: H, class: 'chart timeline'});
  const X = t => L + t / total * (W - L - R);
  ['steps', 'rollout', 'trainer'].forEach((n, i) => {
    svg.appendChild(sv('text', {x: 4, y: 16 + i * lane}, n));
  });
  const h = lane - 6;
  let t = 0;
  recs.forEach((r, i) => {
    const s = r['time/step_s'], end = t + s, name = 'step ' + r.step;
    const odd = i % 2 ? ' odd' : '';
    svg.appendChild(rect(X(t), X(end), 4, h, 'span step' + odd, name + ': ' + fmt(s) + ' s'));
    if ('time/rollout_s' in r) {  // synchronous loop: generation before the train step
      const ro = r['time/rollout_s'];
      svg.appendChild(rect(X(t), X(t + ro), 4 + lane, h, 'span rollout',
        name + ' rollout: ' + fmt(ro) + ' s'));
    } else {  // asynchronous: the workers' busy share of the step, as the shade
      const busy = r['perf/rollout_busy_frac'] || 0;
      svg.appendChild(rect(X(t), X(end), 4 + lane, h, 'span rollout',
        name + ' rollout workers busy ' + fmt(100 * busy) + '%',
        {'fill-opacity': 0.15 + 0.85 * busy}));
    }
    if ('time/train_s' in r) {
      const tr = Math.min(r['time/train_s'], s);
      svg.appendChild(rect(X(end - tr), X(end), 4 + 2 * lane, h, 'span train',
        name + ' credit + train: ' + fmt(r['time/train_s']) + ' s'));
    }
    t = end;
  });
  const ya = 3 * lane + 6;
  svg.appendChild(sv('line', {x1: L, y1: ya, x2: W - R, y2: ya, class: 'axis'}));
  svg.appendChild(sv('text', {x: L, y: H - 4}, '0 s'));
  svg.appendChild(sv('text', {x: W - R, y: H - 4, 'text-anchor': 'end'}, fmt(total) + ' s'));
  box.appendChild(svg);
}

// ---- requests: one lane per worker (requests packed into rows), the trainer lane below ----
function packRows(reqs, maxRows) {  // greedy interval packing: row of each request
  const ends = [];
  return reqs.map(r => {
    let i = ends.findIndex(e => e <= r[1]);
    if (i < 0) { i = ends.length < maxRows ? ends.length : ends.indexOf(Math.min(...ends)); }
    ends[i] = r[2];
    return i;
  });
}
function drawRequests() {
  const box = document.getElementById('requests-chart'), T = D.timeline;
  if (!T || !T.requests.length) {
    box.appendChild(el('p', 'note', 'No timeline.jsonl in this run.'));
    return;
  }
  const workers = [...new Set(T.requests.map(r => r[0]))].sort((a, b) => a - b);
  const all = [...T.requests.map(r => r[2]), ...T.train.map(r => r[2])];
  const total = Math.max(...all) || 1, W = 960, L = 70, R = 10, rowH = 3, MAXR = 40;
  const X = t => L + t / total * (W - L - R);
  const lanes = workers.map(w => {
    const reqs = T.requests.filter(r => r[0] === w).sort((a, b) => a[1] - b[1]);
    const rows = packRows(reqs, MAXR);
    return {w, reqs, rows, n: Math.max(...rows) + 1};
  });
  const H = lanes.reduce((h, l) => h + l.n * rowH + 10, 0) + 60;
  const svg = sv('svg', {width: W, height: H, class: 'chart requests'});
  let y = 6;
  for (const l of lanes) {
    svg.appendChild(sv('text', {x: 4, y: y + 10}, 'worker ' + l.w));
    l.reqs.forEach((r, i) => {
      const cls = 'req' + (r[4] ? ' aborted' : (r[3] % 2 ? ' odd' : ''));
      const tip = 'group ' + r[5] + ' sample ' + r[6] + ' · worker ' + r[0] + ' · version ' +
        r[3] + ' · ' + fmt(r[2] - r[1]) + ' s · ' + r[7] + ' tokens' + (r[4] ? ' · aborted' : '');
      svg.appendChild(rect(X(r[1]), X(r[2]), y + l.rows[i] * rowH, rowH - 0.5, cls, tip));
    });
    y += l.n * rowH + 10;
  }
  svg.appendChild(sv('text', {x: 4, y: y + 12}, 'trainer'));
  for (const [step, a, b] of T.train) {
    svg.appendChild(rect(X(a), X(b), y, 16, 'span train', 'step ' + step + ' credit + train: ' +
      fmt(b - a) + ' s'));
  }
  for (const [step, a] of T.publish) {
    const line = sv('line', {x1: X(a), y1: 4, x2: X(a), y2: y + 18, class: 'publish'});
    line.appendChild(sv('title', {}, 'weights of version ' + step + ' published'));
    svg.appendChild(line);
  }
  y += 28;
  svg.appendChild(sv('line', {x1: L, y1: y, x2: W - R, y2: y, class: 'axis'}));
  svg.appendChild(sv('text', {x: L, y: y + 14}, '0 s'));
  svg.appendChild(sv('text', {x: W - R, y: y + 14, 'text-anchor': 'end'}, fmt(total) + ' s'));
  box.appendChild(svg);
  if (T.total_requests > T.requests.length) {
    box.appendChild(el('p', 'note', 'last ' + T.requests.length + ' of ' + T.total_requests +
      ' requests shown'));
  }
}

// ---- samples ----
function heat(a, maxAbs) {
  if (!a) return '';
  const k = (0.15 + 0.65 * Math.min(Math.abs(a) / maxAbs, 1)).toFixed(2);
  return a > 0 ? 'rgba(34,160,60,' + k + ')' : 'rgba(220,40,40,' + k + ')';
}
function sampleBox(s, maxAbs) {
  const box = el('div', 'sample');
  box.dataset.group = s.group; box.dataset.sample = s.sample;
  const meta = el('div', 'meta');
  const failed = s.failed ? ' (failed: fallback)' : '';
  const reward = s.reward === null ? 'none' : fmt(s.reward) + failed;
  const vals = {sample: s.sample, reward: reward, version: s.version, turns: s.turns,
    finish: s.finish};
  Object.entries(vals).forEach(([k, v], i) => {
    meta.appendChild(document.createTextNode((i ? ' · ' : '') + k + ' '));
    meta.appendChild(el('b', '', String(v)));
  });
  box.appendChild(meta);
  const comps = Object.entries(s.components || {}).map(([k, v]) => k + ' = ' + fmt(v));
  if (comps.length) box.appendChild(el('div', 'components', 'components: ' + comps.join(', ')));
  const toks = el('div', 'tokens');
  s.ids.forEach((id, i) => {
    const env = s.mask[i] === 0;
    const t = el('span', 'tok ' + (env ? 'env' : 'model'), D.vocab[id] ?? ('⟨' + id + '⟩'));
    const what = env ? 'environment token (not trained)' : 'advantage ' + fmt(s.adv[i]);
    t.title = 'id ' + id + ' · ' + what;
    if (!env) t.style.background = heat(s.adv[i], maxAbs);
    toks.appendChild(t);
  });
  box.appendChild(toks);
  if (!D.decoded && s.text) {
    const det = el('details'); det.appendChild(el('summary', '', 'text as the engine decoded it'));
    det.appendChild(el('div', 'prompt', s.text)); box.appendChild(det);
  }
  return box;
}
function showStep(step) {
  const list = document.getElementById('sample-list');
  list.replaceChildren();
  const rows = D.samples[step] || [];
  let maxAbs = 0;
  rows.forEach(s => s.adv.forEach((a, i) => {
    if (s.mask[i]) maxAbs = Math.max(maxAbs, Math.abs(a));
  }));
  maxAbs = maxAbs || 1;
  document.getElementById('heat-scale').textContent = '± ' + fmt(maxAbs);
  const groups = new Map();
  rows.forEach(s => {
    if (!groups.has(s.group)) groups.set(s.group, []);
    groups.get(s.group).push(s);
  });
  for (const [g, ss] of groups) {
    const box = el('div', 'group');
    const mean = ss.reduce((a, s) => a + (s.reward || 0), 0) / ss.length;
    const title = 'group ' + g + ' · ' + ss.length + ' samples · mean reward ' + fmt(mean);
    box.appendChild(el('h3', '', title));
    const det = el('details'); det.appendChild(el('summary', '', 'prompt'));
    det.appendChild(el('div', 'prompt', ss[0].prompt)); box.appendChild(det);
    ss.forEach(s => box.appendChild(sampleBox(s, maxAbs)));
    list.appendChild(box);
  }
}
function drawSamples() {
  const pick = document.getElementById('step');
  const steps = Object.keys(D.samples).map(Number).sort((a, b) => a - b);
  const note = document.getElementById('tok-note');
  note.textContent = 'tokens: ' + D.tokenizer;
  if (!steps.length) {
    const none = 'No rollout dumps in this run (set rollout.dump: true).';
    document.getElementById('sample-list').appendChild(el('p', 'note', none));
    return;
  }
  if (D.dumped_steps > steps.length) {
    note.textContent += ' · ' + steps.length + ' of ' + D.dumped_steps + ' dumped steps shown';
  }
  for (const s of steps) pick.appendChild(new Option('step ' + s, String(s)));
  const m = /step=(\d+)/.exec(location.hash);
  pick.value = m && D.samples[m[1]] ? m[1] : String(steps[steps.length - 1]);
  pick.onchange = () => { location.hash = 'step=' + pick.value; showStep(pick.value); };
  showStep(pick.value);
}
document.getElementById('run').textContent = D.run;
drawCurves(); drawTimeline(); drawRequests(); drawSamples();
"""

BODY = """<h1>rlkit view: <span id="run"></span></h1>
<nav><a href="#curves">curves</a><a href="#timeline">timeline</a>
<a href="#samples">samples</a></nav>
<section id="curves"><h2>Curves</h2><div id="curve-grid"></div>
<p><label>Any metric: <select id="metric-pick"><option value="">(pick one)</option></select>
</label></p>
<div id="curve-any"></div></section>
<section id="timeline"><h2>Timeline of trainer steps</h2>
<p class="note">Steps end to end from <code>time/step_s</code>. Rollout lane: generation time
(<code>time/rollout_s</code>, synchronous loop) or the rollout workers' busy share of the step
(<code>perf/rollout_busy_frac</code>, shade). Trainer lane: credit + train step
(<code>time/train_s</code>), drawn ending where the step ends.</p>
<div id="timeline-chart"></div>
<h3>Requests</h3><p class="note">Every rollout request from <code>timeline.jsonl</code>: one
bar from when its worker added it to when it finished, packed into rows per worker; shades
alternate with the policy version it started under, red ones were aborted as too stale. Trainer
lane: credit + train step; purple lines: weights published to the workers.</p>
<div id="requests-chart"></div></section>
<section id="samples"><h2>Samples</h2>
<p><label>Step: <select id="step"></select></label> <span class="note" id="tok-note"></span></p>
<p class="legend"><span class="tok model" style="background: rgba(34,160,60,.6)">model token,
advantage &gt; 0</span><span class="tok model" style="background: rgba(220,40,40,.6)">model
token, advantage &lt; 0</span><span class="tok env">environment token (loss mask 0)</span>
<span class="note">heat scale <span id="heat-scale"></span></span></p>
<div id="sample-list"></div></section>"""


def render_page(view: dict[str, Any]) -> str:
    """The HTML file for `view` (rlkit.analysis.viewer.build_view)."""
    # "<" escaped inside the JSON: no text of a sample can close the script element
    data = json.dumps(view, ensure_ascii=False).replace("<", "\\u003c")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>rlkit view: {html.escape(str(view.get('run', '')))}</title>\n"
        f"<style>{STYLE}</style></head>\n<body>\n{BODY}\n"
        f'<script id="data" type="application/json">{data}</script>\n'
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    )
