/**
 * Loading an optional peer dependency (a framework, a Redis or PostgreSQL client) on first
 * use: when the package is not installed, one clear line names it and how to install it.
 */
import { VaultError } from './errors.js';

/**
 * Runs `load` (a dynamic `import()` of code that needs `packages`). If it fails because one
 * of `packages` itself is not installed, throws `INVALID_CONFIGURATION`:
 * "`what` needs the package 'name': npm install name". Every other failure, a missing
 * package deeper down included, passes through unchanged.
 *
 * @example
 * ```ts
 * const { default: Koa } = await loadOptionalPeer(['koa'], 'The koa framework', () => import('koa'));
 * ```
 */
export async function loadOptionalPeer<T>(packages: readonly string[], what: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const missing = missingPackage(error);
    if (missing === undefined || !packages.includes(missing)) throw error;
    throw new VaultError('INVALID_CONFIGURATION', `${what} needs the package '${missing}': npm install ${missing}`, { cause: error });
  }
}

/** The package Node could not find, from its `ERR_MODULE_NOT_FOUND` error ("Cannot find package 'x' imported from ..."). */
function missingPackage(error: unknown): string | undefined {
  if (!(error instanceof Error) || (error as { code?: unknown }).code !== 'ERR_MODULE_NOT_FOUND') return undefined;
  return /^Cannot find package '([^']+)' imported from /.exec(error.message)?.[1];
}
