import { readdirSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { createPostgresJobStore } from "../../src/store/postgres/postgres-job-store.js";
import { adminClient, dropSchema, PG_URL, uniqueSchema } from "../helpers/postgres.js";
import { waitFor } from "../helpers/wait-for.js";
import { newJob, T0, testClock } from "./conformance/harness.js";
import { runStoreConformance } from "./conformance/index.js";

runStoreConformance({
  name: "postgres",
  concurrentNodes: true,
  async createWorld() {
    const schema = uniqueSchema("c");
    return {
      open: (clock) => createPostgresJobStore({ url: PG_URL, schema, clock, poolSize: 4 }),
      cleanup: () => dropSchema(schema),
    };
  },
});

describe("postgres store", () => {
  const schemas: string[] = [];
  const closers: (() => Promise<void>)[] = [];
  const open = async (schema: string, clock = testClock()) => {
    const store = await createPostgresJobStore({ url: PG_URL, schema, clock, poolSize: 4 });
    closers.push(() => store.close());
    return store;
  };
  const admin = async () => {
    const client = await adminClient();
    closers.push(() => client.end());
    return client;
  };

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    for (const schema of schemas.splice(0)) await dropSchema(schema);
  });

  it("nodes starting together on a new schema apply each migration once", async () => {
    const schema = uniqueSchema("m");
    schemas.push(schema);
    const stores = await Promise.all([open(schema), open(schema), open(schema)]);
    const sql = await admin();
    const { rows } = await sql.query(
      `SELECT version, name FROM "${schema}".schema_migrations ORDER BY version`,
    );
    const files = readdirSync(new URL("../../src/store/postgres/migrations/", import.meta.url))
      .filter((f) => /^\d+_.+\.sql$/.test(f))
      .sort();
    expect(files.length).toBeGreaterThan(0);
    expect(rows.map((r) => r.name)).toEqual(files);
    // Every node works on the same tables.
    const job = newJob();
    await stores[0]!.jobInsert(job);
    expect((await stores[2]!.jobGet({ id: job.id }))?.id).toBe(job.id);
  });

  it("schemas keep deployments apart", async () => {
    const [a, b] = [uniqueSchema("a"), uniqueSchema("b")];
    schemas.push(a, b);
    const [sa, sb] = await Promise.all([open(a), open(b)]);
    const job = newJob();
    await sa.jobInsert(job);
    expect(await sb.jobGet({ id: job.id })).toBeNull();
    expect((await sa.jobGet({ id: job.id }))?.id).toBe(job.id);
  });

  it("a claim reads the head of the partial claim index, however many jobs are queued", async () => {
    const schema = uniqueSchema("p");
    schemas.push(schema);
    const store = await open(schema);
    const sql = await admin();
    // 50,000 queued jobs (and as many finished ones), inserted by SQL for speed.
    await sql.query(`SET search_path = ${schema};
      INSERT INTO jobs (id, state, run_at, created_at, updated_at, max_attempts, method, url,
        headers, secret_header_names, params, timeout_ms, backoff_strategy, backoff_base_ms, tags,
        max_redirects, bucket)
      SELECT 'j_' || lpad(g::text, 26, '0'), CASE WHEN g % 2 = 0 THEN 'available' ELSE 'succeeded' END,
        ${T0} + g, ${T0}, ${T0}, 3, 'GET', 'https://example.test/', '{}', '[]', '{}', 1000,
        'fixed', 1000, '[]', 5, 'example.test'
      FROM generate_series(1, 100000) g;
      ANALYZE jobs;`);
    const plan = await (store as unknown as { explainClaim(): Promise<string> }).explainClaim();
    expect(plan).toContain("Index Scan using jobs_claim");
    expect(plan).not.toMatch(/Sort|Seq Scan/);
  });

  it("LISTEN comes back after its connection is killed: the workers are woken and wake-ups flow again", async () => {
    const schema = uniqueSchema("l");
    schemas.push(schema);
    const [a, b] = await Promise.all([open(schema), open(schema)]);
    let woken = 0;
    b.signals.onJobsAvailable(() => woken++);
    const sql = await admin();
    const { rows: killed } = await sql.query(
      "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE query ILIKE $1",
      [`listen%jq_${schema}%`],
    );
    expect(killed.length).toBeGreaterThan(0);
    const afterKill = woken;
    // The re-LISTEN itself wakes the workers (whatever was sent meanwhile is lost)...
    await waitFor(() => woken > afterKill, { what: "the re-LISTEN", timeoutMs: 15_000 });
    const afterRelisten = woken;
    // ...and another node's wake-up arrives again.
    await a.jobInsert(newJob());
    await waitFor(() => woken > afterRelisten, { what: "a wake-up after the reconnect" });
  });

  it("an unreachable server is a StoreUnavailableError naming it, not a hang", async () => {
    const err = await createPostgresJobStore({
      url: "postgres://postgres@127.0.0.1:1/test",
      schema: uniqueSchema("u"),
      connectTimeoutSeconds: 2,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: "StoreUnavailableError" });
    expect((err as Error).message).toMatch(/PostgreSQL cannot be reached at 127\.0\.0\.1:1/);
  });
});
