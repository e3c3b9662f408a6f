/** Auth resolvers: how a request becomes a caller (an org API key, a session token, or your own). */
export type { AuthRequest, AuthResolver, Caller } from './types.js';
export { resolveApiKey, resolveSessionToken, resolveCaller, defaultResolvers } from './resolvers.js';
