// Child process for test/adapters/keyv-processes.test.ts. Plain JS so Node 20 runs it
// directly; it imports the compiled adapter, so run `tsc -p tsconfig.build.json` first.
//
//   node keyv-child.mjs open <uri> <table> <namespace> <leaseMs>
//     opens the namespace and prints "ok" (then holds it until killed) or "refused <code>".
//   node keyv-child.mjs crash <uri> <table> <namespace> <leaseMs> <group> <passSets|all>
//     seeds m0..m7 = "old", then runs one batch setting them to "new". With a number, only
//     that many Keyv sets of the batch reach MariaDB (its journal is the first), the rest
//     never do, and "mid" is printed; with "all", "committed" is printed once it resolved.
import KeyvMysql from '@keyv/mysql';
import Keyv from 'keyv';
import { createKeyvStore } from '../../dist/adapters/keyv.js';

const [mode, uri, table, namespace, leaseMs, group, pass] = process.argv.slice(2);
const mysql = new KeyvMysql({ uri, table });
const keyv = new Keyv({ store: mysql, throwOnErrors: true });
const store = createKeyvStore(keyv, { namespace, leaseMs: Number(leaseMs) });
const hold = () => new Promise(() => setInterval(() => undefined, 60_000));

if (mode === 'open') {
  try {
    await store.get('g', 'm');
    process.stdout.write('ok\n');
    await hold();
  } catch (error) {
    process.stdout.write(`refused ${error.code ?? error.message}\n`);
    await store.close();
  }
} else if (mode === 'crash') {
  const members = Array.from({ length: 8 }, (_, i) => `m${i}`);
  await store.batch(group, members.map((member) => ({ op: 'put', member, value: 'old' })));
  if (pass !== 'all') {
    const limit = Number(pass);
    const set = mysql.set.bind(mysql);
    let sets = 0;
    mysql.set = async (key, value) => {
      const n = ++sets;
      if (n > limit) return new Promise(() => undefined);
      const result = await set(key, value);
      if (n === limit) process.stdout.write('mid\n');
      return result;
    };
  }
  await store.batch(group, members.map((member) => ({ op: 'put', member, value: 'new' })));
  process.stdout.write('committed\n');
  await hold();
} else {
  throw new Error(`unknown mode ${mode}`);
}
