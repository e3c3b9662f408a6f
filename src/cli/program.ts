/**
 * The `credvault` command line on commander: every command, its flags and its action. Loaded
 * by the entry point (main.ts) for any command line but a bare `--help` or `--version`; each
 * action imports what it needs when it runs, so no command loads another's framework or store.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { Vault } from '../core/vault.js';
import type { KeyProvider } from '../crypto/key-provider.js';
import type { HandlerOptions } from '../http/handler.js';
import { VaultError, isVaultError } from '../errors.js';
import { DEFAULT_STORE_URL, parseStoreUrl } from '../store-url.js';
import { formatMode, generateKey } from '../crypto/keyring.js';
import { DEFAULT_BASE_PATH } from '../http/base-path.js';
import { FRAMEWORKS, type Framework } from './frameworks.js';
import { PROGRAM_DESCRIPTION, VERSION_DESCRIPTION, VERSION_FLAGS, commandDescription, packageVersion } from './commands.js';

/** Usage errors exit 2; failures of the operation itself exit 1. */
const USAGE = 2;
const FAILURE = 1;

interface StoreFlags {
  store?: string;
  keysFile?: string;
  namespace?: string;
  allowInsecureKeyFile?: boolean;
}

interface ServeFlags extends StoreFlags {
  port: number;
  host: string;
  /** Unset: express when it is installed, else `fetch`. */
  framework?: Framework;
  basePath: string;
  /** False with --no-key-id-limit. */
  keyIdLimit: boolean;
  maxAuthFailures?: number;
  authFailureWindow?: number;
  trustProxyHops: number;
  appConfig?: string;
  connectPath?: string;
  frameAncestors?: string[];
  publicUrl?: string;
  pageTokenTtl?: number;
  logRequests?: boolean;
}

/** Set to 1 to accept a key file that group or others may access (as --allow-insecure-key-file). */
const ALLOW_INSECURE_KEY_FILE_ENV = 'CREDVAULT_ALLOW_INSECURE_KEY_FILE';

const printJson = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);

function storeOption(command: Command): Command {
  return command
    .option('--store <url>', `store URL: memory:, sqlite:<path>, redis://..., postgres://... (default $CREDVAULT_STORE, else ${DEFAULT_STORE_URL})`)
    .option('--keys-file <path>', 'file holding the keys (default $CREDVAULT_KEYS_FILE; $CREDVAULT_KEYS wins when set)')
    .option('--namespace <name>', 'keeps this vault apart from others sharing the store (default $CREDVAULT_NAMESPACE, else credvault)')
    .option(
      '--allow-insecure-key-file',
      `use a key file that group or others may access, with a warning (default: refuse it; or $${ALLOW_INSECURE_KEY_FILE_ENV}=1)`,
    );
}

function accountOptions(command: Command): Command {
  return command
    .requiredOption('--org <org>', 'org id')
    .addOption(new Option('--environment <environment>', 'environment').choices(['test', 'production']).default('test'))
    .requiredOption('--id <linked_account_id>', 'linked account id');
}

function positiveInt(name: string, max = Number.MAX_SAFE_INTEGER) {
  return (raw: string): number => {
    if (!/^\d+$/.test(raw) || Number(raw) <= 0) throw new InvalidArgumentError(`${name} must be a positive whole number.`);
    if (Number(raw) > max) throw new InvalidArgumentError(`${name} must be at most ${max}.`);
    return Number(raw);
  };
}

function wholeNumber(name: string, max: number) {
  return (raw: string): number => {
    if (!/^\d+$/.test(raw) || Number(raw) > max) throw new InvalidArgumentError(`${name} must be a whole number from 0 to ${max}.`);
    return Number(raw);
  };
}

function port(raw: string): number {
  if (!/^\d+$/.test(raw) || Number(raw) > 65535) throw new InvalidArgumentError('port must be a whole number from 0 to 65535.');
  return Number(raw);
}

/** A usage error whose message main() prints itself (Commander's own would quote the argument). */
const usageError = (message: string) => new CommanderError(USAGE, 'credvault.usage', message);

