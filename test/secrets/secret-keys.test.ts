import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadOrCreateKeyFile, parseSecretKeys } from "../../src/secrets/secret-keys.js";

const key = randomBytes(32);
const other = randomBytes(32);

describe("parseSecretKeys", () => {
  it.each([
    ["64 hex digits", key.toString("hex"), [key]],
    ["64 upper-case hex digits", key.toString("hex").toUpperCase(), [key]],
    ["base64", key.toString("base64"), [key]],
    [
      "a comma list, spaces and empty entries ignored, in order",
      ` ${key.toString("hex")} ,, ${other.toString("base64")} ,`,
      [key, other],
    ],
  ])("reads %s", (_what, raw, keys) => {
    expect(parseSecretKeys(raw)).toEqual(keys);
  });

  it.each([
    ["too short hex", key.toString("hex").slice(2), /key 1 is not 32 bytes/],
    ["too long base64", randomBytes(33).toString("base64"), /key 1 is not 32 bytes/],
    ["not base64", "not a key at all", /key 1 is not 32 bytes/],
    ["a bad second key", `${key.toString("hex")},abc`, /key 2 is not 32 bytes/],
  ])("refuses %s, naming the key by position only", (_what, raw, message) => {
    let err: Error | undefined;
    try {
      parseSecretKeys(raw);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(message);
    expect(err?.message).not.toContain(raw.split(",").at(-1));
  });

  it("refuses commas and spaces without a key (unset is the empty string, not this)", () => {
    expect(() => parseSecretKeys(" , ,")).toThrow("holds no key");
  });
});

describe("loadOrCreateKeyFile", () => {
  let dir: string;
  let logs: string[];
  const logger = () => pino({ level: "trace" }, { write: (line: string) => logs.push(line) });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "jobqueue-keys-"));
    logs = [];
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("generates a 32-byte key once into a mode 0600 file, warns, and reads the same key after", () => {
    const path = join(dir, "secret.key");
    const first = loadOrCreateKeyFile(path, logger());
    expect(first).toHaveLength(32);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(parseSecretKeys(readFileSync(path, "utf8"))).toEqual([first]);
    expect(logs.join("")).toMatch(/"level":40.*generated a key into this file/);
    // The warning names the file, never the key.
    expect(logs.join("")).toContain(path);
    expect(logs.join("")).not.toContain(first.toString("base64"));

    logs = [];
    expect(loadOrCreateKeyFile(path, logger())).toEqual(first);
    expect(readFileSync(path, "utf8")).toBe(`${first.toString("base64")}\n`);
    expect(logs.join("")).toMatch(/"level":40.*using the generated key file/);
    expect(logs.join("")).not.toMatch(/readable by others/);
  });

  it("warns when the file is readable by others, and still uses it", () => {
    const path = join(dir, "secret.key");
    writeFileSync(path, key.toString("hex"));
    chmodSync(path, 0o644);
    expect(loadOrCreateKeyFile(path, logger())).toEqual(key);
    expect(logs.join("")).toMatch(/readable by others; chmod 600 it/);
  });

  it("refuses a file that holds no valid key instead of replacing it", () => {
    const path = join(dir, "secret.key");
    writeFileSync(path, "garbage\n", { mode: 0o600 });
    expect(() => loadOrCreateKeyFile(path, logger())).toThrow(
      `the secret key file ${path}: key 1 is not 32 bytes`,
    );
    writeFileSync(path, "\n");
    expect(() => loadOrCreateKeyFile(path, logger())).toThrow(
      `the secret key file ${path}: holds no key`,
    );
    expect(readFileSync(path, "utf8")).toBe("\n");
  });
});
