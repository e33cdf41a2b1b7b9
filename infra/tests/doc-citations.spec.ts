/**
 * Every document the code cites is in the repository, and every quoted section heading exists.
 *
 * Citations are read where people write them: comments and test titles of the TypeScript /
 * JavaScript sources, and the whole text of Markdown, Python and shell files. A citation is a
 * `*.md` path (`docs/reference/model.md`, `../../docs/training.md`, a bare `README.md`); when a
 * quoted section follows it (`docs/reference/model.md "Counts"`, `docs/training.md, "The step"`),
 * the page must have a heading with exactly that text. String literals that are not test titles
 * (file names a test writes, usage text) are not citations.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** Where code lives: the sources, tests, tools and infra of every project, plus its README. */
const SCANNED = ['packages/*/src', 'packages/*/tests', 'packages/*/README.md', 'apps/*/src', 'apps/*/tests', 'apps/*/README.md', 'tools', 'infra', 'eslint.config.mjs', 'vitest.config.ts'];
const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.nx', '.tmp']);
const CODE_EXT = /\.(ts|mts|cts|js|mjs|cjs)$/;
const TEXT_EXT = /\.(md|py|sh|ya?ml)$/;
const TEST_CALLS = new Set(['describe', 'it', 'test']);

interface Citation {
  file: string;
  doc: string;
  section?: string;
}

interface Problem {
  file: string;
  citation: string;
  problem: string;
}

function expand(root: string, pattern: string): string[] {
  const parts = pattern.split('/');
  let paths = [root];
  for (const part of parts) {
    const next: string[] = [];
    for (const p of paths) {
      if (part === '*') {
        if (!isDir(p)) continue;
        for (const e of readdirSync(p)) if (!SKIPPED_DIRS.has(e)) next.push(join(p, e));
      } else if (exists(join(p, part))) {
        next.push(join(p, part));
      }
    }
    paths = next;
  }
  return paths;
}

function isDir(p: string): boolean {
  return statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

/** Exact-case existence (a case-insensitive file system would accept a path whose case differs). */
function exists(p: string): boolean {
  const dir = dirname(p);
  if (dir === p) return true;
  try {
    return readdirSync(dir).includes(basename(p));
  } catch {
    return false;
  }
}

function walk(p: string, out: string[]): string[] {
  if (!isDir(p)) {
    if (CODE_EXT.test(p) || TEXT_EXT.test(p)) out.push(p);
    return out;
  }
  for (const e of readdirSync(p).sort()) if (!SKIPPED_DIRS.has(e)) walk(join(p, e), out);
  return out;
}

/** The comments and test titles of a TypeScript / JavaScript file, each as one string. */
function codeProse(path: string, text: string): string[] {
  const kind = /\.(js|mjs|cjs)$/.test(path) ? ts.ScriptKind.JS : ts.ScriptKind.TS;
  const source = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true, kind);
  const out: string[] = [];
  const seen = new Set<number>();
  const comments = (ranges: ts.CommentRange[] | undefined) => {
    for (const r of ranges ?? []) {
      if (seen.has(r.pos)) continue;
      seen.add(r.pos);
      out.push(text.slice(r.pos, r.end));
    }
  };
  // Every comment is trivia before some token. The trivia after a node's end reaches the next
  // token, so a comment before a closing brace is found from the last child; only a node without
  // children (an empty block) needs its tokens, which are costly to materialise for every node.
  const visit = (node: ts.Node) => {
    comments(ts.getLeadingCommentRanges(text, node.pos));
    comments(ts.getLeadingCommentRanges(text, node.end));
    comments(ts.getTrailingCommentRanges(text, node.end));
    if (ts.isCallExpression(node) && TEST_CALLS.has(leftmostName(node.expression))) {
      const title = node.arguments[0];
      if (title && (ts.isStringLiteral(title) || ts.isNoSubstitutionTemplateLiteral(title))) out.push(title.text);
    }
    let children = 0;
    ts.forEachChild(node, (child) => {
      children++;
      visit(child);
    });
    if (children === 0 && !ts.isTokenKind(node.kind)) for (const token of node.getChildren(source)) comments(ts.getLeadingCommentRanges(text, token.pos));
  };
  visit(source);
  return out;
}

function leftmostName(e: ts.Expression): string {
  if (ts.isIdentifier(e)) return e.text;
  if (ts.isPropertyAccessExpression(e) || ts.isCallExpression(e)) return leftmostName(e.expression);
  return '';
}

