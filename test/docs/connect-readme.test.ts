/**
 * The README's Connect section as code: its `app.json` is a declaration `serve --app-config`
 * accepts, and its `credvault/client` example type-checks against the client's source.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createHandler, createVault } from '../../src/index.js';
import { createTypeChecker, recipeBlock } from './readme-code.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

describe('the README Connect section', () => {
  it('declares an app.json that the handler accepts, with the fields the walkthrough fills in', async () => {
    const { theme, ...defaultApp } = JSON.parse(recipeBlock(readme, 'connect-app', 'json')) as Record<string, unknown>;
    const vault = await createVault({ store: 'memory:' });
    try {
      const handler = createHandler(vault, { defaultApp: defaultApp as never, connect: { theme: theme as never } });
      const page = await handler.handle({ method: 'GET', path: '/connect/assets/theme.css', headers: {} });
      expect(page.raw).toContain(`--cv-accent: ${(theme as { accent: string }).accent};`);
    } finally {
      await vault.close();
    }
    const fields = (defaultApp as { fields: Array<{ name: string; label: string; type: string }> }).fields;
    // The walkthrough fills "API key" and picks a region, and says the key is masked.
    expect(fields.find((f) => f.label === 'API key')?.type).toBe('password');
    expect(fields.find((f) => f.label === 'Region')?.type).toBe('select');
  });

  const checker = createTypeChecker({ 'credvault/client': ['./src/client/index.ts'] });
  const file = path.join(ROOT, 'test', 'docs', 'readme-recipe-connect-client.ts');
  // The example uses a token it does not show being obtained.
  const prelude = 'declare const token: string;\n';

  it('has a credvault/client example that type-checks', () => {
    const code = recipeBlock(readme, 'connect-client');
    expect(code).toContain("from 'credvault/client'");
    expect(checker.check(new Map([[file, prelude + code]]))).toEqual([]);
  }, 60_000);

  it('fails the check when the example calls what the client does not have (the check has teeth)', () => {
    const code = recipeBlock(readme, 'connect-client').replace('vault.upsertCredential(', 'vault.putCredential(');
    const diagnostics = checker.check(new Map([[file, prelude + code]]));
    expect(diagnostics.some((line) => line.includes("'putCredential' does not exist"))).toBe(true);
  }, 60_000);
});
