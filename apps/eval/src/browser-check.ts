/**
 * Opens a report.html in headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM) and checks
 * that it renders: every <img> loaded with naturalWidth > 0, no page error, no console error.
 *
 * How, without a driver library: a copy of the page gets a probe script at the top of <head> that
 * records window errors, failed resource loads and console.error calls, and after `load` writes
 * the result into a <pre id="smolrate-check"> element; `--dump-dom` (with a virtual-time budget
 * so the load completes) prints the final DOM, which we parse. Chromium's own console log
 * (`--enable-logging=stderr`) is scanned for errors as well.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, DataError } from '@smolrate/core';

const CHROMIUM_CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

/** The Chromium binary to use ($CHROMIUM first), or null when none is installed. */
export function findChromium(): string | null {
  const env = process.env.CHROMIUM;
  if (env) return existsSync(env) ? env : null;
  return CHROMIUM_CANDIDATES.find((c) => existsSync(c)) ?? null;
}

export interface BrowserCheck {
  images: number;
  /** Widths of the images as decoded by the browser, in document order. */
  naturalWidths: number[];
  errors: string[];
  title: string;
}

const PROBE = `<script>
(function(){
  var errors=[];
  window.addEventListener('error',function(e){var t=e.target;errors.push(t&&t!==window&&t.tagName?('failed to load '+t.tagName+' '+String(t.src||t.href||'').slice(0,60)):('page error: '+e.message));},true);
  var ce=console.error;console.error=function(){errors.push('console.error: '+Array.prototype.join.call(arguments,' '));return ce.apply(console,arguments);};
  window.addEventListener('load',function(){
    var imgs=Array.prototype.slice.call(document.images);
    var pre=document.createElement('pre');pre.id='smolrate-check';
    pre.textContent=JSON.stringify({images:imgs.length,naturalWidths:imgs.map(function(i){return i.complete?i.naturalWidth:0;}),errors:errors,title:document.title});
    document.body.appendChild(pre);
  });
})();
</script>`;

function runChromium(bin: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export async function checkReportInBrowser(htmlFile: string, options: { chromium?: string; timeoutMs?: number } = {}): Promise<BrowserCheck> {
  const bin = options.chromium ?? findChromium();
  if (!bin) throw new ConfigError(`no Chromium found (tried $CHROMIUM, ${CHROMIUM_CANDIDATES.join(', ')}): install it, e.g. apt-get install -y chromium`);
  const html = await readFile(htmlFile, 'utf8');
  const probed = html.includes('<head>') ? html.replace('<head>', `<head>${PROBE}`) : PROBE + html;
  const dir = mkdtempSync(path.join(tmpdir(), 'smolrate-browser-'));
  try {
    const page = path.join(dir, path.basename(htmlFile));
    await writeFile(page, probed);
    const args = [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--enable-logging=stderr',
      '--v=0',
      `--user-data-dir=${path.join(dir, 'profile')}`,
      '--virtual-time-budget=10000',
      '--dump-dom',
      pathToFileURL(page).href,
    ];
    const res = await runChromium(bin, args, options.timeoutMs ?? 90_000);
    const m = /<pre id="smolrate-check">([\s\S]*?)<\/pre>/.exec(res.stdout);
    if (!m) throw new DataError(`Chromium (${bin}) produced no check result (exit ${res.code}); stderr: ${res.stderr.split('\n').filter(Boolean).slice(-3).join(' | ')}`);
    const text = m[1].replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
    const result = JSON.parse(text) as BrowserCheck;
    // Console messages of the page, as Chromium logs them: "INFO:CONSOLE(…)] "Uncaught …", source: …"
    for (const line of res.stderr.split('\n')) {
      if (/CONSOLE\(\d+\)\]/.test(line) && /error|uncaught/i.test(line)) result.errors.push(`console: ${line.trim()}`);
    }
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