function credentialPair(raw: string, previous: Array<[string, string]> = []): Array<[string, string]> {
  const at = raw.indexOf('=');
  // The argument may be a secret pasted without its key: never echo it.
  if (at <= 0) throw usageError("option '--credential <key=value>' expects KEY=VALUE");
  return [...previous, [raw.slice(0, at), raw.slice(at + 1)]];
}

/**
 * Opens the vault the flags and environment describe. A bad URL is a usage error.
 *
 * Keys: $CREDVAULT_KEYS, else --keys-file, else $CREDVAULT_KEYS_FILE, else (SQLite) the file
 * beside the database, created mode 0600 when missing. A key file that group or others may
 * access is refused (a usage error naming the file and its mode) unless
 * --allow-insecure-key-file or $CREDVAULT_ALLOW_INSECURE_KEY_FILE=1, and then used with a
 * warning on stderr. Never prints key material.
 */
async function openCliVault(flags: StoreFlags): Promise<Vault> {
  const store = flags.store ?? process.env['CREDVAULT_STORE'] ?? DEFAULT_STORE_URL;
  try {
    parseStoreUrl(store);
  } catch (error) {
    throw usageError(isVaultError(error) ? error.message : 'Invalid store URL');
  }
  const keys = process.env['CREDVAULT_KEYS'];
  const keyFile = flags.keysFile ?? process.env['CREDVAULT_KEYS_FILE'];
  const allowed = flags.allowInsecureKeyFile === true || process.env[ALLOW_INSECURE_KEY_FILE_ENV] === '1';
  const { createVault, resolveKeyring } = await import('../vault.js');
  let resolved: Awaited<ReturnType<typeof resolveKeyring>>;
  try {
    resolved = await resolveKeyring(store, {
      ...(keys !== undefined && keys.trim() !== '' ? { keys } : {}),
      keysSource: 'CREDVAULT_KEYS',
      ...(keyFile !== undefined && keyFile !== '' ? { keyFile } : {}),
      allowInsecureKeyFile: allowed,
    });
  } catch (error) {
    const details = isVaultError(error) ? error.details : undefined;
    const mode = details?.['mode'];
    if (typeof mode !== 'number') throw error;
    throw new VaultError(
      'INVALID_CONFIGURATION',
      `key file ${String(details?.['keyFile'])} is accessible by group or others (mode ${formatMode(mode)}): refusing to use it; run chmod 600 on it, or pass --allow-insecure-key-file`,
    );
  }
  if (resolved.insecurePermissions) {
    process.stderr.write(
      `credvault: WARNING: key file ${resolved.keyFile ?? ''} is accessible by group or others; using it only because ${flags.allowInsecureKeyFile === true ? '--allow-insecure-key-file was given' : `${ALLOW_INSECURE_KEY_FILE_ENV}=1 is set`}; run chmod 600 on it\n`,
    );
  }
  const namespace = flags.namespace ?? process.env['CREDVAULT_NAMESPACE'];
  const kek = process.env['CREDVAULT_KEK']?.trim();
  return createVault({
    store,
    keys: resolved.keyring,
    ...(namespace !== undefined && namespace !== '' ? { namespace } : {}),
    ...(kek !== undefined && kek !== '' ? { kek: kek.startsWith(KEK_MODULE) ? await loadKeyProviderModule(kek.slice(KEK_MODULE.length)) : kek } : {}),
  });
}

/** `CREDVAULT_KEK=module:<path>`: a key provider of your own (a KMS), from a module. */
const KEK_MODULE = 'module:';

/**
 * Loads a key provider from a module: its default export is a `KeyProvider`, or a function
 * (possibly async) returning one. The path is resolved against the working directory.
 */
