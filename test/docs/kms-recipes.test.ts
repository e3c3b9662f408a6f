/**
 * The README's KMS key-provider recipes (section "Key-encryption keys in a KMS"): each block
 * marked `<!-- recipe: NAME -->` type-checks with the TypeScript compiler API under the
 * project's strict options, `credvault` resolving to the local source and the SDKs to their
 * installed types. The Vault Transit recipe is also run, as the README shows it, against an
 * in-process Transit server (AES-256-GCM with associated data, `vault:v1:` ciphertexts).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLinkedAccount,
  createVault,
  generateKey,
  getDefaultAppCredential,
  VaultError,
  wrapAdditionalData,
  type KeyProvider,
  type Vault,
  type WrapContext,
  type WrappedKey,
} from '../../src/index.js';
import { rejection as failure } from '../helpers/rejection.js';
import { createTypeChecker, recipeBlock } from './readme-code.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const RECIPES = ['aws-kms', 'gcp-kms', 'vault-transit'] as const;
type Recipe = (typeof RECIPES)[number];
const SECTION = '## Key-encryption keys in a KMS';

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const blocks = new Map<Recipe, string>();
for (const name of RECIPES) {
  try {
    blocks.set(name, recipeBlock(readme, name));
  } catch {
    // Reported by the test that checks each marker.
  }
}
const blockOf = (name: Recipe): string => blocks.get(name) ?? recipeBlock(readme, name);

// ---------------------------------------------------------------------------------------
// Type-checking

/** Where each block is checked: a file that exists only in memory, inside the project. */
const virtualFile = (name: string) => path.join(ROOT, 'test', 'docs', `readme-recipe-${name}.ts`);

const checker = createTypeChecker({ credvault: ['./src/index.ts'] });
const typeCheck = (sources: ReadonlyMap<string, string>) => checker.check(sources);

