/** PostgreSQL housekeeping shared by the test files that give each run its own schema. */
import pg from 'pg';
import { POSTGRES_URL } from './services.js';

/** Drops `schema` and everything in it, if it exists, on the shared server. */
export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema.replaceAll('"', '""')}" CASCADE`);
  } finally {
    await client.end();
  }
}