async function loadKeyProviderModule(file: string): Promise<KeyProvider> {
  const [{ pathToFileURL }, path] = await Promise.all([import('node:url'), import('node:path')]);
  const where = path.resolve(file);
  let exported: unknown;
  try {
    exported = ((await import(pathToFileURL(where).href)) as { default?: unknown }).default;
  } catch (error) {
    if (isVaultError(error)) throw error;
    throw new VaultError('INVALID_CONFIGURATION', `CREDVAULT_KEK module ${where} could not be loaded (${error instanceof Error ? error.name : 'error'})`);
  }
  let provider: unknown = exported;
  if (typeof exported === 'function') {
    try {
      provider = await (exported as () => unknown)();
    } catch (error) {
      // Its own words when it chose them (a VaultError); otherwise only what kind of failure.
      const why = isVaultError(error) ? error.message : error instanceof Error ? error.name : 'error';
      throw new VaultError('INVALID_CONFIGURATION', `CREDVAULT_KEK module ${where}: its default export failed to make a key provider (${why})`);
    }
  }
  const candidate = provider as Partial<KeyProvider> | undefined;
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.kind !== 'string' ||
    typeof candidate.primaryKekId !== 'string' ||
    typeof candidate.wrap !== 'function' ||
    typeof candidate.unwrap !== 'function' ||
    typeof candidate.hasKek !== 'function'
  ) {
    const missing = ['kind', 'primaryKekId', 'wrap', 'unwrap', 'hasKek'].filter((name) => typeof candidate !== 'object' || candidate === null || !(name in candidate));
    throw new VaultError(
      'INVALID_CONFIGURATION',
      `CREDVAULT_KEK module ${where} must export a KeyProvider, or a function returning one, as its default export${missing.length > 0 && missing.length < 5 ? ` (missing: ${missing.join(', ')})` : ''}`,
    );
  }
  return candidate as KeyProvider;
}

/** Runs a provisioning command against a vault, closing it afterwards. */
async function withVault<T>(flags: StoreFlags, run: (vault: Vault) => Promise<T>): Promise<T> {
  const vault = await openCliVault(flags);
  try {
    return await run(vault);
  } finally {
    await vault.close();
  }
}

/**
 * The whole command line as commander parses it. The top-level names and descriptions come
 * from the command table (commands.ts), which also answers a bare `--help` without commander.
 *
 * @example
 * ```ts
 * process.stdout.write(buildProgram().helpInformation());
 * ```
 */