describe('the README KMS recipes', () => {
  it('has each recipe marker, each followed by a non-empty ts block, in its own section', () => {
    for (const name of RECIPES) expect(() => recipeBlock(readme, name), name).not.toThrow();
    const section = readme.indexOf(`\n${SECTION}\n`);
    const security = readme.indexOf('\n## Security model\n');
    expect(section).toBeGreaterThan(0);
    // The new section sits right before "Security model", and holds every recipe.
    expect(readme.slice(section + 1, security).match(/^## /gm)).toHaveLength(1);
    for (const name of RECIPES) {
      const at = readme.indexOf(`<!-- recipe: ${name} -->`);
      expect(at > section && at < security, name).toBe(true);
    }
    expect(readme).toContain('- [Key-encryption keys in a KMS](#key-encryption-keys-in-a-kms)');
  });

  it('the block reader refuses a missing marker, a missing fence and an empty block', () => {
    expect(() => recipeBlock('# x\n```ts\nconst a = 1;\n```\n', 'aws-kms')).toThrow(/no <!-- recipe: aws-kms --> marker/);
    expect(() => recipeBlock('<!-- recipe: aws-kms -->\n\n```ts\nconst a = 1;\n```\n', 'aws-kms')).toThrow(/not followed/);
    expect(() => recipeBlock('<!-- recipe: aws-kms -->\n```ts\n\n  \n```\n', 'aws-kms')).toThrow(/empty/);
    expect(() => recipeBlock('<!-- recipe: aws-kms -->\n```ts\nconst a = 1;\n', 'aws-kms')).toThrow(/not closed/);
    expect(recipeBlock('<!-- recipe: aws-kms -->\n```ts\nconst a = 1;\n```\n', 'aws-kms')).toBe('const a = 1;\n');
  });

  it('each recipe imports credvault from the package root only, and its SDK', () => {
    const imports = (code: string) => [...code.matchAll(/^import .* from '([^']+)';$/gm)].map((match) => match[1]);
    expect(imports(blockOf('aws-kms'))).toEqual(['@aws-sdk/client-kms', 'credvault']);
    expect(imports(blockOf('gcp-kms'))).toEqual(['@google-cloud/kms', 'credvault']);
    expect(imports(blockOf('vault-transit'))).toEqual(['credvault']);
  });

  it('every recipe type-checks under the strict project options with no diagnostic', () => {
    const sources = new Map(RECIPES.map((name) => [virtualFile(name), blockOf(name)]));
    expect(typeCheck(sources)).toEqual([]);
    // `credvault` was the local source, not a build in dist/, and the SDKs their own types.
    const files = checker.program()?.getSourceFiles().map((file) => path.relative(ROOT, file.fileName)) ?? [];
    expect(files).toContain(path.join('src', 'index.ts'));
    expect(files.filter((file) => file.startsWith(`dist${path.sep}`))).toEqual([]);
    expect(files.some((file) => file.includes(path.join('node_modules', '@aws-sdk', 'client-kms', '')))).toBe(true);
    expect(files.some((file) => file.includes(path.join('node_modules', '@google-cloud', 'kms', '')))).toBe(true);
  }, 120_000);

  it('the type-check fails a recipe that calls what does not exist (the check has teeth)', () => {
    // A KMS client method, a Cloud KMS client method, a credvault export, a createVault option.
    const mutations: Array<[file: string, original: string, mutated: string]> = [
      ['aws-kms-bad', blockOf('aws-kms'), blockOf('aws-kms').replaceAll('client.send(', 'client.sendCommand(')],
      ['gcp-kms-bad', blockOf('gcp-kms'), blockOf('gcp-kms').replace('client.decrypt(', 'client.decrypts(')],
      ['vault-transit-bad', blockOf('vault-transit'), blockOf('vault-transit').replaceAll('wrapAdditionalData', 'wrapAssociatedData')],
      ['createvault-bad', blockOf('aws-kms'), blockOf('aws-kms').replace('  kek: awsKmsKeyProvider(', '  kms: awsKmsKeyProvider(')],
    ];
    for (const [file, original, mutated] of mutations) expect(mutated, `${file} changed nothing`).not.toBe(original);
    const broken = new Map(mutations.map(([file, , mutated]) => [virtualFile(file), mutated]));
    const diagnostics = typeCheck(broken);
    expect(diagnostics.some((line) => line.includes('readme-recipe-aws-kms-bad.ts') && line.includes("'sendCommand' does not exist"))).toBe(true);
    expect(diagnostics.some((line) => line.includes('readme-recipe-gcp-kms-bad.ts') && line.includes("'decrypts' does not exist"))).toBe(true);
    expect(diagnostics.some((line) => line.includes('readme-recipe-vault-transit-bad.ts') && line.includes('wrapAssociatedData'))).toBe(true);
    expect(diagnostics.some((line) => line.includes('readme-recipe-createvault-bad.ts') && line.includes("'kms' does not exist"))).toBe(true);
  }, 120_000);
});

// ---------------------------------------------------------------------------------------
// A Transit server, as far as the recipe uses one

interface TransitRequest {
  path: string;
  token: string | undefined;
  body: Record<string, unknown>;
}

/**
 * POST /v1/transit/encrypt/:name and /v1/transit/decrypt/:name as Vault answers them for an
 * `aes256-gcm96` key: base64 plaintext and associated data, `vault:v1:` + base64(nonce,
 * ciphertext, tag), `{"errors": [...]}` with 400 for a ciphertext that does not open and 403
 * for a wrong token. `mode` makes it answer 503 (sealed), 429 (rate limited) or not at all.
 */
class FakeTransit {
  readonly token = `hvs.${randomBytes(18).toString('base64url')}`;
  readonly keys = new Map<string, Buffer>([['credvault', randomBytes(32)]]);
  readonly requests: TransitRequest[] = [];
  mode: 'ok' | 'sealed' | 'throttled' | 'hang' = 'ok';
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  get address(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((request, response) => void this.handle(request, response));
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', resolve);
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const answer = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    const errors = (status: number, ...messages: string[]) => answer(status, { errors: messages });
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    } catch {
      body = {};
    }
    const url = request.url ?? '';
    const token = request.headers['x-vault-token'];
    this.requests.push({ path: url, token: typeof token === 'string' ? token : undefined, body });
    if (this.mode === 'hang') return; // the socket stays open until stop()
    if (this.mode === 'sealed') return errors(503, 'Vault is sealed');
    if (this.mode === 'throttled') return errors(429, 'request path "transit/encrypt": rate limit quota exceeded');
    const match = /^\/v1\/transit\/(encrypt|decrypt)\/([^/?]+)$/.exec(url);
    if (match === null) return errors(404, `no handler for route "${url}"`);
    if (request.method !== 'POST' && request.method !== 'PUT') return errors(405, 'unsupported operation');
    if (token !== this.token) return errors(403, 'permission denied');
    const key = this.keys.get(decodeURIComponent(match[2] ?? ''));
    if (key === undefined) return errors(400, 'encryption key not found');
    const base64 = (value: unknown): Buffer | undefined => {
      if (value === undefined || value === '') return Buffer.alloc(0);
      if (typeof value !== 'string') return undefined;
      const bytes = Buffer.from(value, 'base64');
      return bytes.toString('base64') === value ? bytes : undefined; // Go's StdEncoding is strict
    };
    const associated = base64(body['associated_data']);
    if (associated === undefined) return errors(400, 'illegal base64 data at input byte 0');
    if (match[1] === 'encrypt') {
      const plaintext = base64(body['plaintext']);
      if (plaintext === undefined || body['plaintext'] === undefined) return errors(400, 'missing plaintext to encrypt');
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      cipher.setAAD(associated);
      const sealed = Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
      return answer(200, { request_id: randomBytes(8).toString('hex'), data: { ciphertext: `vault:v1:${sealed.toString('base64')}`, key_version: 1 } });
    }
    const ciphertext = body['ciphertext'];
    if (typeof ciphertext !== 'string' || ciphertext === '') return errors(400, 'missing ciphertext to decrypt');
    const parts = /^vault:v(\d+):(.*)$/s.exec(ciphertext);
    if (parts === null) return errors(400, 'invalid ciphertext: no prefix');
    if (Number(parts[1]) !== 1) return errors(400, 'invalid ciphertext: version is too new');
    const sealed = base64(parts[2]);
    if (sealed === undefined) return errors(400, 'invalid ciphertext: could not decode base64');
    if (sealed.length < 12 + 16) return errors(400, 'invalid ciphertext length');
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
      decipher.setAAD(associated);
      decipher.setAuthTag(sealed.subarray(sealed.length - 16));
      const plaintext = Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()]);
      return answer(200, { request_id: randomBytes(8).toString('hex'), data: { plaintext: plaintext.toString('base64') } });
    } catch {
      return errors(400, 'cipher: message authentication failed');
    }
  }
}

