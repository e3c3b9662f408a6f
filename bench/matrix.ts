/**
 * What the HTTP measurement varies and the shape of its load, shared by the load generator
 * (http.ts), the servers (apps.ts, server.ts) and the report: the bindings, the three
 * modes (credvault and its two baselines), and the linked accounts the PUTs are spread over.
 * Measures nothing, and loads no framework.
 */

export const BINDINGS = ['express', 'koa', 'fastify', 'fetch'] as const;
export type Binding = (typeof BINDINGS)[number];

/** `bare` and `naive` are the baselines (see apps.ts); `credvault` is the binding under test. */
export const MODES = ['bare', 'naive', 'credvault'] as const;
export type Mode = (typeof MODES)[number];

export const BENCH_ACCOUNT = 'acct-bench';
/** The load is spread over this many linked accounts, as real traffic is. */
export const ACCOUNTS = 10;
