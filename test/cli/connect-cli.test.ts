/**
 * `credvault serve` with the Connect page, as real processes: `--app-config` and the
 * Connect flags, refused settings (exit 2, one line), and `--log-requests`. The page in a
 * browser is test/browser's.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, killAll, linesOf, makeTempDir, removeDir, run, runJson, startServer } from './helpers.js';

const APP = {
  name: 'Acme CRM',
  fields: [
    { name: 'api_key', type: 'password', required: true, label: 'API key' },
    { name: 'region', type: 'select', options: [{ label: 'EU', value: 'eu' }] },
  ],
  theme: { accent: '#0f766e' },
};

let dir: string;
let store: string[];
let appFile: string;

beforeAll(async () => {
  assertBuilt();
  dir = await makeTempDir();
  store = ['--store', `sqlite:${path.join(dir, 'v.db')}`];
  appFile = path.join(dir, 'app.json');
  await writeFile(appFile, JSON.stringify(APP));
});
afterEach(() => killAll());
afterAll(() => removeDir(dir));

describe('serve --app-config', () => {
  it('serves the page and hands out connect URLs that open it; the request log never holds a token', async () => {
    await runJson(['linked-account', 'create', ...store, '--org', 'acme', '--id', 'cust-1']);
    const { token } = await runJson<{ token: string }>(['session-token', 'create', ...store, '--org', 'acme', '--id', 'cust-1']);
    const server = await startServer([...store, '--app-config', appFile, '--log-requests', '--frame-ancestors', 'https://app.example.com']);
    try {
      const answer = await fetch(`${server.url}/api/v2/public/connect-url`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      expect(answer.status).toBe(200);
      const { url } = (await answer.json()) as { url: string };
      expect(url.startsWith(`${server.url}/connect#token=cvs_`)).toBe(true);
      const pageToken = new URLSearchParams(new URL(url).hash.slice(1)).get('token') as string;
      const page = await fetch(url);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-security-policy')).toContain('frame-ancestors https://app.example.com');
      expect(await (await fetch(`${server.url}/connect/assets/theme.css`)).text()).toContain('#0f766e');
      const put = await fetch(`${server.url}/api/v2/public/linked-account/default-app/auth-credentials/region?linked_account_id=cust-1`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${pageToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ value: 'eu' }),
      });
      expect(put.status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const log = linesOf(server.stderr()).filter((line) => / \d{3} [\d.]+ms$/.test(line));
      expect(log).toEqual([
        expect.stringMatching(/^credvault: POST \/api\/v2\/public\/connect-url 200 [\d.]+ms$/),
        expect.stringMatching(/^credvault: GET \/connect 200 /),
        expect.stringMatching(/^credvault: GET \/connect\/assets\/theme\.css 200 /),
        expect.stringMatching(/^credvault: PUT \/api\/v2\/public\/linked-account\/default-app\/auth-credentials\/region\?linked_account_id=cust-1 200 /),
      ]);
      for (const secret of [token, pageToken, token.split('.')[2] as string, pageToken.split('.')[2] as string]) {
        expect(server.stderr()).not.toContain(secret);
        expect(server.stdout()).not.toContain(secret);
      }
    } finally {
      server.child.kill('SIGTERM');
      await server.exited();
    }
    const listed = await runJson<{ credentials: Array<{ key: string; value?: string }> }>([
      'credentials', 'list', ...store, '--org', 'acme', '--id', 'cust-1', '--reveal',
    ]);
    expect(listed.credentials.map(({ key, value }) => ({ key, value }))).toEqual([{ key: 'region', value: 'eu' }]);
  });

  it('refuses a missing, unreadable or invalid declaration, and Connect flags without one: exit 2, one line, nothing served', async () => {
    const bad = async (name: string, content: string) => {
      const file = path.join(dir, name);
      await writeFile(file, content);
      return file;
    };
    const cases: Array<[string[], RegExp]> = [
      [['--app-config', path.join(dir, 'absent.json')], /^credvault: --app-config .*absent\.json cannot be read \(ENOENT\)$/],
      [['--app-config', await bad('broken.json', '{"name": ')], /^credvault: --app-config .*broken\.json is not valid JSON$/],
      [['--app-config', await bad('array.json', '[]')], /must hold a JSON object/],
      [['--app-config', await bad('type.json', JSON.stringify({ name: 'X', fields: [{ name: 'k', type: 'secret' }] }))], /defaultApp\.fields\.0\.type: must be one of/],
      [['--app-config', await bad('theme.json', JSON.stringify({ ...APP, theme: { accent: 'red' } }))], /connect\.theme\.accent must be a colour/],
      [['--app-config', appFile, '--frame-ancestors', '*'], /connect\.frameAncestors: '\*'/],
      [['--app-config', appFile, '--connect-path', '/api/v2/public/x'], /and the API's base path \(\/api\/v2\/public\) must not contain one another/],
      [['--app-config', appFile, '--public-url', 'ftp://x'], /connect\.publicUrl must be an http or https URL/],
      [['--frame-ancestors', 'https://app.example.com'], /The Connect flags need --app-config/],
      [['--app-config', appFile, '--page-token-ttl', '0'], /page-token-ttl must be a positive whole number/],
    ];
    for (const [args, message] of cases) {
      const result = await run(['serve', '--port', '0', ...store, ...args]);
      expect({ args, code: result.code, stdout: result.stdout }).toEqual({ args, code: 2, stdout: '' });
      const lines = linesOf(result.stderr);
      expect(lines, args.join(' ')).toHaveLength(1);
      expect(lines[0], args.join(' ')).toMatch(message);
    }
  });
});
