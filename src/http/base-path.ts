/** Where the API is mounted unless told otherwise; a leaf, so the CLI can name it without loading the API. */
export const DEFAULT_BASE_PATH = '/api/v2/public';
