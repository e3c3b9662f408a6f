/** The storage layout's escaping: injective, reversible, and plain names kept as they are. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { escapeComponent, unescapeComponent } from '../../src/core/layout.js';

describe('escapeComponent', () => {
  it('keeps A-Z a-z 0-9 _ . - as they are, and escapes everything else as %XXXX', () => {
    expect(escapeComponent('Cust_1.a-b')).toBe('Cust_1.a-b');
    expect(escapeComponent('')).toBe('');
    expect(escapeComponent('a:b')).toBe('a%003ab');
    expect(escapeComponent('%0041')).toBe('%00250041');
    expect(escapeComponent('{x}')).toBe('%007bx%007d');
    expect(escapeComponent('é')).toBe('%00e9');
  });

  it('is injective and reversed by unescapeComponent, for any UTF-16 string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (a, b) => {
        expect(unescapeComponent(escapeComponent(a))).toBe(a);
        if (a !== b) expect(escapeComponent(a)).not.toBe(escapeComponent(b));
        expect(escapeComponent(a)).toMatch(/^[A-Za-z0-9_.%-]*$/);
      }),
      { numRuns: 2000 },
    );
  });
});
