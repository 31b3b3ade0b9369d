"""The explorer page of `minattn.explore`: its HTML, style and script, as text.

`minattn.viz.explore` fills three slots: ``{{title}}``, ``{{subtitle}}`` (HTML-escaped) and
``{{data}}`` (the JSON the script reads: the picture, the pooled map's size, and every pooled
pixel's query and key). Everything the page needs is in this one file: no framework, no
font, script or style from anywhere else, and a Content-Security-Policy that forbids the
browser to fetch anything at all. The script is plain JavaScript, in the order a reader
needs it: decode the data, compute one attention row, draw it, then the controls.
"""

STYLE = """
:root { color-scheme: light; }
body {
  margin: 0; padding: 1rem; background: #ffffff; color: #1a1a1a;
  font: 15px/1.45 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Helvetica, Arial,
    "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", sans-serif;
}
h1 { font-size: 1.35rem; margin: 0 0 0.2rem; }
h2 { font-size: 1.1rem; margin: 1.2rem 0 0.4rem; }
.sub, .note { color: #454545; margin: 0 0 0.6rem; }
.controls { display: flex; flex-wrap: wrap; gap: 0.4rem 1.4rem; align-items: center;
            margin: 0.4rem 0; }
.controls label { font-weight: 600; margin-right: 0.3rem; }
figure { margin: 0; }
.layout { display: flex; flex-wrap: wrap; gap: 0 2rem; align-items: flex-start; }
.looking { flex: 0 1 auto; max-width: 100%; }
.how { flex: 1 1 24rem; max-width: 48rem; }
.how h2 { margin-top: 0.4rem; }
figcaption { color: #454545; font-size: 0.9rem; }
canvas { display: block; max-width: 100%; height: auto; image-rendering: pixelated; }
#picture { cursor: crosshair; border: 1px solid #6b6b6b; touch-action: none; }
#picture:focus-visible { outline: 3px solid #1d4ed8; outline-offset: 2px; }
.colorbar { display: flex; align-items: center; gap: 0.5rem; margin: 0.3rem 0; font-size: 0.9rem;
            white-space: nowrap; }
#colorbar { width: 12rem; height: 12px; }
#status { min-height: 1.5em; font-weight: 600; margin: 0.4rem 0; }
#status.error { color: #a10000; }
.maps { display: flex; flex-wrap: wrap; gap: 1rem; }
.maps canvas { border: 1px solid #6b6b6b; }
table { border-collapse: collapse; margin: 0.5rem 0; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.2rem; }
th, td { border: 1px solid #b0b0b0; padding: 0.15rem 0.5rem; text-align: right; }
th { background: #f0f0f0; }
code, pre { font-family: SFMono-Regular, Consolas, Menlo, "DejaVu Sans Mono", monospace; }
pre { white-space: pre-wrap; word-break: break-all; max-height: 12rem; overflow: auto;
      background: #f6f6f6; padding: 0.5rem; font-size: 0.8rem; }
[lang="zh-CN"] { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC",
                 "Microsoft YaHei", sans-serif; }
"""

