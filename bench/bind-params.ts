/**
 * What binding a statement's parameters by name costs in better-sqlite3, against the same values
 * by position through src/store/sqlite/named-params.ts (the store's way): an INSERT of 9 and of 35
 * parameters (a job's insert has 35) into an in-memory table, 100,000 rows each, in one
 * transaction, the third of three runs.
 *
 *   node --import tsx bench/bind-params.ts
 */
import Database from "better-sqlite3";
import { prepareNamed } from "../src/store/sqlite/named-params.js";

const db = new Database(":memory:");
const N = 100_000;

for (const width of [9, 35]) {
  const cols = Array.from({ length: width }, (_, i) => `c${i}`);
  db.exec(`DROP TABLE IF EXISTS t; CREATE TABLE t (${cols.join(", ")})`);
  const sql = `INSERT INTO t (${cols.join(", ")}) VALUES (${cols.map((c) => `@${c}`).join(", ")})`;
  const byName = db.prepare(sql);
  const byPosition = prepareNamed(db, sql);
  // An object literal, as the store's calls pass, of values like a job's: text, integers past
  // 2^31, nulls.
  const value = (k: number) =>
    k % 3 === 0 ? "'v' + i" : k % 3 === 1 ? "1796215187989 + i" : "null";
  const row = new Function(
    "i",
    `return { ${cols.map((c, k) => `${c}: ${value(k)}`).join(", ")} };`,
  ) as (i: number) => object;
  const time = (insert: (o: object) => unknown) => {
    let us = 0;
    for (let run = 0; run < 3; run++) {
      db.exec("BEGIN; DELETE FROM t");
      const start = process.hrtime.bigint();
      for (let i = 0; i < N; i++) insert(row(i));
      us = Number(process.hrtime.bigint() - start) / N / 1000;
      db.exec("COMMIT");
    }
    return us;
  };
  const named = time((o) => byName.run(o));
  const positional = time((o) => byPosition.run(o));
  console.log(
    `${width} parameters: by name ${named.toFixed(2)} µs, by position (prepareNamed) ${positional.toFixed(2)} µs per insert`,
  );
}
