/**
 * The report's figures as standalone SVG (no plotting dependency: four chart kinds, drawn with a
 * tiny scale/axis helper), rasterised to PNG by sharp (librsvg) in report.ts.
 *
 *  - density: hexbin of (rounded target, rounded prediction), colour = log count, with y = x
 *    (the paper's Fig. 2: predictions compress toward the mean; the diagonal is perfect agreement);
 *  - histograms of targets and predictions (0.1-wide bins over [1, 5]);
 *  - error by target band: MAE and mean signed error (prediction − target) with row counts;
 *  - training curves: loss, learning rate, validation PLCC against step.
 */

const WIDTH = 640;
const HEIGHT = 480;
const M = { left: 64, right: 24, top: 40, bottom: 56 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmtTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-2) return v.toExponential(1);
  return Number(v.toPrecision(3)).toString();
}

/** ~n "nice" ticks covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

interface Frame {
  x: (v: number) => number;
  y: (v: number) => number;
  parts: string[];
  /** Drawn beneath the data (grid lines). */
  under: string[];
  w: number;
  h: number;
}

function frame(opts: { title: string; xLabel: string; yLabel: string; x: [number, number]; y: [number, number]; width?: number; height?: number; xTicks?: number[] }): Frame {
  const w = opts.width ?? WIDTH;
  const h = opts.height ?? HEIGHT;
  const [x0, x1] = opts.x;
  const [y0, y1] = opts.y;
  const pw = w - M.left - M.right;
  const ph = h - M.top - M.bottom;
  const x = (v: number) => M.left + ((v - x0) / (x1 - x0 || 1)) * pw;
  const y = (v: number) => M.top + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
  const parts: string[] = [`<rect x="0" y="0" width="${w}" height="${h}" fill="#ffffff"/>`];
  const under: string[] = [];
  parts.push(`<text x="${w / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(opts.title)}</text>`);
  for (const t of opts.xTicks ?? niceTicks(x0, x1)) {
    parts.push(`<line x1="${x(t)}" y1="${M.top + ph}" x2="${x(t)}" y2="${M.top + ph + 5}" stroke="#333"/>`);
    parts.push(`<text x="${x(t)}" y="${M.top + ph + 19}" text-anchor="middle" font-size="12">${fmtTick(t)}</text>`);
  }
  for (const t of niceTicks(y0, y1)) {
    under.push(`<line x1="${M.left}" y1="${y(t)}" x2="${M.left + pw}" y2="${y(t)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${M.left - 8}" y="${y(t) + 4}" text-anchor="end" font-size="12">${fmtTick(t)}</text>`);
  }
  parts.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${M.left + pw / 2}" y="${h - 14}" text-anchor="middle" font-size="13">${esc(opts.xLabel)}</text>`);
  parts.push(`<text x="16" y="${M.top + ph / 2}" text-anchor="middle" font-size="13" transform="rotate(-90 16 ${M.top + ph / 2})">${esc(opts.yLabel)}</text>`);
  return { x, y, parts, under, w, h };
}

function svg(f: Frame, body: string[]): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${f.w}" height="${f.h}" viewBox="0 0 ${f.w} ${f.h}" font-family="DejaVu Sans, Arial, sans-serif">${[...f.parts.slice(0, 1), ...f.under, ...body, ...f.parts.slice(1)].join('')}</svg>`;
}

