import { randomBytes } from "node:crypto";
import postgres from "postgres";

/** The PostgreSQL server the tests use (the machine's, trust auth). */
export const PG_URL = process.env.JOBQUEUE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** A schema name no other test uses. */
export function uniqueSchema(prefix = "t"): string {
  return `jqtest_${prefix}_${randomBytes(6).toString("hex")}`;
}

/** Drops a test's schema and everything in it. */
export async function dropSchema(schema: string, url = PG_URL): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** A JOBQUEUE_DB_URL for a schema of its own. */
export function dbUrlFor(schema: string, url = PG_URL): string {
  const u = new URL(url);
  u.searchParams.set("schema", schema);
  return u.toString();
}
