import { randomBytes } from "node:crypto";
import pg from "pg";

/** The PostgreSQL server the tests use (the machine's, trust auth). */
export const PG_URL = process.env.JOBQUEUE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** A schema name no other test uses. */
export function uniqueSchema(prefix = "t"): string {
  return `jqtest_${prefix}_${randomBytes(6).toString("hex")}`;
}

/** Drops a test's schema and everything in it. */
export async function dropSchema(schema: string, url = PG_URL): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** A JOBQUEUE_DB_URL for a schema of its own. */
export function dbUrlFor(schema: string, url = PG_URL): string {
  const u = new URL(url);
  u.searchParams.set("schema", schema);
  return u.toString();
}

/** A plain connection for a test's own look at the database; closed by `end()`. */
export async function adminClient(url = PG_URL): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}
