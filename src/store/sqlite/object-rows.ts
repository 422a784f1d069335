import type { Statement } from "better-sqlite3";
import type { NamedStatement } from "./named-params.js";

/** A statement's rows as objects, built by {@link objectRows}. */
export interface ObjectRows<Row> {
  get(...params: unknown[]): Row | undefined;
  all(...params: unknown[]): Row[];
}

/**
 * Reads a statement's rows as arrays (better-sqlite3's raw mode) and makes each row an object with
 * one object literal made for the statement's columns. better-sqlite3 builds a row object through
 * V8's C++ API one property at a time, each a map transition and often a copy of the object: a
 * whole job row (47 columns, as a claim, a read by id and a page of a list return it) took about
 * twice as long to read that way (25 against 12 µs, of which the object is now next to nothing),
 * and callgrind of bench/store-cycle.ts counted ~120 such property additions per job.
 *
 * The literal's keys are the statement's column names as SQLite reports them (the schema's
 * own names, quoted), in their order, so a name that repeats keeps its last value as before.
 * A {@link NamedStatement} takes its parameters in one object, as it does alone.
 */
export function objectRows<Row>(stmt: Statement | NamedStatement): ObjectRows<Row> {
  const named = "statement" in stmt ? stmt : null;
  const raw = (named?.statement ?? (stmt as Statement)).raw(true);
  const keys = raw.columns().map((c, i) => `${JSON.stringify(c.name)}: v[${i}]`);
  // Compiled from the column names SQLite reports for our own statements, each JSON-quoted.
  const make = new Function("v", `return { ${keys.join(", ")} };`) as (v: unknown[]) => Row;
  const read: { get(params: unknown[]): unknown; all(params: unknown[]): unknown } = named
    ? {
        get: (params) => named.get(params[0] as object),
        all: (params) => named.all(params[0] as object),
      }
    : { get: (params) => raw.get(...params), all: (params) => raw.all(...params) };
  return {
    get: (...params) => {
      const values = read.get(params) as unknown[] | undefined;
      return values === undefined ? undefined : make(values);
    },
    all: (...params) => (read.all(params) as unknown[][]).map(make),
  };
}
