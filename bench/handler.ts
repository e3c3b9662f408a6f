/**
 * The handler measurement: µs per credential PUT through `createHandler(vault).handle` in
 * process (routing, API-key auth against the store, body parsing, validation, the write, the
 * answer), no framework and no socket, against the core call alone
 * (`upsertDefaultAppCredential`, the same write without HTTP). Memory store; the two sides
 * alternate over the rounds, and every PUT carries a value never sent before.
 */
import { createApiKey, createHandler, createVault, upsertDefaultAppCredential, upsertLinkedAccount } from '../src/index.js';
import { ACCOUNTS, BENCH_ACCOUNT } from './matrix.js';

/** µs per PUT of each side, one figure per round. */
export interface HandlerResult {
  /** PUTs timed per side and round. */
  puts: number;
  handlerMicros: number[];
  coreMicros: number[];
}

export interface HandlerSettings {
  rounds: number;
  /** The vault's keyring, `id:base64`. */
  keys: string;
  log: (line: string) => void;
}

const PUTS = 20_000;
/** PUTs per side before the first round, not timed: the JIT warms up. */
const WARM_UP = 3000;
const KEY_NAMES = 20;
const PREFIX = '/api/v2/public/linked-account/default-app/auth-credentials/';

/** Runs both sides on one vault; each round times PUTS PUTs per side. */
export async function measureHandler(settings: HandlerSettings): Promise<HandlerResult> {
  const vault = await createVault({ store: 'memory:', keys: settings.keys });
  let counter = 0;
  const value = () => `sk_live_${'x'.repeat(40)}_${counter++}`;
  try {
    const { apiKey } = await createApiKey(vault, { org: 'bench', environment: 'test' });
    const refs = Array.from({ length: ACCOUNTS }, (_, a) => ({ org: 'bench', environment: 'test', accountId: `${BENCH_ACCOUNT}-${a}` }));
    for (const ref of refs) await upsertLinkedAccount(vault, ref, { credentials: {} });
    const handler = createHandler(vault);
    // The request a binding would hand over, minus the body that changes on every PUT.
    const requests = Array.from({ length: KEY_NAMES }, (_, i) => ({
      method: 'PUT',
      path: `${PREFIX}bench_key_${i}`,
      headers: { 'content-type': 'application/json', 'x-api-key': apiKey, linked_account_id: `${BENCH_ACCOUNT}-${i % ACCOUNTS}` },
      clientAddress: '127.0.0.1',
    }));
    const viaHandler = async (i: number) => {
      const response = await handler.handle({ ...(requests[i % KEY_NAMES] as (typeof requests)[number]), body: JSON.stringify({ value: value() }) });
      // The status only: the body of an error could name what was sent.
      if (response.status !== 200) throw new Error(`handler PUT answered ${response.status}`);
    };
    const viaCore = async (i: number) => {
      await upsertDefaultAppCredential(vault, refs[i % ACCOUNTS] as (typeof refs)[number], `bench_key_${i % KEY_NAMES}`, value());
    };
    const microsPerPut = async (put: (i: number) => Promise<void>) => {
      const started = process.hrtime.bigint();
      for (let i = 0; i < PUTS; i++) await put(i);
      return Number(process.hrtime.bigint() - started) / 1e3 / PUTS;
    };
    for (let i = 0; i < WARM_UP; i++) {
      await viaHandler(i);
      await viaCore(i);
    }
    const result: HandlerResult = { puts: PUTS, handlerMicros: [], coreMicros: [] };
    for (let round = 0; round < settings.rounds; round++) {
      // Alternate which side goes first, so neither always runs on a fresher heap.
      const first = round % 2 === 0;
      if (first) result.handlerMicros.push(await microsPerPut(viaHandler));
      result.coreMicros.push(await microsPerPut(viaCore));
      if (!first) result.handlerMicros.push(await microsPerPut(viaHandler));
      settings.log(`handler: round ${round + 1}: ${(result.handlerMicros.at(-1) as number).toFixed(1)} µs per PUT through handle, ${(result.coreMicros.at(-1) as number).toFixed(1)} µs core alone`);
    }
    return result;
  } finally {
    await vault.close();
  }
}
