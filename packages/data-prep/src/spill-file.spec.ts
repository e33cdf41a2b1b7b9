import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpillFile, type SpillRef } from './spill-file.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-spill-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('SpillFile', () => {
  it('returns byte offsets (multi-byte text included) and reads back across flushes, in any order', async () => {
    const spill = await SpillFile.create(join(dir, 'a.bin'));
    try {
      const texts = Array.from({ length: 3000 }, (_, i) => `${i}:${'é😀中'.repeat(i % 7)}${'x'.repeat(i % 1000)}\n`);
      const refs: SpillRef[] = [];
      for (const t of texts) {
        refs.push(spill.append(t));
        if (spill.full) await spill.flush();
      }
      expect(refs[1].offset).toBe(Buffer.byteLength(texts[0]));
      expect(spill.size).toBe(texts.reduce((n, t) => n + Buffer.byteLength(t), 0));
      const order = [2999, 0, 1500, 7, 2998];
      expect(await spill.read(order.map((i) => refs[i]))).toEqual(order.map((i) => texts[i]));
      expect((await stat(spill.path)).size).toBe(spill.size); // read() flushed the tail
      await expect(spill.read([{ offset: spill.size, length: 4 }])).rejects.toThrow(/past the end/);
    } finally {
      await spill.close();
      await spill.close(); // closing twice is harmless
    }
  });
});
