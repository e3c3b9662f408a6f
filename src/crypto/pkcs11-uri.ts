/**
 * PKCS#11 URIs (RFC 7512) as credvault reads them: which module, which token, which key,
 * and where the PIN comes from. Parsing is strict: a URI that credvault would not honour
 * exactly is refused with one line saying why, never with the PIN in it.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { VaultError } from '../errors.js';

/**
 * Where the user PIN comes from. credvault's meaning of `pin-source` (RFC 7512 leaves it to
 * the application):
 * - `env:NAME`: the environment variable `NAME` (read when the provider opens);
 * - `file:/absolute/path` (or `file:///absolute/path`): the file's content, one trailing
 *   newline dropped (read when the provider opens).
 *
 * `pin-value` carries the PIN in the URI itself: meant for tests. Its `value` is not
 * enumerable, so `JSON.stringify` and `util.inspect` of a parsed URI do not show it.
 */
export type Pkcs11PinSource =
  | { readonly kind: 'env'; readonly name: string }
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'value'; readonly value: string };

/** A vendor-specific (`x-`) attribute: kept as written (still percent-encoded), ignored by credvault. */
export interface Pkcs11VendorAttribute {
  readonly name: string;
  readonly encodedValue: string;
  readonly part: 'path' | 'query';
}

/** A parsed PKCS#11 URI. Every text is percent-decoded UTF-8; `id` is bytes. */
export interface Pkcs11Uri {
  /** The token's label (`token=`), matched after the label's blank padding is dropped. */
  readonly token: string;
  /** The key's CKA_LABEL (`object=`). */
  readonly object: string;
  /** The key's CKA_ID (`id=`), when given: it must match too. */
  readonly id?: Buffer;
  /** `type=`: only `secret-key` is accepted. */
  readonly type?: 'secret-key';
  /** Further token filters (`manufacturer=`, `serial=`, `model=`), matched like the label. */
  readonly manufacturer?: string;
  readonly serial?: string;
  readonly model?: string;
  /** `module-path=`: the PKCS#11 module to load, an absolute path. */
  readonly modulePath: string;
  /** From `pin-source=` or `pin-value=`; absent when the URI gives neither. */
  readonly pin?: Pkcs11PinSource;
  readonly vendor: readonly Pkcs11VendorAttribute[];
}

const MAX_URI_LENGTH = 4096;
const MAX_PIN_FILE_BYTES = 256;

/** Path attributes credvault honours. */
const PATH_ATTRIBUTES = new Set(['token', 'object', 'id', 'type', 'manufacturer', 'serial', 'model']);
/** RFC 7512 attributes credvault does not honour: refused rather than silently ignored. */
const UNSUPPORTED = new Map<string, string>([
  ['library-manufacturer', 'the module is chosen by module-path'],
  ['library-description', 'the module is chosen by module-path'],
  ['library-version', 'the module is chosen by module-path'],
  ['slot-manufacturer', 'the token is found by token= (and manufacturer=, serial=, model=)'],
  ['slot-description', 'the token is found by token= (and manufacturer=, serial=, model=)'],
  ['slot-id', 'the token is found by token= (and manufacturer=, serial=, model=)'],
  ['module-name', 'give module-path, the absolute path of the module'],
]);
const QUERY_ATTRIBUTES = new Set(['module-path', 'pin-source', 'pin-value']);

// RFC 7512 section 2.3: pk11-pchar and pk11-qchar, percent-encodings checked separately.
const PATH_CHARS = /^[A-Za-z0-9\-._~:[\]@!$'()*+,=&%]*$/;
const QUERY_CHARS = /^[A-Za-z0-9\-._~:[\]@!$'()*+,=/?|%]*$/;
const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;
const VENDOR_NAME = /^x-[A-Za-z0-9\-._~]+$/;
const STANDARD_NAME = /^[a-z][a-z-]{0,31}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function invalid(message: string): VaultError {
  return new VaultError('INVALID_CONFIGURATION', `Invalid PKCS#11 URI: ${message}`);
}

/** The bytes of a percent-encoded value (`+` is a plus, not a space). */
function percentDecode(encoded: string): Buffer {
  const bytes: number[] = [];
  for (let at = 0; at < encoded.length; at += 1) {
    const char = encoded.charCodeAt(at);
    if (char === 0x25) {
      bytes.push(Number.parseInt(encoded.slice(at + 1, at + 3), 16));
      at += 2;
    } else {
      bytes.push(char);
    }
  }
  return Buffer.from(bytes);
}

function decodeText(name: string, bytes: Buffer): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw invalid(`attribute '${name}' is not UTF-8 once percent-decoded`);
  }
}