// ---------------------------------------------------------------------------------------
// Running the Transit recipe

interface TransitRecipe {
  transitKeyProvider(options: {
    address: string;
    token: () => string;
    keys: Record<string, string>;
    primary: string;
    mount?: string;
    namespace?: string;
    timeoutMs?: number;
  }): KeyProvider;
  /** The README's own vault, opened when the block is imported. */
  vault: Vault;
}

/**
 * The README block, transpiled as it stands and imported from a temporary file. Only two
 * things are added: `credvault` points at the local source (as in the type-check), and
 * the block's `vault` is exported so the test can use and close it.
 */
async function loadTransitRecipe(dir: string): Promise<TransitRecipe> {
  const source = `${blockOf('vault-transit')}\nexport { vault };\n`;
  const local = pathToFileURL(path.join(ROOT, 'src', 'index.ts')).href;
  const toLocal: ts.TransformerFactory<ts.SourceFile> = (context) => (file) =>
    ts.visitEachChild(
      file,
      (node) =>
        ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier) && node.moduleSpecifier.text === 'credvault'
          ? context.factory.updateImportDeclaration(node, node.modifiers, node.importClause, context.factory.createStringLiteral(local), node.attributes)
          : node,
      context,
    );
  const { outputText, diagnostics } = ts.transpileModule(source, {
    fileName: 'vault-transit.ts',
    reportDiagnostics: true,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
    transformers: { before: [toLocal] },
  });
  if (diagnostics !== undefined && diagnostics.length > 0) {
    throw new Error(`transpiling the recipe failed: ${diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' ')).join('; ')}`);
  }
  expect(outputText).toContain(local);
  expect(outputText).not.toMatch(/from 'credvault'/);
  const file = path.join(dir, 'vault-transit.mjs');
  writeFileSync(file, outputText);
  return (await import(/* @vite-ignore */ pathToFileURL(file).href)) as TransitRecipe;
}

