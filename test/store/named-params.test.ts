import Database from "better-sqlite3";
import { afterEach, beforeEach, expect, it } from "vitest";
import { prepareNamed } from "../../src/store/sqlite/named-params.js";
import { objectRows } from "../../src/store/sqlite/object-rows.js";

let db: Database.Database;

beforeEach(() => {
  db = new Database(":memory:");
  db.exec("CREATE TABLE t (id TEXT PRIMARY KEY, a INTEGER, b TEXT, at INTEGER, seen INTEGER)");
});

afterEach(() => db.close());

it("binds each @name from the object, a name used twice in both places, in any key order", () => {
  const insert = prepareNamed(
    db,
    "INSERT INTO t (id, a, b, at, seen) VALUES (@id, @a, @b, @now, @now)",
  );
  const res = insert.run({ now: 1_796_215_187_989, b: "x", a: 2, id: "j1", unused: "ignored" });
  expect(res.changes).toBe(1);
  expect(db.prepare("SELECT * FROM t").all()).toEqual([
    { id: "j1", a: 2, b: "x", at: 1_796_215_187_989, seen: 1_796_215_187_989 },
  ]);
});

it("binds null as NULL, but refuses a missing key instead of binding NULL", () => {
  const insert = prepareNamed(db, "INSERT INTO t (id, a, b) VALUES (@id, @a, @b)");
  insert.run({ id: "j1", a: null, b: null });
  expect(db.prepare("SELECT a, b FROM t").get()).toEqual({ a: null, b: null });
  expect(() => insert.run({ id: "j2", a: 1 })).toThrow(
    new RangeError('Missing named parameter "b"'),
  );
  expect(db.prepare("SELECT COUNT(*) AS n FROM t").get()).toEqual({ n: 1 });
});

it("reads rows by get and all, and as objects through objectRows", () => {
  prepareNamed(db, "INSERT INTO t (id, a) VALUES (@id, @a)").run({ id: "j1", a: 1 });
  prepareNamed(db, "INSERT INTO t (id, a) VALUES (@id, @a)").run({ id: "j2", a: 2 });
  const above = "SELECT id, a FROM t WHERE a >= @min ORDER BY id";
  expect(prepareNamed(db, above).get({ min: 2 })).toEqual({ id: "j2", a: 2 });
  expect(prepareNamed(db, above).all({ min: 1 })).toEqual([
    { id: "j1", a: 1 },
    { id: "j2", a: 2 },
  ]);
  const rows = objectRows<{ id: string; a: number }>(
    prepareNamed(db, "UPDATE t SET a = a + @by WHERE a >= @min RETURNING id, a"),
  );
  expect(rows.all({ by: 10, min: 2 })).toEqual([{ id: "j2", a: 12 }]);
  expect(rows.get({ by: 1, min: 100 })).toBeUndefined();
});