export function buildProgram(): Command {
  const program = new Command('credvault')
    .description(PROGRAM_DESCRIPTION)
    .version(packageVersion(), VERSION_FLAGS, VERSION_DESCRIPTION)
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text), outputError: (text, write) => write(text) });

  storeOption(program.command('serve').description(commandDescription('serve')))
    .option('--port <port>', 'port to listen on', port, 3000)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .addOption(new Option('--framework <framework>', 'HTTP framework (default: express when installed, else fetch on Node\'s own HTTP server)').choices(FRAMEWORKS))
    .option('--base-path <path>', 'where the API is mounted', DEFAULT_BASE_PATH)
    .option('--max-auth-failures <n>', 'failed authentications allowed per client address (and API key id) in the window (default 20)', positiveInt('max-auth-failures', 1_000_000))
    .option('--auth-failure-window <seconds>', 'length of the failed-authentication window (default 300)', positiveInt('auth-failure-window', 604_800))
    .option('--no-key-id-limit', 'count failed authentications per client address only, not also per API key id')
    .option('--trust-proxy-hops <n>', 'reverse proxies in front to trust; with N > 0 the client address is read from X-Forwarded-For', wholeNumber('trust-proxy-hops', 100), 0)
    .option('--app-config <file>', 'JSON file declaring the default app ({"name","fields":[...],"theme"?}); turns on the Connect page')
    .option('--connect-path <path>', 'where the Connect page is served (default /connect)')
    .option('--frame-ancestors <origins>', 'origins that may embed the Connect page in a frame, comma-separated (default: none)', originList)
    .option('--public-url <url>', 'the public URL connect links start with (default: http:// and the request Host)')
    .option('--page-token-ttl <seconds>', 'lifetime of a Connect page token (default 900)', positiveInt('page-token-ttl', 86_400))
    .option('--log-requests', 'print one line per request on stderr: method, path and query, status, time')
    .action(async (flags: ServeFlags) => {
      await serve(flags);
    });

  const apiKey = program.command('api-key').description(commandDescription('api-key'));
  storeOption(apiKey.command('create').description('create an API key; prints it once'))
    .requiredOption('--org <org>', 'org id')
    .addOption(new Option('--environment <environment>', 'environment').choices(['test', 'production']).default('test'))
    .action(async (flags: StoreFlags & { org: string; environment: string }) => {
      const [{ createApiKey }, wire] = await Promise.all([import('../core/api-keys.js'), import('../http/wire.js')]);
      printJson(wire.createdApiKeyToWire(await withVault(flags, (vault) => createApiKey(vault, { org: flags.org, environment: flags.environment }))));
    });
  storeOption(apiKey.command('revoke').description('revoke an API key by its key id'))
    .requiredOption('--key-id <id>', 'the key_id printed when the key was created')
    .action(async (flags: StoreFlags & { keyId: string }) => {
      const [{ revokeApiKey }, wire] = await Promise.all([import('../core/api-keys.js'), import('../http/wire.js')]);
      const revoked = await withVault(flags, (vault) => revokeApiKey(vault, flags.keyId));
      if (!revoked) throw new VaultError('API_KEY_NOT_FOUND', `No API key with key id ${flags.keyId}`);
      printJson(wire.apiKeyRevokedToWire());
    });

  const linkedAccount = program.command('linked-account').description(commandDescription('linked-account'));
  accountOptions(storeOption(linkedAccount.command('create').description('create a linked account')))
    .option('--name <name>', 'display name (default: the id)')
    .option('--credential <key=value>', 'seed a default-app credential (repeatable)', credentialPair)
    .action(async (flags: StoreFlags & { org: string; environment: string; id: string; name?: string; credential?: Array<[string, string]> }) => {
      const [{ createLinkedAccount }, wire] = await Promise.all([import('../core/accounts.js'), import('../http/wire.js')]);
      const account = await withVault(flags, (vault) =>
        createLinkedAccount(
          vault,
          { org: flags.org, environment: flags.environment, accountId: flags.id },
          {
            ...(flags.name !== undefined ? { name: flags.name } : {}),
            ...(flags.credential !== undefined ? { credentials: Object.fromEntries(flags.credential) } : {}),
          },
        ),
      );
      printJson(wire.linkedAccountToWire(account));
    });

  storeOption(linkedAccount.command('list').description('list the linked accounts of an org and environment, one page at a time'))
    .requiredOption('--org <org>', 'org id')
    .addOption(new Option('--environment <environment>', 'environment').choices(['test', 'production']).default('test'))
    .option('--page <n>', 'page, from 1 (default 1)')
    .option('--limit <n>', 'accounts per page, 1 to 100 (default 10)')
    .action(async (flags: StoreFlags & { org: string; environment: string; page?: string; limit?: string }) => {
      const [{ listLinkedAccounts }, { pageQuery, limitQuery }, wire] = await Promise.all([
        import('../core/accounts.js'),
        import('../http/schemas.js'),
        import('../http/wire.js'),
      ]);
      // The same reading as GET /linked-account's query, before the store is opened: a bad value exits 2.
      const options = {
        ...(flags.page !== undefined ? { page: pageQuery.parse(flags.page) } : {}),
        ...(flags.limit !== undefined ? { limit: limitQuery.parse(flags.limit) } : {}),
      };
      const listed = await withVault(flags, (vault) => listLinkedAccounts(vault, { org: flags.org, environment: flags.environment }, options));
      printJson(wire.linkedAccountPageToWire(listed));
    });

  storeOption(
    linkedAccount
      .command('reindex')
      .description('walk the store and list every linked account that is not listed yet (after a rolling upgrade from a release without account indexes)'),
  ).action(async (flags: StoreFlags) => {
    const { reindexLinkedAccounts } = await import('../core/account-index.js');
    // Progress only for a person watching; the count goes to stdout as JSON.
    const progress = process.stderr.isTTY ? (accounts: number) => process.stderr.write(`credvault: reindexing: ${accounts} accounts so far\n`) : undefined;
    const { accounts } = await withVault(flags, (vault) => reindexLinkedAccounts(vault, progress === undefined ? {} : { onProgress: progress }));
    process.stderr.write(`credvault: walked the store; ${accounts} linked account${accounts === 1 ? '' : 's'} found, each now listed\n`);
    printJson({ accounts });
  });

  const sessionToken = program.command('session-token').description(commandDescription('session-token'));
  accountOptions(storeOption(sessionToken.command('create').description('issue a session token for a linked account')))
    .option('--ttl <seconds>', 'lifetime in seconds (default 86400)', positiveInt('ttl'))
    .action(async (flags: StoreFlags & { org: string; environment: string; id: string; ttl?: number }) => {
      const [{ issueSessionToken }, wire] = await Promise.all([import('../core/session-tokens.js'), import('../http/wire.js')]);
      const issued = await withVault(flags, (vault) =>
        issueSessionToken(
          vault,
          { org: flags.org, environment: flags.environment, accountId: flags.id },
          { forceRefresh: true, ...(flags.ttl !== undefined ? { ttlSeconds: flags.ttl } : {}) },
        ),
      );
      printJson(wire.sessionTokenToWire(issued));
    });

  const credentials = program.command('credentials').description(commandDescription('credentials'));
  accountOptions(storeOption(credentials.command('list').description("list a linked account's credentials")))
    .option('--reveal', 'also print the decrypted values')
    .action(async (flags: StoreFlags & { org: string; environment: string; id: string; reveal?: boolean }) => {
      const [{ listDefaultAppCredentials }, wire] = await Promise.all([import('../core/credentials.js'), import('../http/wire.js')]);
      const list = await withVault(flags, (vault) =>
        listDefaultAppCredentials(vault, { org: flags.org, environment: flags.environment, accountId: flags.id }, { reveal: flags.reveal === true }),
      );
      printJson(wire.credentialListToWire(list));
    });

  const keys = program.command('keys').description(commandDescription('keys'));
  keys
    .command('generate')
    .description('print a fresh key to put first in CREDVAULT_KEYS')
    .option('--id <id>', 'key id (1 to 32 of A-Z a-z 0-9 _ -)')
    .action((flags: { id?: string }) => {
      printJson(generateKey(flags.id));
    });

  keys
    .command('generate-kek')
    .description('create the AES-256 key-encryption key a PKCS#11 URI names on its token (never extractable)')
    .option('--kek <uri>', 'the PKCS#11 URI (default: $CREDVAULT_KEK)')
    .action(async (flags: { kek?: string }) => {
      const uri = (flags.kek ?? process.env['CREDVAULT_KEK'] ?? '').trim();
      if (uri === '') throw new VaultError('INVALID_CONFIGURATION', 'keys generate-kek needs a PKCS#11 URI: --kek or CREDVAULT_KEK');
      const { generatePkcs11Kek } = await import('../crypto/pkcs11.js');
      const { kekId } = await generatePkcs11Kek(uri);
      printJson({ kek_id: kekId });
    });

  storeOption(
    keys
      .command('rotate')
      .description("re-wrap every account's data key under the primary KEK and move older values onto data keys"),
  )
    .option('--batch-size <n>', 'records read per store call', positiveInt('batch-size'), 500)
    .option('--reseal', 'also give every account a new data key, re-seal its values under it and destroy the old one')
    .action(async (flags: StoreFlags & { batchSize: number; reseal?: boolean }) => {
      const wire = await import('../http/wire.js');
      const result = await withVault(flags, (vault) => rotateWithProgress(vault, flags.batchSize, flags.reseal === true));
      printJson(wire.rotationResultToWire(result));
    });

  program
    .command('openapi')
    .description(commandDescription('openapi'))
    .option('--base-path <path>', 'where the API is mounted', DEFAULT_BASE_PATH)
    .action(async (flags: { basePath: string }) => {
      const { openApiDocument } = await import('../http/openapi.js');
      printJson(openApiDocument({ basePath: flags.basePath }));
    });

  return program;
}