const CONTEXT: WrapContext = { org: 'acme', environment: 'test', accountId: 'cust-1', dekId: '0123456789abcdef' };

/** The error `promise` rejects with (failing when it resolves). */
describe('the Vault Transit recipe, run against a Transit server', () => {
  const transit = new FakeTransit();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'credvault-kms-recipe-'));
  const seen: VaultError[] = [];
  const dataKeys: Buffer[] = [];
  const saved = new Map<string, string | undefined>();
  let recipe: TransitRecipe;
  let provider: KeyProvider;

  /** Whether an error shows the token or any key bytes (the Transit keys', the data keys'), in any encoding. */
  const showsSecret = (error: VaultError): boolean => {
    const shown = `${error.message}\n${inspect(error, { depth: 10 })}\n${JSON.stringify(error.details ?? null)}`;
    const keys = [...transit.keys.values(), ...dataKeys].flatMap((key) => [key.toString('hex'), key.toString('base64'), key.toString('base64url')]);
    return [transit.token, transit.token.slice(4, 16), ...keys].some((secret) => shown.includes(secret));
  };
  const expectFailure = async (promise: Promise<unknown>, code: 'DECRYPTION_FAILED' | 'STORE_UNAVAILABLE'): Promise<VaultError> => {
    const error = await failure(promise);
    seen.push(error);
    expect(error.code, error.message).toBe(code);
    expect(showsSecret(error), `${error.message} shows a secret`).toBe(false);
    return error;
  };
  const newDataKey = () => {
    const key = randomBytes(32);
    dataKeys.push(key);
    return key;
  };

  beforeAll(async () => {
    await transit.start();
    // What the README's usage reads: a memory store, a keyring, and this Transit server.
    for (const name of ['CREDVAULT_STORE', 'CREDVAULT_KEYS', 'VAULT_ADDR', 'VAULT_TOKEN']) saved.set(name, process.env[name]);
    process.env['CREDVAULT_STORE'] = 'memory:';
    process.env['CREDVAULT_KEYS'] = generateKey('k1').entry;
    process.env['VAULT_ADDR'] = transit.address;
    process.env['VAULT_TOKEN'] = transit.token;
    recipe = await loadTransitRecipe(dir);
    provider = recipe.transitKeyProvider({ address: transit.address, token: () => transit.token, keys: { t1: 'credvault' }, primary: 't1', timeoutMs: 500 });
  }, 60_000);

  afterAll(async () => {
    await recipe?.vault.close();
    await transit.stop();
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens the README vault through Transit and keeps a credential', async () => {
    // Opening it wrapped a KEK canary through Transit.
    expect(transit.requests.some((request) => request.path === '/v1/transit/encrypt/credvault')).toBe(true);
    const principal = { org: 'acme', environment: 'test', accountId: 'cust-readme' };
    await createLinkedAccount(recipe.vault, principal, { credentials: { api_key: 'sk_live_readme' } });
    expect(await getDefaultAppCredential(recipe.vault, principal, 'api_key')).toBe('sk_live_readme');
    // Another vault on the same store (left open: closing it would close the shared store)
    // unwraps the account's data key through Transit.
    const reader = await createVault({
      store: recipe.vault.store,
      keys: recipe.vault.keyring,
      kek: recipe.transitKeyProvider({ address: transit.address, token: () => transit.token, keys: { 'transit-1': 'credvault' }, primary: 'transit-1' }),
    });
    const before = transit.requests.length;
    expect(await getDefaultAppCredential(reader, principal, 'api_key')).toBe('sk_live_readme');
    expect(transit.requests.slice(before).some((request) => request.path === '/v1/transit/decrypt/credvault')).toBe(true);
  });

  it('wraps under the primary, binding the whole context as associated data, and unwraps the key back', async () => {
    const dek = newDataKey();
    const before = transit.requests.length;
    const wrapped = await provider.wrap(dek, CONTEXT);
    expect(wrapped.kekId).toBe('transit:t1');
    expect(provider.primaryKekId).toBe('transit:t1');
    expect(provider.hasKek('transit:t1')).toBe(true);
    expect(provider.hasKek('transit:t2')).toBe(false);
    expect(wrapped.wrapped).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(Buffer.from(wrapped.wrapped, 'base64url').toString()).toMatch(/^vault:v1:/);
    const [sent] = transit.requests.slice(before);
    expect(sent?.path).toBe('/v1/transit/encrypt/credvault');
    expect(sent?.token).toBe(transit.token);
    expect(sent?.body['plaintext']).toBe(dek.toString('base64'));
    expect(sent?.body['associated_data']).toBe(wrapAdditionalData('transit:t1', CONTEXT).toString('base64'));
    const unwrapped = await provider.unwrap(wrapped, CONTEXT);
    expect(unwrapped.equals(dek)).toBe(true);
    expect(transit.requests.at(-1)?.body['associated_data']).toBe(wrapAdditionalData('transit:t1', CONTEXT).toString('base64'));
  });

  it('refuses a KEK id past 64 characters, or a primary that is not one of the keys', async () => {
    const options = { address: transit.address, token: () => transit.token };
    const refused = (make: () => KeyProvider) => failure(Promise.resolve().then(make));
    expect((await refused(() => recipe.transitKeyProvider({ ...options, keys: { ['k'.repeat(57)]: 'credvault' }, primary: 'k'.repeat(57) }))).code).toBe('INVALID_CONFIGURATION');
    expect((await refused(() => recipe.transitKeyProvider({ ...options, keys: { 'a/b': 'credvault' }, primary: 'a/b' }))).code).toBe('INVALID_CONFIGURATION');
    expect((await refused(() => recipe.transitKeyProvider({ ...options, keys: { t1: 'credvault' }, primary: 't2' }))).code).toBe('INVALID_CONFIGURATION');
    expect(recipe.transitKeyProvider({ ...options, keys: { ['k'.repeat(56)]: 'credvault' }, primary: 'k'.repeat(56) }).primaryKekId).toHaveLength(64);
  });

  it('fails DECRYPTION_FAILED for another context, another KEK id, tampered bytes or a KEK it does not have', async () => {
    const wrapped = await provider.wrap(newDataKey(), CONTEXT);
    for (const field of ['org', 'environment', 'accountId', 'dekId'] as const) {
      await expectFailure(provider.unwrap(wrapped, { ...CONTEXT, [field]: `${CONTEXT[field]}x` }), 'DECRYPTION_FAILED');
    }
    // The same Transit key under another id: the KEK id is bound too.
    const twoIds = recipe.transitKeyProvider({ address: transit.address, token: () => transit.token, keys: { t1: 'credvault', t2: 'credvault' }, primary: 't2' });
    await expectFailure(twoIds.unwrap({ kekId: 'transit:t2', wrapped: wrapped.wrapped }, CONTEXT), 'DECRYPTION_FAILED');
    // A flipped byte of the sealed part, and a ciphertext that is not Transit's.
    const text = Buffer.from(wrapped.wrapped, 'base64url').toString();
    const sealed = Buffer.from(text.slice('vault:v1:'.length), 'base64');
    sealed[20] = (sealed[20] ?? 0) ^ 1;
    const tampered: WrappedKey = { kekId: wrapped.kekId, wrapped: Buffer.from(`vault:v1:${sealed.toString('base64')}`).toString('base64url') };
    await expectFailure(provider.unwrap(tampered, CONTEXT), 'DECRYPTION_FAILED');
    await expectFailure(provider.unwrap({ kekId: wrapped.kekId, wrapped: Buffer.from('vault:v9:AAAA').toString('base64url') }, CONTEXT), 'DECRYPTION_FAILED');
    const before = transit.requests.length;
    await expectFailure(provider.unwrap({ kekId: wrapped.kekId, wrapped: `${wrapped.wrapped}!` }, CONTEXT), 'DECRYPTION_FAILED');
    await expectFailure(provider.unwrap({ kekId: 'transit:other', wrapped: wrapped.wrapped }, CONTEXT), 'DECRYPTION_FAILED');
    await expectFailure(provider.unwrap({ kekId: 'local:k1', wrapped: wrapped.wrapped }, CONTEXT), 'DECRYPTION_FAILED');
    expect(transit.requests.length).toBe(before); // refused without asking Transit
    // Every cause, one message.
    expect(new Set(seen.filter((error) => error.code === 'DECRYPTION_FAILED').map((error) => error.message)).size).toBe(1);
  });

  it('fails STORE_UNAVAILABLE, never DECRYPTION_FAILED, when Transit is sealed, throttling, refusing the token, hanging or down', async () => {
    const dek = newDataKey();
    const wrapped = await provider.wrap(dek, CONTEXT);
    const expectUnavailable = async (why: RegExp) => {
      expect((await expectFailure(provider.wrap(newDataKey(), CONTEXT), 'STORE_UNAVAILABLE')).message).toMatch(why);
      expect((await expectFailure(provider.unwrap(wrapped, CONTEXT), 'STORE_UNAVAILABLE')).message).toMatch(why);
    };
    try {
      transit.mode = 'sealed';
      await expectUnavailable(/answered 503/);
      // A vault does not start on a provider it cannot reach (its KEK canary must unwrap).
      const kek = recipe.transitKeyProvider({ address: transit.address, token: () => transit.token, keys: { 'transit-1': 'credvault' }, primary: 'transit-1' });
      await expectFailure(createVault({ store: recipe.vault.store, keys: recipe.vault.keyring, kek }), 'STORE_UNAVAILABLE');
      transit.mode = 'throttled';
      await expectUnavailable(/answered 429/);
      transit.mode = 'ok';
      const wrongToken = recipe.transitKeyProvider({ address: transit.address, token: () => 'hvs.expired', keys: { t1: 'credvault' }, primary: 't1' });
      expect((await expectFailure(wrongToken.unwrap(wrapped, CONTEXT), 'STORE_UNAVAILABLE')).message).toMatch(/answered 403/);
      transit.mode = 'hang';
      const started = Date.now();
      await expectUnavailable(/TimeoutError/);
      expect(Date.now() - started).toBeLessThan(5_000);
      transit.mode = 'ok';
      await transit.stop();
      // A kept-alive connection the server dropped, or a refused new one.
      await expectUnavailable(/call failed: (ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET)$/);
    } finally {
      transit.mode = 'ok';
      await transit.start(); // same port: the provider recovers by itself
    }
    expect((await provider.unwrap(wrapped, CONTEXT)).equals(dek)).toBe(true);
  }, 30_000);

  it('puts no key bytes and no token into any error', () => {
    // Each error was checked as it came; this is every one of them again, all keys known now.
    expect(seen.length).toBeGreaterThan(0);
    for (const error of seen) expect(showsSecret(error), error.message).toBe(false);
  });
});