/** Sequential colour (light yellow → dark blue) for t in [0, 1]. */
function colour(t: number): string {
  const stops = [[255, 255, 204], [161, 218, 180], [65, 182, 196], [44, 127, 184], [37, 52, 148]];
  const s = Math.max(0, Math.min(1, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(s));
  const f = s - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

export interface HexBin {
  cx: number;
  cy: number;
  count: number;
}

/**
 * Pointy-top hexagonal bins of side `r` (data units) over the points; returns the non-empty bins.
 * Centres form the lattice (i + (j mod 2)/2)·√3·r, j·1.5·r; a point's nearest centre is the
 * nearest of the two candidates in the rows just below and above it (exact Euclidean choice).
 */
export function hexbin(xs: ArrayLike<number>, ys: ArrayLike<number>, r: number): HexBin[] {
  const dx = r * Math.sqrt(3);
  const dy = r * 1.5;
  const bins = new Map<string, HexBin>();
  for (let k = 0; k < xs.length; k++) {
    const x = xs[k];
    const y = ys[k];
    const j0 = Math.floor(y / dy);
    let best = { i: 0, j: 0, d: Infinity };
    for (const j of [j0, j0 + 1]) {
      const shift = (j & 1) / 2;
      const i = Math.round(x / dx - shift);
      const d = (x - (i + shift) * dx) ** 2 + (y - j * dy) ** 2;
      if (d < best.d) best = { i, j, d };
    }
    const key = `${best.i},${best.j}`;
    let b = bins.get(key);
    if (!b) bins.set(key, (b = { cx: (best.i + (best.j & 1) / 2) * dx, cy: best.j * dy, count: 0 }));
    b.count++;
  }
  return [...bins.values()];
}

const round1 = (v: number) => Math.round(v * 10) / 10;

export function densitySvg(targets: ArrayLike<number>, predictions: ArrayLike<number>): string {
  const f = frame({ title: 'Predicted vs true rating (rounded to 0.1)', xLabel: 'true average rating', yLabel: 'predicted rating', x: [1, 5], y: [1, 5], width: 560, height: 520 });
  const xs = Array.from(targets, round1);
  const ys = Array.from(predictions, round1);
  const r = 0.06;
  const bins = hexbin(xs, ys, r);
  const maxLog = Math.log1p(bins.reduce((m, b) => Math.max(m, b.count), 0));
  const sx = Math.abs(f.x(1 + r) - f.x(1));
  const sy = Math.abs(f.y(1 + r) - f.y(1));
  const body: string[] = [];
  for (const b of bins) {
    if (b.cx < 1 - r || b.cx > 5 + r || b.cy < 1 - r || b.cy > 5 + r) continue;
    const cx = f.x(b.cx);
    const cy = f.y(b.cy);
    const pts = [0, 1, 2, 3, 4, 5].map((k) => {
      const a = (Math.PI / 3) * k + Math.PI / 6;
      return `${(cx + sx * Math.cos(a)).toFixed(1)},${(cy - sy * Math.sin(a)).toFixed(1)}`;
    });
    body.push(`<polygon points="${pts.join(' ')}" fill="${colour(maxLog > 0 ? Math.log1p(b.count) / maxLog : 0)}" stroke="none"><title>${b.count}</title></polygon>`);
  }
  body.push(`<line x1="${f.x(1)}" y1="${f.y(1)}" x2="${f.x(5)}" y2="${f.y(5)}" stroke="#d62728" stroke-width="2" stroke-dasharray="6 4"/>`);
  body.push(`<text x="${f.x(1.1)}" y="${f.y(4.85)}" font-size="12">n = ${xs.length}; colour: log(1 + count); dashed: y = x</text>`);
  return svg(f, body);
}

export function histogramCounts(values: ArrayLike<number>, lo: number, hi: number, bins: number): number[] {
  const out = new Array<number>(bins).fill(0);
  for (let i = 0; i < values.length; i++) {
    const k = Math.min(bins - 1, Math.max(0, Math.floor(((values[i] - lo) / (hi - lo)) * bins)));
    out[k]++;
  }
  return out;
}

export function histogramsSvg(targets: ArrayLike<number>, predictions: ArrayLike<number>): string {
  const bins = 40;
  const ht = histogramCounts(targets, 1, 5, bins);
  const hp = histogramCounts(predictions, 1, 5, bins);
  const top = Math.max(1, ...ht, ...hp);
  const f = frame({ title: 'Distribution of targets and predictions', xLabel: 'rating (0.1-wide bins)', yLabel: 'items', x: [1, 5], y: [0, top * 1.05] });
  const body: string[] = [];
  const step = (h: number[], stroke: string, fill: string) => {
    let d = `M${f.x(1)},${f.y(0)}`;
    h.forEach((c, k) => {
      const a = 1 + (4 * k) / bins;
      const b = 1 + (4 * (k + 1)) / bins;
      d += ` L${f.x(a).toFixed(1)},${f.y(c).toFixed(1)} L${f.x(b).toFixed(1)},${f.y(c).toFixed(1)}`;
    });
    d += ` L${f.x(5)},${f.y(0)} Z`;
    body.push(`<path d="${d}" fill="${fill}" stroke="${stroke}" stroke-width="1.5"/>`);
  };
  step(ht, '#1f77b4', 'rgba(31,119,180,0.35)');
  step(hp, '#ff7f0e', 'rgba(255,127,14,0.35)');
  body.push(`<rect x="${M.left + 12}" y="${M.top + 10}" width="12" height="12" fill="rgba(31,119,180,0.6)"/><text x="${M.left + 30}" y="${M.top + 20}" font-size="12">targets</text>`);
  body.push(`<rect x="${M.left + 12}" y="${M.top + 28}" width="12" height="12" fill="rgba(255,127,14,0.6)"/><text x="${M.left + 30}" y="${M.top + 38}" font-size="12">predictions</text>`);
  return svg(f, body);
}

export interface BandError {
  band: string;
  lo: number;
  hi: number;
  n: number;
  mae: number | null;
  /** Mean of prediction − target. */
  bias: number | null;
}

/** Target bands: [1,2) [2,3) [3,3.5) [3.5,4) [4,4.5) [4.5,5]. */
const TARGET_BANDS: ReadonlyArray<[number, number]> = [[1, 2], [2, 3], [3, 3.5], [3.5, 4], [4, 4.5], [4.5, 5]];

export function errorByBand(targets: ArrayLike<number>, predictions: ArrayLike<number>): BandError[] {
  return TARGET_BANDS.map(([lo, hi], i) => {
    let n = 0;
    let ae = 0;
    let se = 0;
    for (let k = 0; k < targets.length; k++) {
      const t = targets[k];
      const inBand = t >= lo && (t < hi || (i === TARGET_BANDS.length - 1 && t <= hi));
      if (!inBand) continue;
      n++;
      ae += Math.abs(predictions[k] - t);
      se += predictions[k] - t;
    }
    return { band: `${lo}–${hi}`, lo, hi, n, mae: n ? ae / n : null, bias: n ? se / n : null };
  });
}

export function errorByBandSvg(bands: readonly BandError[]): string {
  const vals = bands.flatMap((b) => [b.mae ?? 0, b.bias ?? 0]);
  const lo = Math.min(0, ...vals);
  const hi = Math.max(0.1, ...vals);
  const k = bands.length;
  const f = frame({ title: 'Error by target band', xLabel: 'true rating band (n items)', yLabel: 'rating points', x: [0, k], y: [lo * 1.1, hi * 1.1], xTicks: [] });
  const body: string[] = [];
  const bw = (f.x(1) - f.x(0)) * 0.35;
  bands.forEach((b, i) => {
    const cx = f.x(i + 0.5);
    const bar = (v: number | null, off: number, fill: string) => {
      if (v === null) return;
      const y0 = f.y(0);
      const y1 = f.y(v);
      body.push(`<rect x="${(cx + off).toFixed(1)}" y="${Math.min(y0, y1).toFixed(1)}" width="${bw.toFixed(1)}" height="${Math.abs(y1 - y0).toFixed(1)}" fill="${fill}"/>`);
    };
    bar(b.mae, -bw, '#1f77b4');
    bar(b.bias, 0, '#ff7f0e');
    body.push(`<text x="${cx}" y="${HEIGHT - M.bottom + 18}" text-anchor="middle" font-size="12">${esc(b.band)} (${b.n})</text>`);
  });
  body.push(`<line x1="${M.left}" y1="${f.y(0)}" x2="${WIDTH - M.right}" y2="${f.y(0)}" stroke="#333"/>`);
  const lx = WIDTH - M.right - 230;
  body.push(`<rect x="${lx}" y="${M.top + 10}" width="12" height="12" fill="#1f77b4"/><text x="${lx + 18}" y="${M.top + 20}" font-size="12">MAE</text>`);
  body.push(`<rect x="${lx}" y="${M.top + 28}" width="12" height="12" fill="#ff7f0e"/><text x="${lx + 18}" y="${M.top + 38}" font-size="12">mean error (prediction − target)</text>`);
  return svg(f, body);
}

export interface Series {
  label: string;
  points: ReadonlyArray<[number, number]>;
  colour: string;
}

export function lineChartSvg(title: string, xLabel: string, yLabel: string, series: readonly Series[]): string {
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (!(x1 > x0)) [x0, x1] = [x0 - 1, x0 + 1];
  if (!(y1 > y0)) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.1, y0 + Math.abs(y0 || 1) * 0.1];
  const pad = (y1 - y0) * 0.05;
  const f = frame({ title, xLabel, yLabel, x: [x0, x1], y: [y0 - pad, y1 + pad] });
  const body: string[] = [];
  series.forEach((s, i) => {
    const d = s.points.map((p, k) => `${k ? 'L' : 'M'}${f.x(p[0]).toFixed(1)},${f.y(p[1]).toFixed(1)}`).join(' ');
    body.push(`<path d="${d}" fill="none" stroke="${s.colour}" stroke-width="1.8"/>`);
    if (s.points.length <= 50) for (const p of s.points) body.push(`<circle cx="${f.x(p[0]).toFixed(1)}" cy="${f.y(p[1]).toFixed(1)}" r="2.5" fill="${s.colour}"/>`);
    body.push(`<rect x="${WIDTH - M.right - 150}" y="${M.top + 10 + 18 * i}" width="12" height="3" fill="${s.colour}"/><text x="${WIDTH - M.right - 132}" y="${M.top + 15 + 18 * i}" font-size="12">${esc(s.label)}</text>`);
  });
  return svg(f, body);
}