interface RawAttribute {
  readonly name: string;
  readonly encoded: string;
}

/** Splits one component into attributes; messages name attributes, never values. */
function splitComponent(component: string, separator: string, part: 'path' | 'query'): RawAttribute[] {
  if (component === '') return [];
  return component.split(separator).map((entry, index) => {
    const equals = entry.indexOf('=');
    // A malformed entry may be a mistyped PIN: described by its position, never echoed.
    if (equals <= 0) throw invalid(`${part} attribute ${index + 1} is not name=value`);
    const name = entry.slice(0, equals);
    if (!VENDOR_NAME.test(name) && !STANDARD_NAME.test(name)) {
      throw invalid(`${part} attribute ${index + 1} has a malformed name (names are lower-case, vendor ones start with x-)`);
    }
    return { name, encoded: entry.slice(equals + 1) };
  });
}

function checkValue(name: string, encoded: string, part: 'path' | 'query'): void {
  if (!(part === 'path' ? PATH_CHARS : QUERY_CHARS).test(encoded)) throw invalid(`attribute '${name}' holds a character that must be percent-encoded`);
  if (BAD_PERCENT.test(encoded)) throw invalid(`attribute '${name}' has a '%' not followed by two hex digits`);
  if (encoded === '') throw invalid(`attribute '${name}' is empty`);
}

function parsePinSource(text: string): Pkcs11PinSource {
  if (text.startsWith('env:')) {
    const name = text.slice('env:'.length);
    if (!ENV_NAME.test(name)) throw invalid('pin-source env: must name an environment variable (A-Z a-z 0-9 _, not starting with a digit)');
    return { kind: 'env', name };
  }
  if (text.startsWith('file:')) {
    let path = text.slice('file:'.length);
    // file:///p and file://localhost/p are the same file as file:/p.
    if (path.startsWith('//')) {
      const slash = path.indexOf('/', 2);
      const host = slash < 0 ? path.slice(2) : path.slice(2, slash);
      if (host !== '' && host !== 'localhost') throw invalid('pin-source file: must be a local file (file:/absolute/path)');
      path = slash < 0 ? '' : path.slice(slash);
    }
    if (!isAbsolute(path)) throw invalid('pin-source file: must give an absolute path (file:/absolute/path)');
    return { kind: 'file', path };
  }
  // Never echoed: a PIN pasted here by mistake must not reach a log.
  throw invalid('pin-source must be env:NAME or file:/absolute/path');
}

function pinValue(value: string): Pkcs11PinSource {
  const source = { kind: 'value' } as { kind: 'value'; value: string };
  Object.defineProperty(source, 'value', { value, enumerable: false });
  return source;
}

/**
 * Parses a PKCS#11 URI (RFC 7512). Path attributes are split by `;`, query attributes by
 * `&`, values percent-decoded (UTF-8 text; `id` as bytes). Refused, with
 * `VaultError('INVALID_CONFIGURATION')`: a duplicate attribute, an unknown one (other than
 * `x-` vendor attributes), one credvault does not honour (`slot-id`, `library-*`,
 * `module-name`, ...), `type` other than `secret-key`, no `token` or `object`, no absolute
 * `module-path`, `pin-source` and `pin-value` together. See {@link Pkcs11PinSource} for
 * what `pin-source` means here. Messages never hold the PIN.
 *
 * @example
 * ```ts
 * const uri = parsePkcs11Uri(
 *   'pkcs11:token=credvault;object=kek-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:CREDVAULT_PKCS11_PIN',
 * );
 * uri.object; // 'kek-1'
 * ```
 */