BODY = """
<main>
<h1>{{title}}</h1>
<p class="sub">{{subtitle}}</p>
<p class="note">Point at a pixel (or tap it) to see where it looks: red high, blue low.
Click to pin it (click it again to let it follow the pointer); with the picture focused,
the arrow keys move it.
<span lang="zh-CN">指向（或轻触）一个像素，看它关注哪里：红高蓝低。
单击可固定（再次单击则恢复跟随指针）；选中图片后可用方向键移动。</span></p>

<div class="layout">
<div class="looking">
<div class="controls">
  <span id="scale-control" hidden>
    <label for="scale">Scale · 尺度</label>
    <select id="scale"></select>
  </span>
  <span>
    <label for="opacity">Map opacity · 图层不透明度</label>
    <input id="opacity" type="range" min="0" max="1" step="0.05" value="0.6">
  </span>
</div>

<figure>
  <canvas id="picture" tabindex="0" role="application" aria-describedby="status"
          aria-label="The picture. Choose a query pixel with the pointer, or with the arrow keys.">
  </canvas>
  <figcaption>
    <div class="colorbar">
      <span>attention · 注意力</span> <span id="bar-low"></span>
      <canvas id="colorbar" width="256" height="12" role="img"
              aria-label="Colour scale: blue low, red high"></canvas>
      <span id="bar-high"></span>
    </div>
    White dot: the query pixel; numbered squares: the pixels it attends to most; for an
    image pair, white cross: the same place in the other image.
    <span lang="zh-CN">白点：查询像素；带编号的方框：它最关注的像素；图像对中的白叉：
    另一幅图中的同一位置。</span>
  </figcaption>
</figure>
<p id="status" role="status" aria-live="polite"></p>
</div>

<section class="how" aria-labelledby="how-title">
<h2 id="how-title">How the row is made · 这一行是怎样算出来的</h2>
<p>This page stores the query <i>q</i> and the key <i>k</i> of every pooled pixel, never the
N &times; N attention matrix. For the chosen pixel <i>i</i> it computes, right here, the energy
<i>e<sub>j</sub></i> = <i>q<sub>i</sub></i> &middot; <i>k<sub>j</sub></i> &times; <i>s</i> for
every key <i>j</i>, then the softmax
<i>a<sub>j</sub></i> = exp(<i>e<sub>j</sub></i> &minus; max <i>e</i>) / &Sigma;<sub>l</sub>
exp(<i>e<sub>l</sub></i> &minus; max <i>e</i>): the arithmetic of steps 3 and 4.</p>
<p lang="zh-CN">本页只保存每个池化像素的查询 <i>q</i> 和键 <i>k</i>，从不保存 N &times; N
的注意力矩阵。对选中的像素 <i>i</i>，页面当场计算它与每个键 <i>j</i> 的能量
<i>e<sub>j</sub></i> = <i>q<sub>i</sub></i> &middot; <i>k<sub>j</sub></i> &times; <i>s</i>，
再做 softmax：<i>a<sub>j</sub></i> = exp(<i>e<sub>j</sub></i> &minus; max <i>e</i>) /
&Sigma;<sub>l</sub> exp(<i>e<sub>l</sub></i> &minus; max <i>e</i>)，正是第 3、4 步的运算。</p>
<p id="how-scale"></p>
<p id="query-vector"></p>
<div class="maps">
  <figure>
    <canvas id="energy-map" role="img"
            aria-label="Energies of the query pixel (before the softmax)"></canvas>
    <figcaption>energies <i>e<sub>j</sub></i> (before the softmax) · 能量（softmax 之前）<br>
      <span id="energy-range"></span></figcaption>
  </figure>
  <figure>
    <canvas id="weight-map" role="img"
            aria-label="Attention weights of the query pixel (after the softmax)"></canvas>
    <figcaption>attention <i>a<sub>j</sub></i> (after the softmax) · 注意力（softmax 之后）<br>
      <span id="weight-range"></span></figcaption>
  </figure>
</div>
<table id="top">
  <caption>The pixels it attends to most · 它最关注的像素</caption>
  <thead><tr>
    <th scope="col">rank · 名次</th>
    <th scope="col">pooled pixel (row, col)</th>
    <th scope="col"><i>e<sub>j</sub></i></th>
    <th scope="col"><i>e<sub>j</sub></i> &minus; max <i>e</i></th>
    <th scope="col">exp(<i>e<sub>j</sub></i> &minus; max <i>e</i>)</th>
    <th scope="col"><i>a<sub>j</sub></i></th>
  </tr></thead>
  <tbody></tbody>
</table>
<p id="sums"></p>
</section>
</div>

<details>
  <summary>This row as numbers (JSON) · 这一行的数值（JSON）</summary>
  <pre id="attention-values"></pre>
</details>
</main>
"""

