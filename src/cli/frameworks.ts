/** The HTTP frameworks `credvault serve` can run on; a leaf, so naming them loads none. */
export const FRAMEWORKS = ['express', 'koa', 'fastify', 'fetch'] as const;
export type Framework = (typeof FRAMEWORKS)[number];
