/**
 * Builds the upstream client at test time: types from the upstream excerpt with
 * openapi-typescript, the client source (`upstream-client.ts.txt`) beside them in a fresh
 * temporary directory, a type-check of that directory with the TypeScript compiler API,
 * and the same source transpiled and loaded for the tests to run.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import openapiTS, { astToString, type OpenAPI3 } from 'openapi-typescript';
import ts from 'typescript';
import type { UpstreamClientFactory } from './calls.js';
import type { UpstreamDocument } from './upstream.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const HERE = import.meta.dirname;

export interface GeneratedClient {
  /** The temporary directory holding `upstream.ts`, `calls.ts` and `upstream-client.ts`. */
  dir: string;
  /** The generated types, for a test to look at. */
  types: string;
  /**
   * Type-checks the generated types, `calls.ts` and the client (and `extra` files of the
   * directory) with the project's tsconfig options; one line per diagnostic.
   */
  typeCheck(extra?: readonly string[]): string[];
  /** Transpiles the checked client source and imports it. */
  load(): Promise<UpstreamClientFactory>;
  remove(): void;
}

export async function generateUpstreamClient(document: UpstreamDocument): Promise<GeneratedClient> {
  // openapi-typescript annotates what it is given; hand it a copy.
  const types = astToString(await openapiTS(structuredClone(document) as unknown as OpenAPI3, { silent: true }));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'credvault-upstream-client-'));
  writeFileSync(path.join(dir, 'upstream.ts'), `/** Generated from the upstream OpenAPI excerpt by openapi-typescript. */\n${types}`);
  copyFileSync(path.join(HERE, 'calls.ts'), path.join(dir, 'calls.ts'));
  const clientSource = readFileSync(path.join(HERE, 'upstream-client.ts.txt'), 'utf8');
  writeFileSync(path.join(dir, 'upstream-client.ts'), clientSource);
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  // openapi-fetch (and @types/node) resolve from the project's installed packages.
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');

  let previous: ts.Program | undefined;
  return {
    dir,
    types,
    typeCheck(extra = []) {
      const config = ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), (file) => ts.sys.readFile(file));
      if (config.error !== undefined) return [ts.flattenDiagnosticMessageText(config.error.messageText, '\n')];
      const converted = ts.convertCompilerOptionsFromJson(config.config.compilerOptions, dir);
      const options: ts.CompilerOptions = {
        ...converted.options,
        rootDir: dir,
        noEmit: true,
        declaration: false,
        sourceMap: false,
        types: ['node'],
      };
      delete options.outDir;
      const rootNames = ['upstream.ts', 'calls.ts', 'upstream-client.ts', ...extra].map((file) => path.join(dir, file));
      // Reusing the last program spares re-reading the library declarations.
      const program = ts.createProgram({ rootNames, options, ...(previous !== undefined ? { oldProgram: previous } : {}) });
      previous = program;
      const diagnostics = [...converted.errors, ...ts.getPreEmitDiagnostics(program)];
      const host: ts.FormatDiagnosticsHost = {
        getCanonicalFileName: (file) => file,
        getCurrentDirectory: () => dir,
        getNewLine: () => '\n',
      };
      return diagnostics.map((diagnostic) => ts.formatDiagnostic(diagnostic, host).trim());
    },
    async load() {
      const { outputText, diagnostics } = ts.transpileModule(clientSource, {
        fileName: 'upstream-client.ts',
        reportDiagnostics: true,
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
      });
      if (diagnostics !== undefined && diagnostics.length > 0) {
        throw new Error(`transpiling the client failed: ${diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' ')).join('; ')}`);
      }
      const file = path.join(dir, 'upstream-client.js');
      writeFileSync(file, outputText);
      const module = (await import(/* @vite-ignore */ pathToFileURL(file).href)) as { createUpstreamClient: UpstreamClientFactory };
      return module.createUpstreamClient;
    },
    remove() {
      // Removes the node_modules link, never what it points to.
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
