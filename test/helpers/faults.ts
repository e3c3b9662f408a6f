/** Faults for the conformance suite: our adapters' batch hook (`faults`) and a cut connection (`failingFactory`). */
import type { VaultStore } from '../../src/core/store.js';
import { freePort, tcpProxy, viaPort } from './services.js';

/** Fails write `controls.failAt` of the next batch, as the suite's "all or nothing" test asks. */
export function batchFaultHook(controls: { failAt: number }): { beforeWrite: (index: number) => void } {
  return {
    beforeWrite: (i) => {
      if (i === controls.failAt) throw new Error('injected fault');
    },
  };
}

/**
 * A backend that fails every call after the store connected, for the suite's
 * `failingFactory`: opens the store through a TCP proxy to `url`'s server, makes one call
 * so it connects, then cuts the proxy for good.
 */
export async function openThenCut(url: string, open: (proxiedUrl: string) => VaultStore | Promise<VaultStore>): Promise<VaultStore> {
  const { hostname, port, protocol } = new URL(url);
  const proxy = tcpProxy({ host: hostname, port: Number(port || (protocol.startsWith('redis') ? 6379 : 5432)) }, await freePort());
  await proxy.start();
  const store = await open(viaPort(url, proxy.port));
  await store.get('probe', 'probe');
  await proxy.stop();
  return store;
}