/** Rotation with a progress bar on stderr; a first quick pass counts the records for it. */
async function rotateWithProgress(vault: Vault, batchSize: number, reseal: boolean) {
  const [{ countRecords, rotateKeys }, { SingleBar, Presets }] = await Promise.all([import('../core/rotation.js'), import('cli-progress')]);
  const total = await countRecords(vault, { batchSize });
  const bar = new SingleBar(
    {
      format: 'credvault: rotating [{bar}] {value}/{total} records',
      stream: process.stderr,
      hideCursor: true,
      noTTYOutput: true,
      notTTYSchedule: 1000,
    },
    Presets.legacy,
  );
  bar.start(total, 0);
  try {
    return await rotateKeys(vault, {
      batchSize,
      reseal,
      // Records written during the rotation can push the count past the first pass's.
      onProgress: (walked) => bar.update(Math.min(walked, total)),
    });
  } finally {
    bar.update(total);
    bar.stop();
  }
}

/** `--frame-ancestors`: origins separated by commas or spaces. */
function originList(raw: string): string[] {
  const list = raw.split(/[\s,]+/).filter((item) => item !== '');
  if (list.length === 0) throw new InvalidArgumentError('frame-ancestors must name at least one origin.');
  return list;
}

/**
 * The default app and Connect settings of `--app-config` and the Connect flags. The file
 * holds the default app (`name`, `fields`) and optionally the page's `theme`.
 */