SCRIPT = r"""
"use strict";
// ------------------------------------------------------------------ the data
// DATA.stages[s].q and .k hold, for every pixel j of the pooled map (row-major), its
// query and key vectors of KC numbers: float32, little-endian, base64. PAM has one stage
// per scale; every other module has one stage.
const DATA = JSON.parse(document.getElementById("explore-data").textContent);
const [H, W] = DATA.input;        // input pixels of the picture (both images, for a pair)
const [GH, GW] = DATA.grid;       // the pooled map the attention runs on
const N = GH * GW, KC = DATA.keyChannels, DS = DATA.ds;

function floats(base64) {
  const bytes = Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}
const STAGES = DATA.stages.map((s) => ({ size: s.size, q: floats(s.q), k: floats(s.k) }));

// ------------------------------------------------------------------ one attention row
// The keys that query pixel i attends over: every pooled pixel, or with PAM at scale
// `size` only those of its region: its cell of the size x size grid, in both images.
function keysOf(i, size) {
  const all = [];
  if (size === null) {
    for (let j = 0; j < N; j++) all.push(j);
    return all;
  }
  const wi = GW / 2, ch = GH / size, cw = wi / size;   // one image's width; a cell's size
  const r0 = Math.floor(Math.floor(i / GW) / ch) * ch;
  const c0 = Math.floor(((i % GW) % wi) / cw) * cw;
  for (const offset of [0, wi]) {
    for (let r = r0; r < r0 + ch; r++) {
      for (let c = c0 + offset; c < c0 + offset + cw; c++) all.push(r * GW + c);
    }
  }
  return all;
}

// energy e_j = q_i . k_j * scale (step 3, step 4), then the softmax over the keys j.
function attentionRow(stage, i) {
  const keys = keysOf(i, stage.size);
  const scale = DATA.scale === null ? 1 : DATA.scale;   // DANet's attention has no scale
  const energy = new Float64Array(keys.length);
  let max = -Infinity;
  keys.forEach((j, m) => {
    let dot = 0;
    for (let c = 0; c < KC; c++) dot += stage.q[i * KC + c] * stage.k[j * KC + c];
    energy[m] = dot * scale;
    max = Math.max(max, energy[m]);
  });
  const exps = energy.map((e) => Math.exp(e - max));   // minus the max: no overflow
  const sum = exps.reduce((a, b) => a + b, 0);
  const weights = new Float64Array(N);                 // zero outside PAM's region
  const energies = new Float64Array(N).fill(NaN);      // NaN: not a key of this query
  keys.forEach((j, m) => { weights[j] = exps[m] / sum; energies[j] = energy[m]; });
  return { keys, weights, energies, max, sum };
}

// ------------------------------------------------------------------ state
const state = { R: 0, C: 0, stage: 0, pinned: false, row: null, image: null };
const $ = (id) => document.getElementById(id);
const cellOf = (R, C) => Math.floor(R / DS) * GW + Math.floor(C / DS);

function select(R, C, pin) {
  state.R = Math.min(H - 1, Math.max(0, R));
  state.C = Math.min(W - 1, Math.max(0, C));
  if (pin !== undefined) state.pinned = pin;
  state.row = attentionRow(STAGES[state.stage], cellOf(state.R, state.C));
  draw();
}

// ------------------------------------------------------------------ colours
// matplotlib's "jet", as the article's figure 2: blue low, red high.
function jet(t) {
  const f = (x) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - x))));
  return [f(3), f(2), f(1)];
}

// Paint values (GH x GW, NaN for "not a key") with the colours of [lo, hi].
function paintMap(values, lo, hi) {
  const off = document.createElement("canvas");
  off.width = GW; off.height = GH;
  const ctx = off.getContext("2d"), img = ctx.createImageData(GW, GH);
  values.forEach((v, j) => {
    if (Number.isNaN(v)) return;                      // transparent
    const [r, g, b] = jet(hi > lo ? (v - lo) / (hi - lo) : 0.5);
    img.data.set([r, g, b, 255], 4 * j);
  });
  ctx.putImageData(img, 0, 0);
  return off;
}

function range(values, keys) {
  let lo = Infinity, hi = -Infinity;
  for (const j of keys) { lo = Math.min(lo, values[j]); hi = Math.max(hi, values[j]); }
  return [lo, hi];
}

// ------------------------------------------------------------------ drawing
const ZOOM = Math.max(1, Math.round((DATA.pair ? 768 : 512) / Math.max(W, H)));
const fmt = (x) => (Math.abs(x) >= 1e-3 || x === 0 ? x.toFixed(4) : x.toExponential(3));

function draw() {
  const { keys, weights, energies } = state.row;
  const [lo, hi] = range(weights, keys);
  drawPicture(paintMap(onlyKeys(weights, keys), lo, hi));
  $("bar-low").textContent = fmt(lo);
  $("bar-high").textContent = fmt(hi);
  const [elo, ehi] = range(energies, keys);
  drawSmall($("energy-map"), paintMap(energies, elo, ehi));
  drawSmall($("weight-map"), paintMap(onlyKeys(weights, keys), lo, hi));
  $("energy-range").textContent = `from ${fmt(elo)} to ${fmt(ehi)}`;
  $("weight-range").textContent = `from ${fmt(lo)} to ${fmt(hi)}`;
  describe();
}

function onlyKeys(weights, keys) {
  const shown = new Float64Array(N).fill(NaN);
  for (const j of keys) shown[j] = weights[j];
  return shown;
}

function drawPicture(overlay) {
  const cv = $("picture"), ctx = cv.getContext("2d");
  ctx.imageSmoothingEnabled = false;                  // nearest, as the article's resize
  ctx.fillStyle = "#808080";
  ctx.fillRect(0, 0, cv.width, cv.height);
  if (state.image) {
    ctx.filter = "grayscale(1)";                       // the map's colours stay readable
    ctx.drawImage(state.image, 0, 0, cv.width, cv.height);
    ctx.filter = "none";
  }
  ctx.globalAlpha = state.image ? Number($("opacity").value) : 1;
  ctx.drawImage(overlay, 0, 0, GW * DS * ZOOM, GH * DS * ZOOM);
  ctx.globalAlpha = 1;
  drawMarks(ctx);
}

function drawMarks(ctx) {
  const cell = DS * ZOOM;
  if (DATA.pair) line(ctx, DATA.pair * ZOOM, 0, DATA.pair * ZOOM, H * ZOOM, "#ffffff", 3);
  const size = STAGES[state.stage].size;
  if (size !== null) {                                // PAM: the query's region, both images
    const keys = state.row.keys, first = keys[0], last = keys[keys.length / 2 - 1];
    const [r0, c0] = [Math.floor(first / GW), first % GW];
    const [r1, c1] = [Math.floor(last / GW) + 1, (last % GW) + 1];
    for (const dx of [0, GW / 2]) {
      box(ctx, (c0 + dx) * cell, r0 * cell, (c1 - c0) * cell, (r1 - r0) * cell, [8, 5]);
    }
  }
  topKeys(5).forEach((j, n) => {
    const x = (j % GW) * cell, y = Math.floor(j / GW) * cell;
    box(ctx, x, y, cell, cell, []);
    label(ctx, String(n + 1), x + cell + 2, y + 2);
  });
  if (DATA.pair) {                                      // the same place in the other image
    const other = state.C < DATA.pair ? state.C + DATA.pair : state.C - DATA.pair;
    cross(ctx, (other + 0.5) * ZOOM, (state.R + 0.5) * ZOOM);
  }
  dot(ctx, (state.C + 0.5) * ZOOM, (state.R + 0.5) * ZOOM);
}

function line(ctx, x0, y0, x1, y1, colour, width) {
  ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.setLineDash([]);
  ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
}

// a white outline over a black one: visible on any colour
function box(ctx, x, y, w, h, dash) {
  ctx.setLineDash(dash);
  for (const [colour, width] of [["#000000", 4], ["#ffffff", 2]]) {
    ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.strokeRect(x, y, w, h);
  }
  ctx.setLineDash([]);
}

function label(ctx, text, x, y) {
  ctx.font = "bold 13px sans-serif"; ctx.textBaseline = "top";
  ctx.lineWidth = 3; ctx.strokeStyle = "#000000"; ctx.strokeText(text, x, y);
  ctx.fillStyle = "#ffffff"; ctx.fillText(text, x, y);
}

function dot(ctx, x, y) {
  ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI);
  ctx.fillStyle = "#ffffff"; ctx.fill();
  ctx.lineWidth = 2; ctx.strokeStyle = "#000000"; ctx.stroke();
}

function cross(ctx, x, y) {
  for (const [colour, width] of [["#000000", 5], ["#ffffff", 2]]) {
    line(ctx, x - 7, y - 7, x + 7, y + 7, colour, width);
    line(ctx, x - 7, y + 7, x + 7, y - 7, colour, width);
  }
}

function drawSmall(cv, painted) {
  const z = Math.max(1, Math.floor(224 / Math.max(GW, GH)));
  cv.width = GW * z; cv.height = GH * z;
  cv.parentElement.style.width = `${cv.width + 2}px`;  // its caption wraps to it
  const ctx = cv.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#808080";                            // grey: not a key of this query
  ctx.fillRect(0, 0, cv.width, cv.height);
  ctx.drawImage(painted, 0, 0, cv.width, cv.height);
  const i = cellOf(state.R, state.C);
  box(ctx, (i % GW) * z, Math.floor(i / GW) * z, z, z, []);
}

function topKeys(count) {
  const w = state.row.weights;
  return [...state.row.keys].sort((a, b) => w[b] - w[a]).slice(0, count);
}

// ------------------------------------------------------------------ the numbers
function describe() {
  const { weights, energies, max, sum, keys } = state.row;
  const i = cellOf(state.R, state.C), qr = Math.floor(i / GW), qc = i % GW;
  const side = DATA.pair ? (state.C < DATA.pair ? ", image 1 · 图 1" : ", image 2 · 图 2") : "";
  $("status").className = "";
  $("status").textContent = `Query pixel (row ${state.R}, col ${state.C})${side}: pooled pixel ` +
    `(${qr}, ${qc}) of ${GH} × ${GW}${state.pinned ? " — pinned · 已固定" : ""}`;
  const q = Array.from(STAGES[state.stage].q.subarray(i * KC, (i + 1) * KC), fmt);
  $("query-vector").textContent = `q_i = [${q.slice(0, 16).join(", ")}${KC > 16 ? ", …" : ""}] ` +
    `(${KC} numbers · 个数)`;
  $("top").tBodies[0].replaceChildren(...topKeys(5).map((j, n) => tableRow([
    n + 1, `(${Math.floor(j / GW)}, ${j % GW})`, fmt(energies[j]), fmt(energies[j] - max),
    fmt(Math.exp(energies[j] - max)), fmt(weights[j])])));
  let total = 0, left = 0;
  for (const j of keys) { total += weights[j]; if (j % GW < GW / 2) left += weights[j]; }
  const pair = DATA.pair ? `; on image 1 · 图 1: ${(100 * left).toFixed(1)}%, on image 2 · 图 2: ` +
    `${(100 * (total - left)).toFixed(1)}%` : "";
  $("sums").textContent = `max e = ${fmt(max)}; Σ exp(e − max e) = ${fmt(sum)} over ` +
    `${keys.length} keys; the weights sum to ${total.toFixed(6)}${pair}`;
  $("attention-values").textContent = JSON.stringify(
    { query: [state.R, state.C], shape: [GH, GW], values: Array.from(weights) });
  fitFrame();
}

function tableRow(cells) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    tr.appendChild(Object.assign(document.createElement("td"), { textContent: text }));
  }
  return tr;
}

// ------------------------------------------------------------------ pointer, keys, address
function pixelAt(event) {
  const rect = $("picture").getBoundingClientRect();
  return [Math.floor(((event.clientY - rect.top) / rect.height) * H),
          Math.floor(((event.clientX - rect.left) / rect.width) * W)];
}

function listen() {
  const cv = $("picture");
  let pointed = null;                                   // at most one row per frame
  cv.addEventListener("pointermove", (e) => {
    if (state.pinned) return;
    if (pointed === null) {
      requestAnimationFrame(() => { if (!state.pinned) select(...pointed); pointed = null; });
    }
    pointed = pixelAt(e);
  });
  cv.addEventListener("pointerdown", (e) => {         // a click pins; on the pinned pixel, unpins
    const [R, C] = pixelAt(e);
    const again = state.pinned && cellOf(R, C) === cellOf(state.R, state.C);
    select(R, C, !again || e.pointerType !== "mouse");  // a tap always pins
  });
  cv.addEventListener("keydown", (e) => {
    const steps = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const move = steps[e.key];                          // one pooled pixel: DS input pixels
    if (!move) return;
    e.preventDefault();                                 // the arrows move the pixel, not the page
    select(state.R + DS * move[0], state.C + DS * move[1], true);
  });
  $("opacity").addEventListener("input", draw);
  $("scale").addEventListener("change", () => {
    state.stage = Number($("scale").value);
    select(state.R, state.C);
  });
  window.addEventListener("hashchange", fromAddress);
}

// PAGE.html#query=ROW,COL selects that pixel (input-pixel coordinates); &scale=S picks
// PAM's scale. Out of range: say so, and keep the current pixel.
function fromAddress() {
  const params = new URLSearchParams(location.hash.slice(1));
  const size = params.get("scale");
  const stage = STAGES.findIndex((s) => String(s.size) === size);
  if (size !== null && stage >= 0) { state.stage = stage; $("scale").value = String(stage); }
  const query = (params.get("query") || "").split(",").map(Number);
  const valid = query.length === 2 && query.every(Number.isInteger);
  if (valid && query[0] >= 0 && query[0] < H && query[1] >= 0 && query[1] < W) {
    select(query[0], query[1], true);
  } else {
    select(state.R, state.C);
    if (params.has("query") || (size !== null && stage < 0)) complain(params);
  }
}

function complain(params) {
  const sizes = STAGES.map((s) => s.size).join(", ");
  $("status").className = "error";
  $("status").textContent = `The address asks for query=${params.get("query")}` +
    (params.has("scale") ? ` and scale=${params.get("scale")}` : "") +
    `: a query must be ROW,COL inside the ${H} × ${W} picture` +
    (STAGES[0].size !== null ? `, a scale one of ${sizes}` : "") + ".";
}

// In an <iframe> (a notebook's output), grow the frame to the page's height.
function fitFrame() {
  try {
    const frame = window.frameElement;
    if (frame) frame.style.height = document.documentElement.scrollHeight + 4 + "px";
  } catch (e) { /* another origin: keep the frame's own height */ }
}

function setUp() {
  const cv = $("picture");
  cv.width = W * ZOOM; cv.height = H * ZOOM;
  document.querySelector(".looking").style.width = `${cv.width + 2}px`;  // captions wrap to it
  const bar = $("colorbar").getContext("2d");
  for (let x = 0; x < 256; x++) {
    bar.fillStyle = `rgb(${jet(x / 255)})`;
    bar.fillRect(x, 0, 1, 12);
  }
  if (STAGES[0].size !== null) {
    $("scale-control").hidden = false;
    STAGES.forEach((s, n) => {
      $("scale").add(new Option(`${s.size} × ${s.size} regions · 区域`, String(n)));
    });
  }
  $("how-scale").textContent = DATA.scale === null
    ? `Here s = 1: ${DATA.module} does not scale the energy (DANet). · 此处 s = 1：不缩放能量。`
    : `Here s = ${DATA.keyChannels} ** -0.5 = ${DATA.scale.toFixed(6)} (key_channels ** -0.5). · ` +
      `此处 s = key_channels ** -0.5。`;
  state.R = DATA.query[0]; state.C = DATA.query[1];
  listen();
  fromAddress();
  document.body.dataset.ready = "true";                 // for tests: the first row is drawn
}

if (DATA.image) {
  state.image = new Image();
  state.image.onload = setUp;
  state.image.src = DATA.image;
} else {
  setUp();
}
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:;
      style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{{title}}</title>
<style>{{style}}</style>
</head>
<body>
{{body}}
<script type="application/json" id="explore-data">{{data}}</script>
<script>{{script}}</script>
</body>
</html>
"""
