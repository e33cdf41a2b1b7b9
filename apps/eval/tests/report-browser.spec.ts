/**
 * The report renders in a real browser: Debian's headless Chromium opens report.html (figures
 * inline), every figure decodes (naturalWidth > 0) and nothing is logged as an error. A page with
 * a broken image and a script error must fail the same check. Skipped, with a message, only
 * where no Chromium is installed (CI installs it: apt-get install -y chromium).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { presetConfig } from '@smolrate/model';
import { afterAll, describe, expect, it } from 'vitest';
import { checkReportInBrowser, findChromium } from '../src/browser-check.js';
import { efficiency } from '../src/efficiency.js';
import { writeReport } from '../src/report.js';
import { writeFixtureRun } from './eval-fixtures.js';

const chromium = findChromium();
if (!chromium) console.warn('report-browser.spec: SKIPPED — no Chromium (set $CHROMIUM or apt-get install -y chromium)');

describe.skipIf(!chromium)('report.html in headless Chromium', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'smolrate-eval-browser-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('renders every figure with no errors', async () => {
    const run = path.join(tmp, 'run');
    await writeFixtureRun(run);
    const rows = Array.from({ length: 300 }, (_, i) => {
      const target = 1 + ((i * 0.37) % 4);
      return { parent_asin: `B${i}`, category: ['Books', 'Toys'][i % 2], target: Math.round(target * 10) / 10, prediction: 3 + 0.4 * (target - 3) + 0.3 * Math.sin(i) };
    });
    const out = path.join(tmp, 'report');
    const eff = efficiency({ cfg: presetConfig('smolvlm2-256m'), operationalTextTokens: 130, maximumTextTokens: 170 });
    const report = await writeReport({
      outDir: out,
      rows,
      efficiency: eff,
      throughput: { imagesPerSecond: 1, batchSize: 8, items: 300, modelSeconds: 300, backend: 'wasm' },
      backend: 'wasm',
      checkpoint: 'ckpt',
      split: 'val',
      data: 'shards',
      runDir: run,
    });
    const r = await checkReportInBrowser(path.join(out, 'report.html'), { chromium: chromium! });
    expect(r.errors).toEqual([]);
    expect(r.images).toBe(report.figures.length);
    expect(r.images).toBe(6);
    for (const w of r.naturalWidths) expect(w).toBeGreaterThan(300);
    expect(r.title).toMatch(/smolrate evaluation/);
  });

  it('fails a page with a broken image and a script error', async () => {
    const page = path.join(tmp, 'broken.html');
    await writeFile(page, '<!doctype html><html><head><title>t</title></head><body><img src="data:image/png;base64,AAAA"><script>undefinedFunction();</script></body></html>');
    const r = await checkReportInBrowser(page, { chromium: chromium! });
    expect(r.images).toBe(1);
    expect(r.naturalWidths).toEqual([0]);
    expect(r.errors.join('\n')).toMatch(/failed to load IMG/);
    expect(r.errors.join('\n')).toMatch(/undefinedFunction/);
  });
});