/** Comment leaders (`//`, ` * `, `#`) out, line breaks folded, so a quote may span lines. */
function fold(prose: string): string {
  return prose
    .split('\n')
    .map((l) => l.replace(/^\s*(\/\/+|\/\*+|\*+\/?|#+)?\s?/, '').trim())
    .join(' ');
}

const CITATION = /(?<![\w/.:-])((?:\.{1,2}\/|[\w-]+\/)*[\w.-]*\w\.md)\b(?:,?\s*"([^"]+)")?/g;

function findCitations(file: string, text: string): Citation[] {
  if (!text.includes('.md')) return []; // most files cite nothing: skip parsing them
  const prose = CODE_EXT.test(file) ? codeProse(file, text) : [text];
  const out: Citation[] = [];
  for (const p of prose) {
    for (const m of fold(p).matchAll(CITATION)) out.push({ file, doc: m[1], section: m[2] });
  }
  return out;
}

/** A cited path, relative to the citing file, then its project, then the repository root. */
function locate(root: string, file: string, doc: string): string | undefined {
  const rel = relative(root, file).split(sep);
  const project = rel[0] === 'packages' || rel[0] === 'apps' ? join(root, rel[0], rel[1]) : root;
  for (const base of [dirname(file), project, root]) {
    const p = resolve(base, doc);
    if (p.startsWith(root) && exists(p) && !isDir(p)) return p;
  }
  return undefined;
}

/** `#`-headings outside fenced code blocks, as rendered: without the `#`s and backticks. */
function headings(markdown: string): Set<string> {
  const out = new Set<string>();
  let fence = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fence = !fence;
    const m = !fence && /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (m) out.add(m[1].replace(/`/g, ''));
  }
  return out;
}

function checkCitations(root: string): { citations: number; problems: Problem[] } {
  const absRoot = resolve(root);
  const files = SCANNED.flatMap((p) => expand(absRoot, p)).flatMap((p) => walk(p, []));
  const problems: Problem[] = [];
  let citations = 0;
  for (const file of [...new Set(files)]) {
    for (const c of findCitations(file, readFileSync(file, 'utf8'))) {
      citations++;
      const at = relative(absRoot, file);
      const citation = c.section === undefined ? c.doc : `${c.doc} "${c.section}"`;
      const target = locate(absRoot, file, c.doc);
      if (!target) {
        problems.push({ file: at, citation, problem: `${c.doc} is not in the repository` });
      } else if (c.section !== undefined && !headings(readFileSync(target, 'utf8')).has(c.section)) {
        problems.push({ file: at, citation, problem: `${relative(absRoot, target)} has no heading "${c.section}"` });
      }
    }
  }
  return { citations, problems };
}

describe('document citations in code', () => {
  it('name documents of this repository, and headings those documents have', () => {
    const { citations, problems } = checkCitations(REPO);
    expect(citations).toBeGreaterThan(50);
    expect(problems).toEqual([]);
  });

  describe('the checker', () => {
    const dir = mkdtempSync(join(tmpdir(), 'doc-citations-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const put = (path: string, text: string) => {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    };
    put('docs/reference/model.md', '# Model\n\n## Checkpoint tensors\n\n## Counts\n\n```\n# Not a heading\n```\n');
    put('packages/x/README.md', 'See [the model](../../docs/reference/model.md) and [gone](../../docs/gone.md).\n');
    put(
      'packages/x/src/a.ts',
      [
        '/** Counts (docs/reference/model.md "Counts"); the old MODEL.md "Counts". */',
        "const usage = 'writes DIR/README.md'; // a string, not a citation",
        "describe('layers (docs/reference/model.md, \"Not a heading\")', () => {});",
        '// docs/reference/model.md "Checkpoint',
        '// tensors" is split over lines; MODEL.md\'s table is not here',
        'export function f(): void {',
        '  // an empty block: STYLE.md',
        '}',
        'export function g(): number {',
        '  return 1;',
        '  // after the last statement: DATA.md',
        '}',
        'export { usage };',
      ].join('\n'),
    );

    it('reports missing documents and headings, in comments, test titles and Markdown', () => {
      const { citations, problems } = checkCitations(dir);
      expect(citations).toBe(9);
      const byText = (a: Problem, b: Problem) => JSON.stringify(a).localeCompare(JSON.stringify(b));
      expect([...problems].sort(byText)).toEqual(
        [
          { file: 'packages/x/src/a.ts', citation: 'MODEL.md "Counts"', problem: 'MODEL.md is not in the repository' },
          { file: 'packages/x/src/a.ts', citation: 'docs/reference/model.md "Not a heading"', problem: 'docs/reference/model.md has no heading "Not a heading"' },
          { file: 'packages/x/src/a.ts', citation: 'MODEL.md', problem: 'MODEL.md is not in the repository' },
          { file: 'packages/x/src/a.ts', citation: 'STYLE.md', problem: 'STYLE.md is not in the repository' },
          { file: 'packages/x/src/a.ts', citation: 'DATA.md', problem: 'DATA.md is not in the repository' },
          { file: 'packages/x/README.md', citation: '../../docs/gone.md', problem: '../../docs/gone.md is not in the repository' },
        ].sort(byText),
      );
    });

    it('reads headings outside code fences only', () => {
      expect([...headings(readFileSync(join(dir, 'docs/reference/model.md'), 'utf8'))]).toEqual(['Model', 'Checkpoint tensors', 'Counts']);
    });
  });
});
