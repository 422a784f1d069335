import pg from "pg";
import { ident, insertValues, render, Sql } from "./sql.js";

/**
 * The PostgreSQL driver's connection: node-postgres (`pg`) under a small tagged-template layer.
 *
 * Why `pg`: measured on this machine, `pg` and `postgres` (porsager) claim and finish jobs at the
 * same rate (the commit's fsync dominates), and `postgres` re-subscribes LISTEN by itself; but
 * `postgres` 3.4.x crashes the whole process with an uncatchable TypeError (`socket.write` on a
 * closed connection, from a setImmediate; porsager/postgres#1154, #1208, unfixed in 3.4.9) when
 * the server goes away mid-write, which a node must survive. `pg` fails the queries in flight
 * with catchable errors and reconnects; LISTEN across reconnects is done here (see {@link listen}).
 *
 * A tagged template is a query that runs when awaited, and a fragment when interpolated into
 * another: `` sql`SELECT * FROM jobs WHERE ${cond}` `` with `` const cond = sql`id = ${id}` ``.
 * `sql(rows)` is a multi-row `(cols) VALUES …` and `sql("name")` a quoted identifier.
 */
export interface Rows<T> extends Array<T> {
  /** Rows the statement touched (node-postgres' rowCount). */
  count: number;
}

/** A statement, run when awaited (once), or inlined into another as a fragment. */
export class Query<T = Record<string, unknown>> extends Sql implements PromiseLike<Rows<T>> {
  private running: Promise<Rows<T>> | null = null;

  constructor(
    strings: readonly string[],
    values: readonly unknown[],
    private readonly exec: Exec,
  ) {
    super(strings, values);
  }

  // biome-ignore lint/suspicious/noThenProperty: a statement runs when awaited, as in postgres.js
  then<A = Rows<T>, B = never>(
    onFulfilled?: ((value: Rows<T>) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    this.running ??= this.exec(render(this)).then((res) => {
      const rows = res.rows as Rows<T>;
      rows.count = res.rowCount ?? 0;
      return rows;
    });
    return this.running.then(onFulfilled, onRejected);
  }
}

type Exec = (q: { text: string; values: unknown[] }) => Promise<pg.QueryResult>;

export interface Tag {
  <T = Record<string, unknown>>(strings: TemplateStringsArray, ...values: unknown[]): Query<T>;
  /** `(col, …) VALUES (…), …` of these rows. */
  (rows: Record<string, unknown>[]): Sql;
  /** A quoted identifier. */
  (identifier: string): Sql;
}

function tagOf(exec: Exec): Tag {
  return ((
    first: TemplateStringsArray | Record<string, unknown>[] | string,
    ...values: unknown[]
  ) => {
    if (typeof first === "string") return ident(first);
    if (!("raw" in first)) return insertValues(first);
    return new Query(first, values, exec);
  }) as Tag;
}

export interface Transaction extends Tag {
  /** Runs statements given as text (a migration file). */
  unsafe(text: string): Promise<void>;
}

export interface Db extends Tag {
  /** Runs `fn` in a transaction on one connection: committed if it resolves, rolled back if not. */
  begin<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
  /**
   * Listens on a channel on a connection of its own, and listens again after the connection is
   * lost (retrying with backoff); `onListen` runs after every (re)subscription, since what was
   * sent while it was away is gone.
   */
  listen(
    channel: string,
    onNotify: (payload: string) => void,
    onListen: () => void,
  ): Promise<{ unlisten: () => Promise<void> }>;
  end(): Promise<void>;
}

/** Bigints (epoch milliseconds, counts) read as numbers: every one the store keeps fits. */
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === pg.types.builtins.INT8
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** Errors after which a connection is not to be used again. */
function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return (
    typeof code !== "string" ||
    code.startsWith("08") ||
    code.startsWith("57P") ||
    /^E[A-Z]+$/.test(code)
  );
}

export function connect(options: {
  url: string;
  schema: string;
  poolSize: number;
  connectTimeoutMs: number;
}): Db {
  const config: pg.PoolConfig = {
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs,
    idleTimeoutMillis: 60_000,
    application_name: "jobqueue",
    options: `-c search_path=${options.schema}`,
    types,
  };
  const pool = new pg.Pool(config);
  // An idle connection that breaks (the server restarted) is dropped by the pool; the next query
  // gets a fresh one. Without a listener the error would end the process.
  pool.on("error", () => {});

  const db = tagOf((q) => pool.query(q)) as Db;

  db.begin = async <T>(fn: (tx: Transaction) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    let broken: Error | undefined;
    // A checked-out client that loses its connection emits "error" (the pool only listens on idle
    // ones); unheard, it would end the process. The statement in flight fails anyway.
    const onError = (err: Error) => {
      broken = err;
    };
    client.on("error", onError);
    try {
      await client.query("BEGIN");
      const tx = tagOf((q) => client.query(q)) as Transaction;
      tx.unsafe = async (text) => {
        await client.query(text);
      };
      const result = await fn(tx);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      if (isConnectionError(err)) broken = err as Error;
      else {
        await client.query("ROLLBACK").catch((rollback: Error) => {
          broken = rollback;
        });
      }
      throw err;
    } finally {
      client.off("error", onError);
      client.release(broken);
    }
  };

  db.listen = async (channel, onNotify, onListen) => {
    let client: pg.Client | null = null;
    let stopped = false;
    const subscribe = async (): Promise<void> => {
      const c = new pg.Client({ ...config, connectionTimeoutMillis: options.connectTimeoutMs });
      c.on("error", () => {
        // Followed by "end", which listens again.
      });
      await c.connect();
      await c.query(`LISTEN ${ident(channel).strings[0]}`);
      if (stopped) {
        await c.end();
        return;
      }
      c.on("notification", (n) => {
        if (n.channel === channel) onNotify(n.payload ?? "");
      });
      c.once("end", () => {
        client = null;
        if (!stopped) void again(100);
      });
      client = c;
      onListen();
    };
    const again = async (delayMs: number): Promise<void> => {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (stopped) return;
      try {
        await subscribe();
      } catch {
        void again(Math.min(delayMs * 2, 5_000));
      }
    };
    await subscribe();
    return {
      unlisten: async () => {
        stopped = true;
        await client?.end().catch(() => {});
      },
    };
  };

  db.end = () => pool.end();
  return db;
}
