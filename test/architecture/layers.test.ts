/**
 * The import graph runs one way: errors <- crypto <- core <- auth <- http <- composition
 * root (src/*.ts) <- cli, with adapters beside core (seeing only the store contract) and
 * loaded by the root only lazily. Each offending edge is printed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');

type Layer = 'errors' | 'crypto' | 'core' | 'store-contract' | 'auth' | 'connect' | 'http' | 'root' | 'cli' | 'testing' | 'client' | 'adapters' | 'bench';

/** One import: from a file to a file, both relative to the repository root. */
export interface Edge {
  from: string;
  to: string;
  /** An `import()` expression, rather than a static import or re-export. */
  dynamic: boolean;
}

function layerOf(file: string): Layer | undefined {
  // The error class and the optional-peer loader (which needs only the error class) are the base everyone may use.
  if (file === 'src/errors.ts' || file === 'src/optional-peers.ts') return 'errors';
  if (file === 'src/core/store.ts') return 'store-contract';
  if (/^src\/[^/]+\.ts$/.test(file)) return 'root';
  const match = /^(src\/(crypto|core|auth|connect|http|cli|testing|client)|adapters|bench)\//.exec(file);
  if (match === null) return undefined;
  return (match[2] ?? match[1]) as Layer;
}

const BELOW_ROOT: Layer[] = ['errors', 'crypto', 'core', 'store-contract', 'auth', 'connect', 'http'];

/** What each layer may import statically. */
const ALLOWED: Record<Layer, Layer[]> = {
  errors: ['errors'],
  crypto: ['errors', 'crypto'],
  core: ['errors', 'crypto', 'core', 'store-contract'],
  'store-contract': ['errors', 'store-contract'],
  adapters: ['errors', 'store-contract', 'adapters'],
  auth: ['errors', 'crypto', 'core', 'store-contract', 'auth'],
  // The Connect page's declarations and assets: below the HTTP layer that serves them.
  connect: ['errors', 'core', 'connect'],
  http: ['errors', 'crypto', 'core', 'store-contract', 'auth', 'connect', 'http'],
  // The browser client: types only from the HTTP schemas (test/client checks its build imports nothing).
  client: ['http', 'client'],
  root: [...BELOW_ROOT, 'root'],
  cli: [...BELOW_ROOT, 'root', 'testing', 'cli'],
  testing: ['errors', 'store-contract', 'testing'],
  bench: [...BELOW_ROOT, 'root', 'testing', 'adapters', 'bench'],
};

/** Layers a layer may reach only through `import()`, so that loading it pulls in none of them. */
const LAZY_ONLY: Partial<Record<Layer, Layer[]>> = { root: ['adapters'] };

/** The offending edges of a graph, one line each; empty when every edge runs the right way. */
export function layerViolations(edges: readonly Edge[]): string[] {
  const problems: string[] = [];
  for (const edge of edges) {
    const from = layerOf(edge.from);
    const to = layerOf(edge.to);
    if (from === undefined || to === undefined) {
      problems.push(`${edge.from} -> ${edge.to}: ${from === undefined ? edge.from : edge.to} belongs to no layer; place it in one`);
      continue;
    }
    if (ALLOWED[from].includes(to)) continue;
    if (edge.dynamic && LAZY_ONLY[from]?.includes(to) === true) continue;
    const lazy = LAZY_ONLY[from]?.includes(to) === true ? ' (only through a lazy import())' : '';
    problems.push(`${edge.from} -> ${edge.to}: ${from} may not import ${to}${lazy}${edge.dynamic ? ' [import()]' : ''}`);
  }
  return problems;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts'))
    .map((entry) => path.relative(ROOT, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'));
}

/** Every relative import of a file: static imports, re-exports, `import type`, `import()`. */
function importsOf(file: string): Edge[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const edges: Edge[] = [];
  const add = (specifier: ts.Node | undefined, dynamic: boolean) => {
    if (specifier === undefined || !ts.isStringLiteralLike(specifier) || !specifier.text.startsWith('.')) return;
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier.text)).replace(/\.js$/, '.ts');
    edges.push({ from: file, to: target, dynamic });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier, false);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node.arguments[0], true);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal, false);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edges;
}

describe('the import graph', () => {
  const files = ['src', 'adapters', 'bench'].flatMap(sourceFiles);
  const edges = files.flatMap(importsOf);

  it('reads every source file and finds its imports', () => {
    expect(files).toContain('src/core/vault.ts');
    expect(edges.some((e) => e.from === 'src/store-url.ts' && e.to === 'adapters/memory.ts' && e.dynamic)).toBe(true);
  });

  it('runs one way: every edge allowed by the layer rules', () => {
    const problems = layerViolations(edges);
    expect(problems, `wrong-way imports:\n${problems.join('\n')}`).toEqual([]);
  });

  it('flags a planted wrong-way edge, an eager adapter import and an unplaced file', () => {
    const planted: Edge[] = [
      { from: 'src/core/vault.ts', to: 'src/store-url.ts', dynamic: false },
      { from: 'src/crypto/cipher.ts', to: 'src/core/layout.ts', dynamic: false },
      { from: 'src/store-url.ts', to: 'adapters/redis.ts', dynamic: false },
      { from: 'src/store-url.ts', to: 'adapters/redis.ts', dynamic: true },
      { from: 'adapters/redis.ts', to: 'src/core/layout.ts', dynamic: false },
      { from: 'bench/run.ts', to: 'src/cli/main.ts', dynamic: false },
      { from: 'src/errors.ts', to: 'src/core/store.ts', dynamic: false },
      { from: 'src/stray/thing.ts', to: 'src/errors.ts', dynamic: false },
    ];
    expect(layerViolations(planted)).toEqual([
      'src/core/vault.ts -> src/store-url.ts: core may not import root',
      'src/crypto/cipher.ts -> src/core/layout.ts: crypto may not import core',
      'src/store-url.ts -> adapters/redis.ts: root may not import adapters (only through a lazy import())',
      'adapters/redis.ts -> src/core/layout.ts: adapters may not import core',
      'bench/run.ts -> src/cli/main.ts: bench may not import cli',
      'src/errors.ts -> src/core/store.ts: errors may not import store-contract',
      'src/stray/thing.ts -> src/errors.ts: src/stray/thing.ts belongs to no layer; place it in one',
    ]);
  });
});

describe('every source file', () => {
  const files = ['src', 'adapters', 'bench'].flatMap(sourceFiles);

  it('starts with a comment saying what it is (after a shebang line, if any)', () => {
    const bare = files.filter((file) => {
      const text = readFileSync(path.join(ROOT, file), 'utf8').replace(/^#!.*\n/, '');
      return !/^\s*(\/\*\*?[\s\S]*?\*\/|\/\/)/.test(text) || /^\s*\/\*\*?\s*\*\//.test(text);
    });
    expect(bare, `files without a first comment:\n${bare.join('\n')}`).toEqual([]);
    expect(files.length).toBeGreaterThan(50);
  });
});
