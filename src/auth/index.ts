export type { AuthRequest, AuthResolver, Caller } from './types.js';
export { resolveApiKey, resolveSessionToken, resolveCaller, defaultResolvers } from './resolvers.js';