export function parsePkcs11Uri(text: string): Pkcs11Uri {
  if (typeof text !== 'string') throw invalid('not a string');
  if (text.length > MAX_URI_LENGTH) throw invalid(`longer than ${MAX_URI_LENGTH} characters`);
  if (!/^pkcs11:/i.test(text)) throw invalid("it must start with 'pkcs11:'");
  const rest = text.slice('pkcs11:'.length);
  if (rest.includes('#')) throw invalid("a fragment ('#') is not allowed");
  const question = rest.indexOf('?');
  const path = splitComponent(question < 0 ? rest : rest.slice(0, question), ';', 'path');
  const query = question < 0 ? [] : splitComponent(rest.slice(question + 1), '&', 'query');

  const seen = new Set<string>();
  const values = new Map<string, Buffer>();
  const vendor: Pkcs11VendorAttribute[] = [];
  for (const [part, attributes, known] of [
    ['path', path, PATH_ATTRIBUTES],
    ['query', query, QUERY_ATTRIBUTES],
  ] as const) {
    for (const { name, encoded } of attributes) {
      if (seen.has(name)) throw invalid(`attribute '${name}' appears more than once`);
      seen.add(name);
      if (name.startsWith('x-')) {
        checkValue(name, encoded, part);
        vendor.push({ name, encodedValue: encoded, part });
        continue;
      }
      const unsupported = UNSUPPORTED.get(name);
      if (unsupported !== undefined) throw invalid(`attribute '${name}' is not supported: ${unsupported}`);
      if (!known.has(name)) {
        const elsewhere = part === 'path' ? QUERY_ATTRIBUTES.has(name) : PATH_ATTRIBUTES.has(name);
        throw invalid(elsewhere ? `attribute '${name}' belongs in the ${part === 'path' ? 'query (after ?)' : 'path (before ?)'}` : `unknown attribute '${name}'`);
      }
      checkValue(name, encoded, part);
      values.set(name, percentDecode(encoded));
    }
  }

  const textOf = (name: string): string | undefined => {
    const bytes = values.get(name);
    return bytes === undefined ? undefined : decodeText(name, bytes);
  };
  const token = textOf('token');
  const object = textOf('object');
  const type = textOf('type');
  const modulePath = textOf('module-path');
  const pinSourceText = textOf('pin-source');
  const pinValueText = textOf('pin-value');
  if (token === undefined) throw invalid('no token= (the token label)');
  if (object === undefined) throw invalid('no object= (the key label)');
  if (type !== undefined && type !== 'secret-key') throw invalid(`type must be secret-key (got '${type}')`);
  if (modulePath === undefined) throw invalid('no module-path= (the absolute path of the PKCS#11 module)');
  if (!isAbsolute(modulePath)) throw invalid(`module-path must be an absolute path (got '${modulePath}')`);
  if (pinSourceText !== undefined && pinValueText !== undefined) throw invalid('give pin-source or pin-value, not both');

  const uri: Pkcs11Uri = { token, object, modulePath, vendor };
  const id = values.get('id');
  const manufacturer = textOf('manufacturer');
  const serial = textOf('serial');
  const model = textOf('model');
  const pin = pinSourceText !== undefined ? parsePinSource(pinSourceText) : pinValueText !== undefined ? pinValue(pinValueText) : undefined;
  return {
    ...uri,
    ...(id === undefined ? {} : { id }),
    ...(type === undefined ? {} : { type }),
    ...(manufacturer === undefined ? {} : { manufacturer }),
    ...(serial === undefined ? {} : { serial }),
    ...(model === undefined ? {} : { model }),
    ...(pin === undefined ? {} : { pin }),
  };
}

