/**
 * Code blocks of the README, checked as code: a block is found by the marker line
 * `<!-- recipe: NAME -->` right before its fence, and TypeScript blocks are type-checked with
 * the project's strict options, in memory.
 */
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * The code of the ```ts block right after `<!-- recipe: NAME -->`. Throws when the marker is
 * missing or repeated, when no ts fence follows it, or when the block is empty.
 */
export function recipeBlock(markdown: string, name: string, language = 'ts'): string {
  const marker = `<!-- recipe: ${name} -->`;
  const lines = markdown.split(/\r?\n/);
  const at = lines.findIndex((line) => line.trim() === marker);
  if (at < 0) throw new Error(`README has no ${marker} marker`);
  if (lines.findIndex((line, index) => index > at && line.trim() === marker) >= 0) throw new Error(`README has ${marker} more than once`);
  if (lines[at + 1]?.trim() !== `\`\`\`${language}`) throw new Error(`${marker} is not followed by a \`\`\`${language} fence`);
  const end = lines.findIndex((line, index) => index > at + 1 && line.trim() === '```');
  if (end < 0) throw new Error(`the block after ${marker} is not closed`);
  const code = lines.slice(at + 2, end).join('\n');
  if (code.trim() === '') throw new Error(`the block after ${marker} is empty`);
  return `${code}\n`;
}


/** A type-checker of in-memory files; it keeps its last program, to reuse and to inspect. */
export interface TypeChecker {
  /** One line per diagnostic in `sources` (file name -> code) or in the options; none when they check. */
  check(sources: ReadonlyMap<string, string>): string[];
  /** The program of the last check. */
  program(): ts.Program | undefined;
}

/**
 * A checker with the project's tsconfig options and `paths` mapping package names to sources
 * (as a user's `import ... from 'credvault'` would resolve once installed).
 */
export function createTypeChecker(paths: Record<string, string[]>): TypeChecker {
  let previous: ts.Program | undefined;
  const check = (sources: ReadonlyMap<string, string>): string[] => {
    const config = ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), (file) => ts.sys.readFile(file));
    if (config.error !== undefined) return [ts.flattenDiagnosticMessageText(config.error.messageText, '\n')];
    const converted = ts.convertCompilerOptionsFromJson((config.config as { compilerOptions: unknown }).compilerOptions, ROOT);
    const options: ts.CompilerOptions = {
      ...converted.options,
      noEmit: true,
      declaration: false,
      sourceMap: false,
      types: ['node'],
      baseUrl: ROOT,
      paths,
    };
    delete options.outDir;
    const host = ts.createCompilerHost(options, true);
    const { fileExists, readFile, getSourceFile } = host;
    host.fileExists = (file) => sources.has(file) || fileExists.call(host, file);
    host.readFile = (file) => sources.get(file) ?? readFile.call(host, file);
    host.getSourceFile = (file, language, onError, shouldCreate) => {
      const text = sources.get(file);
      return text === undefined ? getSourceFile.call(host, file, language, onError, shouldCreate) : ts.createSourceFile(file, text, language, true);
    };
    // Reusing the last program spares re-reading the SDKs' declarations.
    const program = ts.createProgram({ rootNames: [...sources.keys()], options, host, ...(previous === undefined ? {} : { oldProgram: previous }) });
    previous = program;
    const diagnostics: ts.Diagnostic[] = [...converted.errors, ...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()];
    for (const file of sources.keys()) {
      const source = program.getSourceFile(file);
      if (source === undefined) {
        diagnostics.push({ category: ts.DiagnosticCategory.Error, code: 0, file: undefined, start: undefined, length: undefined, messageText: `${file} is not in the program` });
        continue;
      }
      diagnostics.push(...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source));
    }
    const formatHost: ts.FormatDiagnosticsHost = { getCanonicalFileName: (file) => file, getCurrentDirectory: () => ROOT, getNewLine: () => '\n' };
    return diagnostics.map((diagnostic) => ts.formatDiagnostic(diagnostic, formatHost).trim());
  };
  return { check, program: () => previous };
}
