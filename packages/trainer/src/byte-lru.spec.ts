import { describe, expect, it } from 'vitest';
import { ByteLru } from './byte-lru.js';

describe('ByteLru', () => {
  it('evicts least recently used entries to stay within the byte budget', () => {
    const lru = new ByteLru<string, number>(10);
    lru.set('a', 1, 4);
    lru.set('b', 2, 4);
    expect(lru.get('a')).toBe(1); // a is now the most recent
    lru.set('c', 3, 4); // 12 > 10: evict b (least recent)
    expect(lru.has('b')).toBe(false);
    expect([lru.has('a'), lru.has('c')]).toEqual([true, true]);
    expect(lru.bytes).toBe(8);
    expect(lru.evictions).toBe(1);

    lru.set('a', 10, 2); // replacing updates the size
    expect(lru.bytes).toBe(6);
    expect(lru.get('a')).toBe(10);
    expect(lru.delete('c')).toBe(true);
    expect(lru.delete('c')).toBe(false);
    expect([lru.size, lru.bytes]).toEqual([1, 2]);
  });

  it('keeps the entry just inserted even when it alone exceeds the budget', () => {
    const lru = new ByteLru<number, string>(5);
    lru.set(1, 'x', 3);
    lru.set(2, 'big', 50);
    expect(lru.has(1)).toBe(false);
    expect(lru.get(2)).toBe('big');
    lru.set(3, 'y', 1);
    expect(lru.has(2)).toBe(false);
    expect(lru.get(3)).toBe('y');
    expect(() => new ByteLru(-1)).toThrow(RangeError);
    expect(() => lru.set(4, 'z', Number.NaN)).toThrow(RangeError);
  });
});