async function connectOptions(flags: ServeFlags): Promise<Pick<HandlerOptions, 'defaultApp' | 'connect'>> {
  const connect: NonNullable<HandlerOptions['connect']> = {};
  if (flags.connectPath !== undefined) connect.path = flags.connectPath;
  if (flags.frameAncestors !== undefined) connect.frameAncestors = flags.frameAncestors;
  if (flags.publicUrl !== undefined) connect.publicUrl = flags.publicUrl;
  if (flags.pageTokenTtl !== undefined) connect.tokenTtlSeconds = flags.pageTokenTtl;
  if (flags.appConfig === undefined) {
    if (Object.keys(connect).length > 0) {
      throw new VaultError('INVALID_CONFIGURATION', 'The Connect flags need --app-config (the default app and its fields)');
    }
    return {};
  }
  const { readFile } = await import('node:fs/promises');
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(flags.appConfig, 'utf8'));
  } catch (error) {
    const why = error instanceof SyntaxError ? 'is not valid JSON' : `cannot be read (${(error as { code?: string }).code ?? 'error'})`;
    throw new VaultError('INVALID_CONFIGURATION', `--app-config ${flags.appConfig} ${why}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new VaultError('INVALID_CONFIGURATION', `--app-config ${flags.appConfig} must hold a JSON object: {"name","fields"}`);
  }
  const { theme, ...defaultApp } = parsed as Record<string, unknown>;
  if (theme !== undefined) connect.theme = theme as NonNullable<typeof connect.theme>;
  return { defaultApp: defaultApp as unknown as NonNullable<HandlerOptions['defaultApp']>, connect };
}

/** The handler options the serve flags set; unset flags keep the handler's defaults. */
function serveHandlerOptions(flags: ServeFlags): HandlerOptions {
  return {
    basePath: flags.basePath,
    openApiPath: '/openapi.json',
    trustProxyHops: flags.trustProxyHops,
    failedAuthLimit: {
      ...(flags.maxAuthFailures !== undefined ? { maxFailures: flags.maxAuthFailures } : {}),
      ...(flags.authFailureWindow !== undefined ? { windowSeconds: flags.authFailureWindow } : {}),
      perApiKeyId: flags.keyIdLimit,
    },
  };
}

/**
 * A repeat of a stop signal this soon after the first is taken as the same request: under
 * `npm start`, Ctrl-C reaches the server from the terminal and again forwarded by npm.
 * A repeat after it forces the exit.
 */
const REPEAT_SIGNAL_GRACE_MS = 1000;

/**
 * Express when the app has it; otherwise the built-in `fetch` binding on `node:http`, so
 * `npm install credvault` alone can serve. Said on stderr, since it is a choice made for the user.
 */
function defaultFramework(): Framework {
  try {
    import.meta.resolve('express');
    return 'express';
  } catch {
    process.stderr.write("credvault: express is not installed; serving with Node's own HTTP server (--framework fetch)\n");
    return 'fetch';
  }
}

async function serve(flags: ServeFlags): Promise<void> {
  const vault = await openCliVault(flags);
  const [{ createApiServer, drainServer }, { anyApiKeyCreated }] = await Promise.all([import('./server.js'), import('../core/api-keys.js')]);
  let server: Awaited<ReturnType<typeof createApiServer>>;
  try {
    server = await createApiServer(vault, flags.framework ?? defaultFramework(), {
      ...serveHandlerOptions(flags),
      ...(await connectOptions(flags)),
      ...(flags.logRequests === true ? { logRequests: (line: string) => process.stderr.write(`${line}\n`) } : {}),
    });
  } catch (error) {
    // A framework that is not installed, say: the open store must not keep the process alive.
    await vault.close().catch(() => undefined);
    throw error;
  }
  const host = flags.host.includes(':') ? `[${flags.host}]` : flags.host;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(flags.port, flags.host, () => resolve());
    });
  } catch (error) {
    await vault.close().catch(() => undefined);
    const code = error instanceof Error && 'code' in error ? String(error.code) : 'unknown error';
    throw new VaultError('INTERNAL', `Cannot listen on ${host}:${flags.port} (${code})`);
  }
  let stopSignalAt: number | undefined;
  const onStopSignal = () => {
    if (stopSignalAt === undefined) {
      stopSignalAt = Date.now();
      shutdown();
    } else if (Date.now() - stopSignalAt >= REPEAT_SIGNAL_GRACE_MS) {
      process.exit(1);
    }
  };
  const shutdown = () => {
    // Finish in-flight requests (bounded, see drainServer), then close the store, then exit 0 (SIGTERM and SIGINT alike).
    void drainServer(server, { log: (line) => process.stderr.write(`${line}\n`) })
      .then(() => vault.close())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  };
  process.on('SIGTERM', onStopSignal);
  process.on('SIGINT', onStopSignal);
  const address = server.address();
  const actualPort = typeof address === 'object' && address !== null ? address.port : flags.port;
  process.stdout.write(`credvault listening on http://${host}:${actualPort}\n`);
  if (flags.appConfig !== undefined && flags.publicUrl === undefined && !['127.0.0.1', 'localhost', '::1'].includes(flags.host)) {
    process.stderr.write("credvault: connect URLs are built from each request's Host header; behind a proxy or load balancer, set --public-url\n");
  }
  // Only a hint: a store hiccup here must not leave a running server reported as failed.
  if (!(await anyApiKeyCreated(vault).catch(() => true))) {
    process.stderr.write(
      'credvault: this store has no API key yet; create one with: npm run --silent credvault -- api-key create --org <your-org>\n',
    );
  }
}

/**
 * Runs one command line (without `node` and the script) and resolves to the exit code: 0,
 * 2 for a usage error (one line on stderr), 1 for a failed operation. `serve` resolves once
 * listening and keeps the process alive.
 *
 * @example
 * ```ts
 * process.exitCode = await main(['keys', 'generate']);
 * ```
 */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.exitCode === 0) return 0;
      // Commander has already printed its own errors; ours are printed here.
      if (error.code === 'credvault.usage') process.stderr.write(`credvault: ${error.message}\n`);
      return USAGE;
    }
    if (isVaultError(error)) {
      process.stderr.write(`credvault: ${error.message}\n`);
      return error.code === 'VALIDATION_ERROR' || error.code === 'INVALID_CONFIGURATION' ? USAGE : FAILURE;
    }
    const name = error instanceof Error ? error.name : 'error';
    process.stderr.write(`credvault: unexpected ${name}\n`);
    return FAILURE;
  }
}
