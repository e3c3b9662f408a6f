/**
 * The Connect page: its settings, its files and the headers it is served with. The page is
 * static (HTML, CSS, one module script and the `credvault/client` build); everything about
 * the account comes from the API, with the page token the URL's fragment carries.
 */
import { readFileSync } from 'node:fs';
import { VaultError } from '../errors.js';

/** Where and how the Connect page is served. */
export interface ConnectOptions {
  /** The page's path (outside the API's base path). Default `/connect`. */
  path?: string;
  /** Lifetime of the page token a connect URL carries, in seconds (never beyond its session token). Default 900. */
  tokenTtlSeconds?: number;
  /**
   * Origins allowed to embed the page in a frame (CSP `frame-ancestors`), such as
   * `https://app.example.com`, or `'self'`. Default: none, the page cannot be framed.
   */
  frameAncestors?: readonly string[];
  /**
   * The server's public origin (and path prefix, behind a proxy that adds one), such as
   * `https://vault.example.com`: connect URLs start with it. Default: `http://` and the
   * request's `Host` header (`https://` when a trusted proxy says `X-Forwarded-Proto: https`).
   */
  publicUrl?: string;
  /** The page's colours, as `#rgb` or `#rrggbb`. */
  theme?: ConnectTheme;
}

/** The page's colours. */
export interface ConnectTheme {
  /** Buttons, focus rings and links. Default `#2563eb`. */
  accent?: string;
  /** The page behind the card. Default `#f4f5f7`. */
  background?: string;
  /** Body text. Default `#1f2933`. */
  text?: string;
}

/** Connect settings, checked and with defaults filled in. */
export interface ConnectSettings {
  path: string;
  tokenTtlSeconds: number;
  frameAncestors: readonly string[];
  publicUrl: string | undefined;
  theme: Required<ConnectTheme>;
}

export const DEFAULT_CONNECT_PATH = '/connect';
export const DEFAULT_PAGE_TOKEN_TTL_SECONDS = 900;
const DEFAULT_THEME: Required<ConnectTheme> = { accent: '#2563eb', background: '#f4f5f7', text: '#1f2933' };

const HEX_COLOUR = /^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/;
// Path segments of unreserved characters only: the path goes into the page's HTML and CSP untouched.
const PAGE_PATH = /^(?:\/[A-Za-z0-9._~-]+)+$/;
// A CSP source expression of the kinds that make sense here: an origin (wildcard subdomain allowed) or 'self'.
const FRAME_SOURCE = /^(?:'self'|https?:\/\/(?:\*\.)?[A-Za-z0-9.-]+(?::\d{1,5})?)$/;

const invalid = (message: string) => new VaultError('INVALID_CONFIGURATION', message);

/**
 * Checks Connect options and fills in their defaults.
 *
 * @throws VaultError `INVALID_CONFIGURATION`, naming the option
 * @example
 * ```ts
 * settleConnect({ frameAncestors: ['https://app.example.com'] }).path; // '/connect'
 * ```
 */
export function settleConnect(options: ConnectOptions = {}): ConnectSettings {
  const path = options.path ?? DEFAULT_CONNECT_PATH;
  if (!PAGE_PATH.test(path) || path.split('/').some((segment) => segment === '.' || segment === '..')) {
    throw invalid('connect.path must be a path such as /connect: segments of A-Z a-z 0-9 . _ ~ -, no trailing slash');
  }
  const tokenTtlSeconds = options.tokenTtlSeconds ?? DEFAULT_PAGE_TOKEN_TTL_SECONDS;
  if (!Number.isInteger(tokenTtlSeconds) || tokenTtlSeconds < 1 || tokenTtlSeconds > 86_400) {
    throw invalid('connect.tokenTtlSeconds must be a whole number of seconds from 1 to 86400');
  }
  const frameAncestors = [...(options.frameAncestors ?? [])];
  for (const source of frameAncestors) {
    if (!FRAME_SOURCE.test(source)) {
      throw invalid(`connect.frameAncestors: '${source}' is not an origin such as https://app.example.com (or 'self')`);
    }
  }
  let publicUrl: string | undefined;
  if (options.publicUrl !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(options.publicUrl);
    } catch {
      url = undefined;
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '' || url.username !== '') {
      throw invalid('connect.publicUrl must be an http or https URL such as https://vault.example.com, without query or fragment');
    }
    publicUrl = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
  }
  const theme = { ...DEFAULT_THEME };
  for (const name of ['accent', 'background', 'text'] as const) {
    const colour = options.theme?.[name];
    if (colour === undefined) continue;
    if (!HEX_COLOUR.test(colour)) throw invalid(`connect.theme.${name} must be a colour such as #2563eb`);
    theme[name] = colour;
  }
  return { path, tokenTtlSeconds, frameAncestors, publicUrl, theme };
}

