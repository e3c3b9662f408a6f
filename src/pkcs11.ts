/**
 * `credvault/pkcs11`: the PKCS#11 key provider on its own entry point, for code that opens
 * or provisions a KEK on an HSM itself (to chain it with another provider, say). Passing a
 * PKCS#11 URI as `createVault({ kek })` needs none of this. `pkcs11js` (an optional peer)
 * loads only when a provider is opened or a key generated.
 *
 * @example
 * ```ts
 * import { generatePkcs11Kek, openPkcs11KeyProvider } from 'credvault/pkcs11';
 * const uri = 'pkcs11:token=credvault;object=kek-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:CREDVAULT_PKCS11_PIN';
 * await generatePkcs11Kek(uri);
 * const vault = await createVault({ store: 'sqlite:./data/credvault.db', kek: await openPkcs11KeyProvider(uri) });
 * ```
 */
export { generatePkcs11Kek, openPkcs11KeyProvider, type Pkcs11KeyProviderOptions } from './crypto/pkcs11.js';
export { formatPkcs11Uri, parsePkcs11Uri, resolvePkcs11Pin, type Pkcs11PinSource, type Pkcs11Uri, type Pkcs11VendorAttribute } from './crypto/pkcs11-uri.js';
