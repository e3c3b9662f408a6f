/**
 * The built credvault/client must load as is in a browser (`<script type="module">`, served
 * as the Connect page's client.js): no import or require of anything. `npm test` builds
 * first; alone, run `npx tsc -p tsconfig.build.json`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const BUILT = fileURLToPath(new URL('../../dist/src/client/index.js', import.meta.url));

/** Every way the module could reach another one: import/export-from declarations, import(), import.meta, require. */
function moduleReferences(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) || ts.isImportEqualsDeclaration(node)) found.push(node.getText());
    else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined) found.push(node.getText());
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) found.push(node.getText());
    else if (ts.isMetaProperty(node)) found.push(node.getText());
    else if (ts.isIdentifier(node) && node.text === 'require') found.push(`require at ${node.getStart()}`);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe('the built credvault/client', () => {
  it('exists (run `npx tsc -p tsconfig.build.json` first when running this file alone)', () => {
    expect(existsSync(BUILT), `${BUILT} is missing`).toBe(true);
  });

  it('imports and requires nothing', () => {
    const text = readFileSync(BUILT, 'utf8');
    expect(moduleReferences(BUILT, text)).toEqual([]);
    // The same, by text, outside comments (the TSDoc examples do show an import).
    const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    expect(code).not.toMatch(/^\s*import[\s{*'"]/m);
    expect(code).not.toMatch(/\bimport\s*\(|\brequire\s*\(|\bfrom\s+['"]/);
  });

  it('the check itself catches each kind of reference', () => {
    const planted = [
      "import { z } from 'zod';",
      "import 'side-effect';",
      "export { x } from './other.js';",
      "const m = await import('./lazy.js');",
      "const fs = require('node:fs');",
      'const here = import.meta.url;',
    ];
    for (const line of planted) expect(moduleReferences('planted.js', line), line).not.toEqual([]);
    expect(moduleReferences('clean.js', "/** import { a } from 'b' */\nexport const x = 1;")).toEqual([]);
  });

  it('loads through import() of its file URL, and works with nothing but fetch', async () => {
    const built = (await import(pathToFileURL(BUILT).href)) as typeof import('../../src/client/index.js');
    expect(Object.keys(built).sort()).toEqual(['CredvaultError', 'createCredvaultClient']);
    const seen: Array<{ url: string; authorization: string | null }> = [];
    const client = built.createCredvaultClient({
      baseUrl: 'https://vault.example.test/api/v2/public/',
      token: 'cvs_built.token',
      fetch: async (input, init) => {
        seen.push({ url: String(input), authorization: new Headers(init?.headers).get('authorization') });
        const envelope = { status_code: 401, http_error_type: 'UNAUTHORIZED', error: 'INVALID_TOKEN', message: 'Invalid token' };
        return new Response(JSON.stringify(envelope), { status: 401, headers: { 'content-type': 'application/json' } });
      },
    });
    const error = await client.activeAccount().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(built.CredvaultError);
    expect(error).toMatchObject({ name: 'CredvaultError', status_code: 401, error: 'INVALID_TOKEN', message: 'Invalid token' });
    expect(seen).toEqual([{ url: 'https://vault.example.test/api/v2/public/session/active-linked-account', authorization: 'Bearer cvs_built.token' }]);
  });
});