/** Percent-encodes UTF-8 text, keeping the unreserved characters and `keep`. */
function percentEncode(text: string, keep: RegExp): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const char = String.fromCharCode(byte);
    out += byte < 0x80 && (/[A-Za-z0-9\-._~]/.test(char) || keep.test(char)) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * The URI of another key on the same token, through the same module and PIN source: for
 * rotating between two token objects. `id` is dropped (it named the old key) and so is a
 * `pin-value` (the result never holds a PIN; give it a `pin-source`, or add the PIN yourself).
 *
 * @example
 * ```ts
 * const next = formatPkcs11Uri(parsePkcs11Uri(process.env.CREDVAULT_KEK!), { object: 'kek-2' });
 * // pkcs11:token=credvault;object=kek-2?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:CREDVAULT_PKCS11_PIN
 * ```
 */
export function formatPkcs11Uri(uri: Pkcs11Uri, change: { object: string }): string {
  if (typeof change.object !== 'string' || change.object === '') throw invalid('object must be a non-empty label');
  const inPath = (text: string) => percentEncode(text, /[:@!$'()*+,]/);
  const inQuery = (text: string) => percentEncode(text, /[:@!$'()*+,/?|]/);
  const path = [`token=${inPath(uri.token)}`];
  if (uri.manufacturer !== undefined) path.push(`manufacturer=${inPath(uri.manufacturer)}`);
  if (uri.serial !== undefined) path.push(`serial=${inPath(uri.serial)}`);
  if (uri.model !== undefined) path.push(`model=${inPath(uri.model)}`);
  path.push(`object=${inPath(change.object)}`);
  if (uri.type !== undefined) path.push(`type=${uri.type}`);
  const query = [`module-path=${inQuery(uri.modulePath)}`];
  if (uri.pin?.kind === 'env') query.push(`pin-source=${inQuery(`env:${uri.pin.name}`)}`);
  if (uri.pin?.kind === 'file') query.push(`pin-source=${inQuery(`file:${uri.pin.path}`)}`);
  for (const attribute of uri.vendor) (attribute.part === 'path' ? path : query).push(`${attribute.name}=${attribute.encodedValue}`);
  return `pkcs11:${path.join(';')}?${query.join('&')}`;
}

/**
 * The PIN `uri` points at, read now: from the environment (`env`, default `process.env`),
 * the file, or `pin-value`. Throws `INVALID_CONFIGURATION` when there is none, the variable
 * is unset or empty, or the file cannot be read or is not a short PIN file. Messages name
 * the variable or the file, never what they hold.
 *
 * @example
 * ```ts
 * const pin = resolvePkcs11Pin(parsePkcs11Uri(text));
 * ```
 */
export function resolvePkcs11Pin(uri: Pkcs11Uri, env: NodeJS.ProcessEnv = process.env): string {
  const source = uri.pin;
  if (source === undefined) throw new VaultError('INVALID_CONFIGURATION', 'The PKCS#11 URI gives no PIN: add pin-source=env:NAME or pin-source=file:/path');
  if (source.kind === 'value') return source.value;
  if (source.kind === 'env') {
    const pin = env[source.name];
    if (pin === undefined || pin === '') throw new VaultError('INVALID_CONFIGURATION', `The PKCS#11 PIN variable ${source.name} is not set`);
    return pin;
  }
  let content: Buffer;
  try {
    content = readFileSync(source.path);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new VaultError('INVALID_CONFIGURATION', `The PKCS#11 PIN file ${source.path} could not be read${typeof code === 'string' ? ` (${code})` : ''}`);
  }
  if (content.length > MAX_PIN_FILE_BYTES) throw new VaultError('INVALID_CONFIGURATION', `The PKCS#11 PIN file ${source.path} is longer than ${MAX_PIN_FILE_BYTES} bytes`);
  let pin: string;
  try {
    pin = utf8.decode(content).replace(/\r?\n$/, '');
  } catch {
    throw new VaultError('INVALID_CONFIGURATION', `The PKCS#11 PIN file ${source.path} is not UTF-8`);
  }
  if (pin === '') throw new VaultError('INVALID_CONFIGURATION', `The PKCS#11 PIN file ${source.path} is empty`);
  return pin;
}