/** A file of the page, ready to send. */
export interface PageFile {
  contentType: string;
  body: string;
}

const ASSETS = new URL('./assets/', import.meta.url);

/** The page's static files, read once. */
const STATIC: Record<string, { file: string; contentType: string }> = {
  'connect.js': { file: 'connect.js', contentType: 'text/javascript; charset=utf-8' },
  'connect.css': { file: 'connect.css', contentType: 'text/css; charset=utf-8' },
  // Served so the browser's own favicon request does not end in a 404 on the console.
  'icon.svg': { file: 'icon.svg', contentType: 'image/svg+xml; charset=utf-8' },
};

const cache = new Map<string, string>();

function readOnce(key: string, read: () => string): string {
  let text = cache.get(key);
  if (text === undefined) {
    text = read();
    cache.set(key, text);
  }
  return text;
}

/**
 * The browser build of `credvault/client`: beside this module once built; from a checkout
 * run through TypeScript (tests), the one `npm run build` wrote.
 */
function clientBuild(): string {
  for (const candidate of ['../client/index.js', '../../dist/src/client/index.js']) {
    try {
      return readFileSync(new URL(candidate, import.meta.url), 'utf8');
    } catch {
      // Try the next place.
    }
  }
  throw new VaultError('INTERNAL', 'The credvault/client build is missing; run npm run build');
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

/**
 * How the page reaches its files and the API: relative references, so that they still
 * resolve behind a proxy that serves the vault under a path prefix (`publicUrl`).
 * From `/a/connect`, the files are `connect/assets/...` and the API `../api/v2/public`.
 */
export function pageReferences(pagePath: string, apiBasePath: string): { assets: string; api: string } {
  const segments = pagePath.split('/').slice(1);
  const up = '../'.repeat(segments.length - 1);
  return { assets: `${segments[segments.length - 1] as string}/assets`, api: `${up === '' ? './' : up}${apiBasePath.slice(1)}` };
}

/**
 * The file at `rest` under the page's path (`''` for the page itself), or `undefined`.
 * The page names the API's base path and its own asset paths; nothing else varies.
 */
export function pageFile(settings: ConnectSettings, apiBasePath: string, rest: string): PageFile | undefined {
  if (rest === '') {
    // Built once per page path and base path: the page is the same for every request.
    const body = readOnce(`connect.html\u0000${settings.path}\u0000${apiBasePath}`, () => {
      const html = readFileSync(new URL('connect.html', ASSETS), 'utf8');
      const references = pageReferences(settings.path, apiBasePath);
      // Replacement functions: a replacement string would expand `$&` and its kind.
      const assets = escapeHtml(references.assets);
      const api = escapeHtml(references.api);
      return html.replaceAll('{{ASSETS}}', () => assets).replaceAll('{{API}}', () => api);
    });
    return { contentType: 'text/html; charset=utf-8', body };
  }
  if (rest === '/assets/client.js') return { contentType: 'text/javascript; charset=utf-8', body: readOnce('client.js', clientBuild) };
  if (rest === '/assets/theme.css') {
    const { accent, background, text } = settings.theme;
    return {
      contentType: 'text/css; charset=utf-8',
      body: `:root {\n  --cv-accent: ${accent};\n  --cv-background: ${background};\n  --cv-text: ${text};\n}\n`,
    };
  }
  const match = /^\/assets\/([a-z.]+)$/.exec(rest);
  const name = match?.[1];
  const entry = name !== undefined && Object.hasOwn(STATIC, name) ? STATIC[name] : undefined;
  if (entry === undefined) return undefined;
  return { contentType: entry.contentType, body: readOnce(entry.file, () => readFileSync(new URL(entry.file, ASSETS), 'utf8')) };
}

/**
 * Headers for every file of the page: a CSP allowing nothing but this origin's own files
 * (no inline script or style), framing only by the configured origins, no referrer, no caching.
 */
export function pageHeaders(settings: ConnectSettings, contentType: string): Record<string, string> {
  const frameAncestors = settings.frameAncestors.length === 0 ? "'none'" : settings.frameAncestors.join(' ');
  const headers: Record<string, string> = {
    'content-type': contentType,
    'content-security-policy': [
      "default-src 'self'",
      "script-src 'self'",
      "style-src 'self'",
      "connect-src 'self'",
      "img-src 'self'",
      "object-src 'none'",
      "base-uri 'none'",
      "form-action 'self'",
      `frame-ancestors ${frameAncestors}`,
    ].join('; '),
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  };
  // Older browsers ignore frame-ancestors; they get the strictest X-Frame-Options that fits.
  if (settings.frameAncestors.length === 0) headers['x-frame-options'] = 'DENY';
  return headers;
}
