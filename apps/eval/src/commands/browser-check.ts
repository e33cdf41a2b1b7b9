/** `smolrate-eval browser-check`: opens a report.html in headless Chromium and checks that it renders. */
import { DataError, parseArgs, requireFlag } from '@smolrate/core';
import { checkReportInBrowser } from '../browser-check.js';

export const summary = 'open a report.html in headless Chromium: figures load, no console errors';

export const usage = `usage: smolrate-eval browser-check --html report.html [--chromium PATH]

  --html FILE       the report to open
  --chromium PATH   the browser binary (default $CHROMIUM, else /usr/bin/chromium)

Exit 0 when every image loaded (naturalWidth > 0) and the page logged no error.`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const html = requireFlag(args, 'html');
  const chromium = typeof args.flags.chromium === 'string' ? args.flags.chromium : undefined;
  const r = await checkReportInBrowser(html, { chromium });
  const bad = r.naturalWidths.filter((w) => !(w > 0)).length;
  if (r.images === 0 || bad > 0 || r.errors.length > 0) {
    throw new DataError(`${html}: ${r.images} images, ${bad} not loaded; ${r.errors.length} errors${r.errors.length ? `: ${r.errors.slice(0, 3).join('; ')}` : ''}`);
  }
  process.stdout.write(`${html}: ${r.images} figures rendered (widths ${r.naturalWidths.join(', ')}), no errors\n`);
  return 0;
}
