/**
 * What the contract tests share per binding: checking each answer (a 200 against the
 * upstream schema of its operation, an error against the envelope, no secret anywhere),
 * and the log of every (method, path, status) seen, which the served document must list.
 */
import { expect } from 'vitest';
import { call, type CallResult } from '../http/harness.js';
import type { UpstreamResult } from './calls.js';
import type { UpstreamValidator } from './upstream.js';

export interface Seen {
  method: string;
  /** The path template of the served (and upstream) document. */
  path: string;
  status: number;
}

type ServedDocument = { paths: Record<string, Record<string, { responses?: Record<string, unknown> }>> };

export class ContractSession {
  readonly seen: Seen[] = [];
  /** Values that must never come back: credential values, API keys, tokens (added as they are made). */
  readonly secrets = new Set<string>();

  constructor(
    private readonly validator: UpstreamValidator,
    private readonly origin: () => string,
  ) {}

  private screen(result: { status: number; body: unknown }, label: string): void {
    const text = JSON.stringify(result.body) ?? '';
    const leaked = [...this.secrets].filter((secret) => text.includes(secret));
    expect(leaked.length, `${label}: a secret is in the answer`).toBe(0);
  }

  /** A 200 conforming to the operation's upstream schema; its body. */
  ok<T = Record<string, unknown>>(result: UpstreamResult): T {
    this.seen.push({ method: result.method, path: result.path, status: result.status });
    const label = `${result.operationId} -> ${result.status} ${JSON.stringify(result.body)}`;
    expect(result.status, label).toBe(200);
    expect(this.validator.success(result.operationId, result.body), label).toEqual([]);
    // A session-token answer carries the token it issues; nothing else may carry a secret.
    const { token: _issued, ...rest } = result.body as Record<string, unknown>;
    this.screen({ status: result.status, body: result.operationId === 'generateSessionTokenForLinkedAccount' ? rest : result.body }, result.operationId);
    return result.body as T;
  }

  /** An error answer: the status, the envelope (status_code the same), the `error` code; its message. */
  fails(result: UpstreamResult | (CallResult & { method: string; path: string }), status: number, error: string): string {
    this.seen.push({ method: result.method.toLowerCase(), path: result.path, status: result.status });
    const label = `${result.method} ${result.path} -> ${result.status} ${JSON.stringify(result.body)}`;
    expect(result.status, label).toBe(status);
    expect(this.validator.error(status, result.body), label).toEqual([]);
    expect((result.body as { error?: unknown }).error, label).toBe(error);
    this.screen(result, label);
    return (result.body as { message: string }).message;
  }

  /**
   * A request the typed client cannot make (a malformed query, a method upstream does
   * not have), sent as is; `template` is the documented path it goes to.
   */
  async raw(method: string, template: string, pathAndQuery: string, headers: Record<string, string> = {}): Promise<CallResult & { method: string; path: string }> {
    const result = await call(`${this.origin()}${pathAndQuery}`, { method, headers });
    return { ...result, method, path: template };
  }

  /**
   * Every status seen that the served document does not list under the operation that
   * answered it; a method the path does not serve must be a 405 that every operation of
   * the path lists.
   */
  unlisted(served: ServedDocument): string[] {
    const problems = new Set<string>();
    for (const { method, path, status } of this.seen) {
      const item = served.paths[path];
      if (item === undefined) {
        problems.add(`${path} is not in the served document`);
        continue;
      }
      const operation = item[method];
      if (operation !== undefined) {
        if (operation.responses?.[String(status)] === undefined) problems.add(`${method.toUpperCase()} ${path} answered ${status}, not listed`);
        continue;
      }
      if (status !== 405) problems.add(`${method.toUpperCase()} ${path} is not served, yet answered ${status}`);
      for (const [other, op] of Object.entries(item)) {
        if (['get', 'put', 'post', 'delete', 'patch'].includes(other) && op.responses?.['405'] === undefined) {
          problems.add(`${other.toUpperCase()} ${path} does not list the 405 its path answers`);
        }
      }
    }
    return [...problems];
  }
}
