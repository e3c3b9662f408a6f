/**
 * The Connect page in a real Chromium, against a real `credvault serve` on each binding.
 *
 * One server per binding (SQLite in a temp dir, the app config below, `--log-requests`), one
 * browser for the file, each page alone in its context (pages are reused between tests from
 * about:blank). What the page stored is read back through the library from the same database. Every page is watched throughout: console errors,
 * uncaught exceptions, CSP violations (event and console), the origin of every request, and
 * every token (session and page) against every request URL and the server's output.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest, type Server as HttpServer } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, ConsoleMessage, Frame, Page, Request } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createVault, listDefaultAppCredentials, type Vault } from '../../src/index.js';
import {
  assertBuilt,
  CREDENTIAL_PATH,
  killAll,
  makeTempDir,
  removeDir,
  request,
  runJson,
  sleep,
  startServer,
  type Server,
} from '../cli/helpers.js';
import { chromiumSuite, launchChromium } from './chromium.js';

const FRAMEWORKS = ['express', 'koa', 'fastify', 'fetch'] as const;
const API = '/api/v2/public';
const ORG = 'acme';
const SCREENSHOT = fileURLToPath(new URL('../../docs/connect-page.png', import.meta.url));

const APP_CONFIG = {
  name: 'Acme CRM',
  fields: [
    { name: 'api_key', type: 'password', required: true, label: 'API key' },
    {
      name: 'region',
      type: 'select',
      options: [
        { label: 'EU', value: 'eu' },
        { label: 'US', value: 'us' },
      ],
    },
    { name: 'account_email', type: 'email', label: 'Account email' },
  ],
  theme: { accent: '#0f766e' },
};

/** Runs in every frame before the page's own scripts: keeps each CSP violation event on window. */
const CSP_RECORDER = `(() => {
  const seen = [];
  Object.defineProperty(globalThis, '__credvaultCspViolations', { value: seen });
  globalThis.addEventListener('securitypolicyviolation', (event) => {
    seen.push(event.violatedDirective + ' blocked ' + event.blockedURI + ' at ' + event.sourceFile + ':' + event.lineNumber);
  }, true);
})();`;

/** What one page did, recorded from the moment it opened. */
interface Watch {
  page: Page;
  requests: Request[];
  consoleErrors: ConsoleMessage[];
  cspMessages: string[];
  pageErrors: string[];
}

/** The expiry scenario's session token lifetime, in seconds. */
const EXPIRING_TTL = 4;

interface Link {
  url: string;
  pageToken: string;
  expiresIn: number;
}

/** The expiry scenario, begun in a binding's beforeAll. */
interface Expiring {
  account: string;
  /** A time after the session token was issued. */
  issuedBy: number;
  early: Link;
  late: Link;
  open: Watch;
}

/** Chromium's own line for a fetch answered with an error status: expected where a test provokes one. */
const FAILED_LOAD = /^Failed to load resource: the server responded with a status of (\d{3})\b/;

const suite = chromiumSuite();

suite.describe('Connect page in Chromium', () => {
  let browser: Browser;
  /**
   * Pages, each alone in its context, waiting on about:blank to be used again: a new page
   * costs a renderer process (about half a second on two cores), a navigation far less.
   */
  const idle: Page[] = [];
  /** Pages in use, with how to stop watching them. */
  type Held = { page: Page; unwatch: () => void };
  const heldByTest: Held[] = [];

  beforeAll(async () => {
    assertBuilt();
    browser = await launchChromium();
  });

  /** Stops watching the pages and puts them back on about:blank (the old document, token and all, is gone). */
  async function release(held: Held[]): Promise<void> {
    await Promise.all(
      held.splice(0).map(async ({ page, unwatch }) => {
        unwatch();
        try {
          await page.goto('about:blank');
          idle.push(page);
        } catch {
          await page.context().close().catch(() => undefined);
        }
      }),
    );
  }

  afterEach(() => release(heldByTest));

  afterAll(async () => {
    await browser?.close();
    killAll();
  });

  /**
   * A page alone in its context, with the CSP recorder and every listener attached; released
   * after the test, or, when `hold` is given, by whoever holds that list.
   */
  async function openPage(hold: Held[] = heldByTest): Promise<Watch> {
    let page = idle.pop();
    if (page === undefined) {
      const context = await browser.newContext();
      await context.addInitScript({ content: CSP_RECORDER });
      page = await context.newPage();
    }
    const watch: Watch = { page, requests: [], consoleErrors: [], cspMessages: [], pageErrors: [] };
    const onRequest = (req: Request) => watch.requests.push(req);
    const onConsole = (message: ConsoleMessage) => {
      if (/content security policy/i.test(message.text())) watch.cspMessages.push(message.text());
      if (message.type() === 'error') watch.consoleErrors.push(message);
    };
    const onPageError = (error: Error) => watch.pageErrors.push(`${error.name}: ${error.message}`);
    page.on('request', onRequest);
    page.on('console', onConsole);
    page.on('pageerror', onPageError);
    const watched = page;
    hold.push({
      page,
      unwatch: () => {
        watched.off('request', onRequest);
        watched.off('console', onConsole);
        watched.off('pageerror', onPageError);
      },
    });
    return watch;
  }

  const stateOf = (page: Page | Frame): Promise<string | null> => page.locator('body').getAttribute('data-state');

  async function waitForState(page: Page | Frame, state: string): Promise<void> {
    try {
      await page.locator(`body[data-state="${state}"]`).waitFor({ state: 'attached', timeout: 10_000 });
    } catch (error) {
      const formError = await page.locator('#form-error').textContent().catch(() => null);
      throw new Error(`page never reached state ${state}: it is ${await stateOf(page).catch(() => '?')}, #form-error ${JSON.stringify(formError)}`, {
        cause: error,
      });
    }
  }

  describe.each(FRAMEWORKS)('served by credvault serve --framework %s', (framework) => {
    let dir: string | undefined;
    let store: string[];
    let appConfig: string;
    let server: Server;
    let vault: Vault | undefined;
    /** Every session and page token issued so far: none may leak. */
    const tokens: string[] = [];
    /** Extra servers a test started, on the same store (their output is checked too). */
    const extraServers: Server[] = [];
    /** Pages that live as long as this binding's servers. */
    const bindingPages: Held[] = [];
    /** The expiry scenario, begun before the tests so that its wait overlaps them (or how it failed). */
    let expiring: Expiring | { failed: unknown };

    beforeAll(async () => {
      dir = await makeTempDir();
      const db = path.join(dir, 'v.db');
      store = ['--store', `sqlite:${db}`];
      appConfig = path.join(dir, 'app.json');
      await writeFile(appConfig, JSON.stringify(APP_CONFIG));
      server = await startServer([...store, '--framework', framework, '--app-config', appConfig, '--log-requests']);
      await runJson(['api-key', 'create', '--org', ORG, ...store]);
      vault = await createVault({ store: `sqlite:${db}`, log: () => undefined });
      expiring = await beginExpiring().catch((error: unknown) => ({ failed: error }));
    });

    afterAll(async () => {
      await release(bindingPages);
      await vault?.close();
      for (const running of [server, ...extraServers]) {
        if (running === undefined) continue;
        running.child.kill('SIGTERM');
        await running.exited().catch(() => running.child.kill('SIGKILL'));
      }
      await removeDir(dir);
    });

    const cli = <T = Record<string, unknown>>(...args: string[]) => runJson<T>([...args, ...store]);

    async function linkedAccount(id: string): Promise<void> {
      await cli('linked-account', 'create', '--org', ORG, '--id', id);
    }

    async function sessionToken(id: string, ttlSeconds?: number): Promise<{ token: string; expires_in: number }> {
      const ttl = ttlSeconds === undefined ? [] : ['--ttl', String(ttlSeconds)];
      const issued = await cli<{ token: string; expires_in: number }>('session-token', 'create', '--org', ORG, '--id', id, ...ttl);
      tokens.push(issued.token);
      return issued;
    }

    /** POST /connect-url with a session token: the page's URL and the page token in its fragment. */
    async function connectLink(sessionTokenValue: string, on: Server = server): Promise<Link> {
      const answer = await request(`${on.url}${API}/connect-url`, {
        method: 'POST',
        headers: { authorization: `Bearer ${sessionTokenValue}` },
      });
      expect(answer.status, answer.text).toBe(200);
      const { url, expires_in } = answer.body as { url: string; expires_in: number };
      const parsed = new URL(url);
      expect(parsed.origin).toBe(on.url);
      expect(parsed.pathname).toBe('/connect');
      expect(parsed.search).toBe('');
      const pageToken = new URLSearchParams(parsed.hash.slice(1)).get('token');
      expect(pageToken).toMatch(/^cvs_/);
      expect(pageToken).not.toBe(sessionTokenValue);
      tokens.push(pageToken as string);
      return { url, pageToken: pageToken as string, expiresIn: expires_in };
    }

    async function revoke(token: string): Promise<void> {
      const answer = await request(`${server.url}${API}/session-token/revoke`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      expect(answer.status, answer.text).toBe(200);
      expect(answer.body).toEqual({ success: true, revoked_count: 1 });
    }

    /** The account's credentials as stored, decrypted through the library. */
    async function stored(id: string): Promise<Record<string, string>> {
      const list = await listDefaultAppCredentials(vault as Vault, { org: ORG, environment: 'test', accountId: id }, { reveal: true });
      return Object.fromEntries(list.map((item) => [item.key, item.value as string]));
    }

    const putsOf = (watch: Watch): Request[] => watch.requests.filter((req) => req.method() === 'PUT');

    /**
     * What must hold of every page: no uncaught exception, no console error other than
     * Chromium's line for a response with one of `allowStatuses` from the API, no CSP
     * violation, requests only to the vault (`vault`, default this binding's server) and
     * `others`, no token in a request URL or Referer, and no Referer on the page's own
     * subresource requests.
     */
    async function expectClean(watch: Watch, options: { allowStatuses?: number[]; vault?: string; others?: string[] } = {}): Promise<void> {
      const allowed = new Set(options.allowStatuses ?? []);
      const vaultOrigin = options.vault ?? server.url;
      const origins = new Set([vaultOrigin, ...(options.others ?? [])]);
      expect(watch.pageErrors, 'uncaught exceptions on the page').toEqual([]);
      const unexpected = watch.consoleErrors
        .filter((message) => {
          const status = FAILED_LOAD.exec(message.text())?.[1];
          const at = message.location().url;
          return !(status !== undefined && allowed.has(Number(status)) && at.includes(`${API}/`));
        })
        .map((message) => `${message.text()} (${message.location().url})`);
      expect(unexpected, 'console errors').toEqual([]);
      expect(watch.cspMessages, 'console messages about the Content Security Policy').toEqual([]);
      for (const frame of watch.page.frames()) {
        const violations = await frame.evaluate('globalThis.__credvaultCspViolations ?? []').catch(() => []);
        expect(violations, `securitypolicyviolation events in ${frame.url()}`).toEqual([]);
      }
      for (const req of watch.requests) {
        const url = req.url();
        expect(origins.has(new URL(url).origin), `request to another origin: ${req.method()} ${url}`).toBe(true);
        // A fragment, were one reported, is never sent: what counts is what precedes it.
        const sent = url.split('#')[0] as string;
        const headers = await req.allHeaders().catch(() => req.headers());
        for (const token of tokens) {
          expect(sent.includes(token), `a token in the request URL ${sent}`).toBe(false);
          expect((headers['referer'] ?? '').includes(token), `a token in the Referer of ${sent}`).toBe(false);
        }
        if (req.resourceType() !== 'document' && new URL(url).origin === vaultOrigin) {
          expect(headers['referer'], `a Referer on ${req.method()} ${sent} (Referrer-Policy: no-referrer)`).toBeUndefined();
        }
      }
    }

    /** No token issued so far appears anywhere in the output of this binding's servers. */
    function expectNoTokenInServerOutput(): void {
      for (const running of [server, ...extraServers]) {
        const output = running.stdout() + running.stderr();
        for (const token of tokens) expect(output.includes(token), 'a token in the server output').toBe(false);
      }
    }

    /** The server's --log-requests lines (method, path?query, status), without its other lines. */
    const requestLog = (running: Server = server): string[] =>
      running
        .stderr()
        .split('\n')
        .filter((line) => /^credvault: [A-Z]+ \//.test(line));

    /** Whether the server logged `METHOD path status` (a duration may follow). */
    const logged = (running: Server, method: string, target: string, status: number): boolean =>
      requestLog(running).some((line) => line === `credvault: ${method} ${target} ${status}` || line.startsWith(`credvault: ${method} ${target} ${status} `));

    it('shows the app, stores what the form submits on Enter, and never shows a stored value again', async () => {
      const account = 'cust-1';
      await linkedAccount(account);
      const { token } = await sessionToken(account);
      const link = await connectLink(token);
      const watch = await openPage();
      const { page } = watch;

      const response = await page.goto(link.url);
      expect(response?.status()).toBe(200);
      await waitForState(page, 'ready');
      expect((await page.locator('#app-name').textContent())?.trim()).toBe('Acme CRM');
      expect(page.url(), 'the fragment is dropped once read').toBe(`${server.url}/connect`);

      // Every control is named by its label.
      for (const field of APP_CONFIG.fields) {
        await expect(page.locator(`label[for="field-${field.name}"]`).count()).resolves.toBe(1);
        await expect(page.locator(`#field-${field.name}`).count()).resolves.toBe(1);
      }
      const apiKey = page.getByLabel('API key');
      await expect(apiKey.getAttribute('id')).resolves.toBe('field-api_key');
      await expect(apiKey.getAttribute('type')).resolves.toBe('password');
      const email = page.getByLabel('Account email');
      await expect(email.getAttribute('id')).resolves.toBe('field-account_email');
      await expect(email.getAttribute('type')).resolves.toBe('email');
      await expect(page.locator('#field-region').evaluate((element) => element.tagName)).resolves.toBe('SELECT');
      await expect(page.locator('#set-api_key').count(), 'nothing is stored yet').resolves.toBe(0);

      // The page token lives in memory only.
      const html = await page.content();
      expect(html.includes(link.pageToken)).toBe(false);
      const persisted = await page.evaluate('JSON.stringify([document.cookie, { ...localStorage }, { ...sessionStorage }])');
      expect(String(persisted).includes(link.pageToken)).toBe(false);

      const secret = `sk_live_${framework}_Zq8vN3xT`;
      await apiKey.fill(secret);
      await page.locator('#field-region').selectOption('us');
      await email.fill('ops@acme.test');
      if (framework === 'express' && process.env.CREDVAULT_SCREENSHOT === '1') {
        await mkdir(path.dirname(SCREENSHOT), { recursive: true });
        await page.screenshot({ path: SCREENSHOT });
      }
      await email.press('Enter');
      await waitForState(page, 'done');
      await expect(page.locator('#success').isVisible()).resolves.toBe(true);

      expect(await stored(account)).toEqual({ api_key: secret, region: 'us', account_email: 'ops@acme.test' });
      const puts = putsOf(watch);
      expect(puts.map((req) => req.url()).sort()).toEqual(
        ['account_email', 'api_key', 'region'].map((key) => `${server.url}${CREDENTIAL_PATH}/${key}`),
      );
      for (const put of puts) {
        const headers = await put.allHeaders();
        expect(headers['authorization'], 'the page writes with its page token').toBe(`Bearer ${link.pageToken}`);
      }
      await expectClean(watch);

      // A fresh link: every stored field is marked, no stored value is anywhere in the page.
      const again = await connectLink(token);
      const second = await openPage();
      await second.page.goto(again.url);
      await waitForState(second.page, 'ready');
      for (const key of ['api_key', 'region', 'account_email']) {
        await expect(second.page.locator(`#set-${key}`).count(), `#set-${key}`).resolves.toBe(1);
      }
      const reopened = await second.page.content();
      for (const value of [secret, 'ops@acme.test', again.pageToken, token]) expect(reopened.includes(value), `${value} in the page`).toBe(false);
      await expect(second.page.locator('#field-api_key').inputValue()).resolves.toBe('');
      await expect(second.page.locator('#field-account_email').inputValue()).resolves.toBe('');

      // The required api_key is already set, so a partial update goes through: only the field given is written.
      await second.page.locator('#field-region').selectOption('eu');
      await second.page.locator('#field-account_email').press('Enter');
      await waitForState(second.page, 'done');
      expect(putsOf(second).map((req) => req.url())).toEqual([`${server.url}${CREDENTIAL_PATH}/region`]);
      expect(await stored(account)).toEqual({ api_key: secret, region: 'eu', account_email: 'ops@acme.test' });
      await expectClean(second);

      expect(logged(server, 'GET', '/connect', 200), requestLog().join('\n')).toBe(true);
      expect(logged(server, 'PUT', `${CREDENTIAL_PATH}/api_key`, 200), requestLog().join('\n')).toBe(true);
      expectNoTokenInServerOutput();
    });

    it('serves the page with a strict CSP, no referrer and no caching', async () => {
      await linkedAccount('cust-headers');
      const { token } = await sessionToken('cust-headers');
      const link = await connectLink(token);
      const watch = await openPage();
      const response = await watch.page.goto(link.url);
      await waitForState(watch.page, 'ready');
      const headers = response?.headers() ?? {};
      const csp = headers['content-security-policy'] ?? '';
      const directives = new Map(
        csp
          .split(';')
          .map((part) => part.trim().split(/\s+/))
          .filter((words) => words[0] !== '')
          .map((words) => [(words[0] as string).toLowerCase(), words.slice(1)]),
      );
      expect(directives.get('default-src'), csp).toEqual(["'self'"]);
      const scripts = directives.get('script-src') ?? directives.get('default-src') ?? [];
      expect(scripts, csp).not.toContain("'unsafe-inline'");
      expect(scripts, csp).not.toContain("'unsafe-eval'");
      expect(directives.get('frame-ancestors'), `${csp}: framing is refused by default`).toEqual(["'none'"]);
      expect(headers['referrer-policy']).toBe('no-referrer');
      expect(headers['cache-control']).toMatch(/\bno-store\b/);
      await expect(watch.page.locator('script:not([src])').count(), 'inline scripts').resolves.toBe(0);
      await expectClean(watch);
      expectNoTokenInServerOutput();
    });

    /**
     * The expiry scenario's first half, run in beforeAll: a session token living EXPIRING_TTL
     * seconds, two connect links from it, and the first link's page opened and filled in while
     * its token is valid. The test proper runs last, once both tokens have expired.
     */
    async function beginExpiring(): Promise<Expiring> {
      const account = 'cust-expired';
      await linkedAccount(account);
      const issued = await sessionToken(account, EXPIRING_TTL);
      const issuedBy = Date.now();
      const early = await connectLink(issued.token);
      const late = await connectLink(issued.token);
      const open = await openPage(bindingPages);
      await open.page.goto(early.url);
      await waitForState(open.page, 'ready');
      await open.page.getByLabel('API key').fill('sk_too_late');
      return { account, issuedBy, early, late, open };
    }

    it('says the link was revoked, at load and at submit, and stores nothing; no token at all fails too', async () => {
      const account = 'cust-revoked';
      await linkedAccount(account);
      const { token } = await sessionToken(account);
      const first = await connectLink(token);
      const second = await connectLink(token);

      const open = await openPage();
      await open.page.goto(first.url);
      await waitForState(open.page, 'ready');
      await open.page.getByLabel('API key').fill('sk_revoked');
      await revoke(token);

      const revoked = await openPage();
      await revoked.page.goto(second.url);
      await waitForState(revoked.page, 'failed');
      await expect(revoked.page.locator('#form-error').isVisible()).resolves.toBe(true);
      await expect(revoked.page.locator('#form-error').textContent()).resolves.toMatch(/expired|revoked/i);

      await open.page.getByLabel('API key').press('Enter');
      await open.page.locator('#form-error').filter({ hasText: /expired|revoked/i }).waitFor({ state: 'visible', timeout: 10_000 });
      expect(await stateOf(open.page)).not.toBe('done');
      await expect(open.page.locator('#success').isVisible()).resolves.toBe(false);
      expect(await stored(account)).toEqual({});

      // Opened without a fragment, the page fails at once and says why.
      const bare = await openPage();
      await bare.page.goto(`${server.url}/connect`);
      await waitForState(bare.page, 'failed');
      await expect(bare.page.locator('#form-error').isVisible()).resolves.toBe(true);
      expect((await bare.page.locator('#form-error').textContent())?.trim()).not.toBe('');

      await expectClean(open, { allowStatuses: [401] });
      await expectClean(revoked, { allowStatuses: [401] });
      await expectClean(bare);
      expectNoTokenInServerOutput();
    });

    it('keeps an empty required field from being sent, the server refuses bad values too, and the page shows why', async () => {
      const account = 'cust-required';
      await linkedAccount(account);
      const { token } = await sessionToken(account);
      const link = await connectLink(token);
      const watch = await openPage();
      const { page } = watch;
      await page.goto(link.url);
      await waitForState(page, 'ready');

      await page.locator('#field-region').selectOption('eu');
      await page.getByLabel('Account email').fill('ops@acme.test');
      await page.getByLabel('Account email').press('Enter');
      const fieldError = page.locator('#error-api_key');
      await fieldError.waitFor({ state: 'visible', timeout: 10_000 });
      expect((await fieldError.textContent())?.trim()).not.toBe('');
      await expect(page.locator('#field-api_key').getAttribute('aria-describedby')).resolves.toMatch(/(^|\s)error-api_key(\s|$)/);
      // Any request the submit sent would have been reported by now; give it a moment anyway.
      await sleep(300);
      expect(putsOf(watch).map((req) => req.url()), 'requests sent for a form with an empty required field').toEqual([]);
      expect(await stateOf(page)).toBe('ready');
      expect(await stored(account)).toEqual({});

      // From the page's own origin, with the page token: the server checks values against the fields as well.
      const put = (key: string, value: string) =>
        page.evaluate(
          async ({ url, pageToken, body }) => {
            const answer = await fetch(url, {
              method: 'PUT',
              headers: { authorization: `Bearer ${pageToken}`, 'content-type': 'application/json' },
              body,
            });
            return { status: answer.status, body: (await answer.json()) as { error?: string } };
          },
          { url: `${CREDENTIAL_PATH}/${key}`, pageToken: link.pageToken, body: JSON.stringify({ value }) },
        );
      for (const [key, value] of [
        ['api_key', ''],
        ['region', 'mars'],
        ['account_email', 'not an address'],
        ['undeclared', 'x'],
      ] as const) {
        const answer = await put(key, value);
        expect({ key, status: answer.status, error: answer.body.error }).toEqual({ key, status: 400, error: 'VALIDATION_ERROR' });
      }
      expect(await stored(account)).toEqual({});

      // A value the server refuses through the form: its message next to that field, the page still usable.
      await page.getByLabel('API key').fill('sk_required_case');
      await page.getByLabel('Account email').fill('not an address');
      await page.getByLabel('API key').press('Enter');
      await page.locator('#error-account_email').filter({ hasText: /\S/ }).waitFor({ state: 'visible', timeout: 10_000 });
      await waitForState(page, 'ready');
      await expect(page.locator('#success').isVisible()).resolves.toBe(false);
      expect(await stored(account)).toEqual({ api_key: 'sk_required_case', region: 'eu' });

      await expectClean(watch, { allowStatuses: [400] });
      expectNoTokenInServerOutput();
    });

    /** A second origin that serves one page of the test's choosing (to frame the Connect page). */
    async function embedder(): Promise<{ origin: string; setHtml(html: string): void; close(): Promise<void> }> {
      let html = '<!doctype html><title>empty</title>';
      const http: HttpServer = createHttpServer((req, res) => {
        if (req.url !== '/') {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html);
      });
      await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
      const address = http.address();
      if (address === null || typeof address === 'string') throw new Error('no port');
      return {
        origin: `http://127.0.0.1:${address.port}`,
        setHtml: (next) => (html = next),
        close: () => new Promise<void>((resolve) => http.close(() => resolve())),
      };
    }

    const framePage = (src: string) =>
      `<!doctype html><html><head><title>Partner</title><link rel="icon" href="data:,"></head><body><h1>Partner site</h1>` +
      `<iframe id="connect" title="Connect" src="${src.replace(/&/g, '&amp;').replace(/"/g, '&quot;')}" width="640" height="720"></iframe></body></html>`;

    it('can be framed by an origin --frame-ancestors lists, and works inside the frame', async () => {
      const account = 'cust-framed';
      await linkedAccount(account);
      const partner = await embedder();
      try {
        const framing = await startServer([
          ...store,
          '--framework',
          framework,
          '--app-config',
          appConfig,
          '--log-requests',
          '--frame-ancestors',
          partner.origin,
        ]);
        extraServers.push(framing);
        const served = await request(`${framing.url}/connect`);
        expect(served.headers.get('content-security-policy')).toMatch(new RegExp(`frame-ancestors ${partner.origin.replace(/[.]/g, '\\.')}(;|$)`));
        // Chromium lets CSP frame-ancestors override X-Frame-Options; a browser knowing only the latter must not be told DENY.
        expect(served.headers.get('x-frame-options')).toBeNull();

        const { token } = await sessionToken(account);
        const link = await connectLink(token, framing);
        partner.setHtml(framePage(link.url));
        const watch = await openPage();
        await watch.page.goto(`${partner.origin}/`);
        const frame = watch.page.frameLocator('#connect');
        await frame.locator('body[data-state="ready"]').waitFor({ state: 'attached', timeout: 10_000 });
        await expect(frame.locator('#app-name').textContent()).resolves.toMatch(/^\s*Acme CRM\s*$/);
        await frame.getByLabel('API key').fill('sk_framed');
        await frame.locator('#field-region').selectOption('us');
        await frame.getByLabel('API key').press('Enter');
        await frame.locator('body[data-state="done"]').waitFor({ state: 'attached', timeout: 10_000 });
        await expect(frame.locator('#success').isVisible()).resolves.toBe(true);
        expect(await stored(account)).toEqual({ api_key: 'sk_framed', region: 'us' });

        // The partner's page is the only request to its origin.
        expect(watch.requests.filter((req) => new URL(req.url()).origin === partner.origin).map((req) => req.url())).toEqual([`${partner.origin}/`]);
        await expectClean(watch, { vault: framing.url, others: [partner.origin] });
        expect(logged(framing, 'PUT', `${CREDENTIAL_PATH}/api_key`, 200), requestLog(framing).join('\n')).toBe(true);
        expectNoTokenInServerOutput();
      } finally {
        await partner.close();
      }
    }, 90_000);

    it('refuses to be framed by default', async () => {
      const account = 'cust-refused';
      await linkedAccount(account);
      const partner = await embedder();
      try {
        const { token } = await sessionToken(account);
        const link = await connectLink(token);
        partner.setHtml(framePage(link.url));
        const watch = await openPage();
        await watch.page.goto(`${partner.origin}/`);
        const deadline = Date.now() + 10_000;
        while (!watch.cspMessages.some((text) => /frame-ancestors/.test(text)) && Date.now() < deadline) await sleep(50);
        expect(watch.cspMessages.join('\n'), 'Chromium refuses the frame, naming frame-ancestors').toMatch(/frame-ancestors 'none'/);

        const child = watch.page.frames().find((frame) => frame !== watch.page.mainFrame());
        expect(child, 'the iframe').toBeDefined();
        await expect((child as Frame).locator('#app-name').count(), 'the page did not load in the frame').resolves.toBe(0);
        const assets = watch.requests.filter((req) => new URL(req.url()).pathname.startsWith('/connect/'));
        expect(assets.map((req) => req.url()), 'no asset or API request from a refused frame').toEqual([]);
        const api = watch.requests.filter((req) => new URL(req.url()).pathname.startsWith(`${API}/`));
        expect(api.map((req) => req.url())).toEqual([]);
        expect(await stored(account)).toEqual({});
        expect(watch.pageErrors).toEqual([]);
        expectNoTokenInServerOutput();
      } finally {
        await partner.close();
      }
    });

    /** A reverse proxy serving the vault under `/vault` (stripping the prefix), as a path-routing gateway does. */
    async function prefixProxy(target: string): Promise<{ origin: string; close(): Promise<void> }> {
      const proxy: HttpServer = createHttpServer((req, res) => {
        const url = req.url ?? '/';
        if (!url.startsWith('/vault/')) {
          res.writeHead(404).end();
          return;
        }
        const { hostname, port } = new URL(target);
        const upstream = httpRequest(
          { host: hostname, port: Number(port), method: req.method, path: url.slice('/vault'.length), headers: req.headers },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        upstream.on('error', () => res.writeHead(502).end());
        req.pipe(upstream);
      });
      await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
      const address = proxy.address();
      if (address === null || typeof address === 'string') throw new Error('no port');
      return {
        origin: `http://127.0.0.1:${address.port}`,
        close: () =>
          new Promise<void>((resolve) => {
            // The browser keeps its connections alive: close them, or close() waits for them.
            proxy.closeAllConnections();
            proxy.close(() => resolve());
          }),
      };
    }

    it('works behind a proxy that adds a path prefix (--public-url), with field names a form would trip on', async () => {
      const account = 'cust-proxied';
      await linkedAccount(account);
      // Names that are also properties and methods of a <form>: the page must not confuse them.
      const hostile = {
        name: 'Acme CRM',
        fields: [
          { name: 'addEventListener', type: 'password', required: true, label: 'Listener key' },
          { name: 'hidden', type: 'text', label: 'Hidden' },
        ],
      };
      const hostileConfig = path.join(dir as string, 'hostile.json');
      await writeFile(hostileConfig, JSON.stringify(hostile));
      // The public address only shapes the URL handed out; the browser below goes through the proxy.
      const behind = await startServer([...store, '--framework', framework, '--app-config', hostileConfig, '--log-requests', '--public-url', 'http://127.0.0.1:1/vault']);
      extraServers.push(behind);
      const front = await prefixProxy(behind.url);
      try {
        const { token } = await sessionToken(account);
        // Asked through the proxy, as the browser would; the URL names the configured public address.
        const answer = await request(`${front.origin}/vault${API}/connect-url`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
        expect(answer.status, answer.text).toBe(200);
        const { url } = answer.body as { url: string };
        expect(url.startsWith('http://127.0.0.1:1/vault/connect#token=cvs_')).toBe(true);
        const pageToken = new URLSearchParams(new URL(url).hash.slice(1)).get('token') as string;
        tokens.push(pageToken);
        const watch = await openPage();
        await watch.page.goto(`${front.origin}/vault/connect#token=${encodeURIComponent(pageToken)}`);
        await waitForState(watch.page, 'ready');
        expect(watch.page.url()).toBe(`${front.origin}/vault/connect`);
        await watch.page.getByLabel('Listener key').fill('sk_behind_proxy');
        await watch.page.getByLabel('Hidden').fill('visible');
        await watch.page.getByLabel('Listener key').press('Enter');
        await waitForState(watch.page, 'done');
        expect(await stored(account)).toEqual({ addEventListener: 'sk_behind_proxy', hidden: 'visible' });
        // Every request went through the prefix.
        for (const req of watch.requests) expect(new URL(req.url()).pathname.startsWith('/vault/'), req.url()).toBe(true);
        await expectClean(watch, { vault: front.origin });

        // A link damaged on its way: a token no header can carry is "incomplete or damaged", never "reload".
        const damaged = await openPage();
        await damaged.page.goto(`${front.origin}/vault/connect#token=cvs_a%20b`);
        await waitForState(damaged.page, 'failed');
        await expect(damaged.page.locator('#form-error').textContent()).resolves.toMatch(/incomplete or damaged/);
        await expectClean(damaged, { vault: front.origin });

        // A mail client that turned the `#` into `?` sends the token to the server: the log redacts it.
        expect((await request(`${behind.url}/connect?token=${pageToken}`)).status).toBe(200);
        expect((await request(`${behind.url}/connect%23token=${pageToken}`)).status).toBe(404);
        // The server writes a line once the answer is sent; its stderr reaches us a moment later.
        const deadline = Date.now() + 5_000;
        while (!logged(behind, 'GET', '/connect%23token=cvs_[redacted]', 404) && Date.now() < deadline) await sleep(50);
        expect(logged(behind, 'GET', '/connect?token=cvs_[redacted]', 200), requestLog(behind).join('\n')).toBe(true);
        expect(logged(behind, 'GET', '/connect%23token=cvs_[redacted]', 404), requestLog(behind).join('\n')).toBe(true);
        expectNoTokenInServerOutput();
      } finally {
        await front.close();
      }
    }, 90_000);

    it('says the link has expired, at load and at submit, and stores nothing', async () => {
      if ('failed' in expiring) throw expiring.failed;
      const { account, issuedBy, early, late, open } = expiring;
      // A page token never outlives its session token.
      expect(early.expiresIn).toBeLessThanOrEqual(EXPIRING_TTL);
      expect(late.expiresIn).toBeLessThanOrEqual(EXPIRING_TTL);

      // The session token was issued before `issuedBy`: past this it has expired, and every page token with it.
      await sleep(Math.max(0, issuedBy + EXPIRING_TTL * 1000 + 250 - Date.now()));

      const expired = await openPage();
      await expired.page.goto(late.url);
      await waitForState(expired.page, 'failed');
      await expect(expired.page.locator('#form-error').isVisible()).resolves.toBe(true);
      await expect(expired.page.locator('#form-error').textContent()).resolves.toMatch(/expired|revoked/i);
      await expect(expired.page.locator('#form-error').getAttribute('role')).resolves.toBe('alert');

      await open.page.getByLabel('API key').press('Enter');
      await open.page.locator('#form-error').filter({ hasText: /expired|revoked/i }).waitFor({ state: 'visible', timeout: 10_000 });
      expect(await stateOf(open.page)).not.toBe('done');
      await expect(open.page.locator('#success').isVisible()).resolves.toBe(false);

      expect(await stored(account)).toEqual({});
      await expectClean(expired, { allowStatuses: [401] });
      await expectClean(open, { allowStatuses: [401] });
      expectNoTokenInServerOutput();
    });
  });
});
