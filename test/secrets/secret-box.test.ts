import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createSecretBox, keyId } from "../../src/secrets/secret-box.js";

const JOB = "j_01JH0000000000000000000000";
const OTHER_JOB = "j_01JH0000000000000000000001";
const HEADERS = {
  Authorization: "Bearer s3cr3t-token-value",
  "X-Signature": "sig=abc/+==",
  Cookie: "a=1; b=ü",
};

const keyA = randomBytes(32);
const keyB = randomBytes(32);

/** Returns `sealed` with one byte of its decoded part `index` (2: IV, 3: ciphertext and tag) flipped. */
function flipByte(sealed: string, index: 2 | 3, at: number): string {
  const parts = sealed.split(".");
  const bytes = Buffer.from(parts[index]!, "base64url");
  const i = at < 0 ? bytes.length + at : at;
  bytes[i] = bytes[i]! ^ 0x01;
  parts[index] = bytes.toString("base64url");
  return parts.join(".");
}

describe("keyId", () => {
  it("is the first 8 hex digits of the key's SHA-256: stable, short, and different per key", () => {
    expect(keyId(keyA)).toMatch(/^[0-9a-f]{8}$/);
    expect(keyId(Buffer.from(keyA))).toBe(keyId(keyA));
    expect(keyId(keyB)).not.toBe(keyId(keyA));
  });
});

describe("createSecretBox", () => {
  it("refuses no keys and keys that are not 32 bytes", () => {
    expect(() => createSecretBox([])).toThrow(/at least one key/);
    expect(() => createSecretBox([randomBytes(31)])).toThrow(/32 bytes/);
    expect(() => createSecretBox([keyA, randomBytes(33)])).toThrow(/32 bytes/);
  });
});

describe("seal and open", () => {
  it("round-trips the headers exactly, names and values, unicode included", () => {
    const box = createSecretBox([keyA]);
    expect(box.open(JOB, box.seal(JOB, HEADERS))).toEqual(HEADERS);
    expect(box.open(JOB, box.seal(JOB, {}))).toEqual({});
  });

  it("writes v1.<key id>.<iv>.<ciphertext+tag> in base64url, without the plaintext", () => {
    const box = createSecretBox([keyA]);
    const sealed = box.seal(JOB, HEADERS);
    expect(sealed).toMatch(/^v1\.[0-9a-f]{8}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
    expect(sealed.split(".")[1]).toBe(keyId(keyA));
    for (const value of Object.values(HEADERS)) expect(sealed).not.toContain(value);
    expect(sealed).not.toContain("Bearer");
    expect(sealed).not.toContain(keyA.toString("base64url"));
  });

  it("uses a fresh IV each time: the same headers seal differently, and both open", () => {
    const box = createSecretBox([keyA]);
    const one = box.seal(JOB, HEADERS);
    const two = box.seal(JOB, HEADERS);
    expect(one).not.toBe(two);
    expect(one.split(".")[2]).not.toBe(two.split(".")[2]);
    expect(box.open(JOB, one)).toEqual(HEADERS);
    expect(box.open(JOB, two)).toEqual(HEADERS);
  });

  it("opens with a box built from the same key bytes (a restart)", () => {
    const sealed = createSecretBox([keyA]).seal(JOB, HEADERS);
    expect(createSecretBox([Buffer.from(keyA)]).open(JOB, sealed)).toEqual(HEADERS);
  });
});

describe("tampering", () => {
  const box = createSecretBox([keyA]);
  const sealed = box.seal(JOB, HEADERS);

  it.each([
    ["the first ciphertext byte", 3, 0],
    ["a byte of the authentication tag", 3, -1],
    ["a byte of the IV", 2, 5],
  ] as const)("a flipped bit in %s makes open throw", (_what, index, at) => {
    expect(() => box.open(JOB, flipByte(sealed, index, at))).toThrow(
      `sealed value does not open with key ${keyId(keyA)}`,
    );
  });

  it("a truncated ciphertext or tag makes open throw", () => {
    const parts = sealed.split(".");
    const data = Buffer.from(parts[3]!, "base64url");
    for (const cut of [1, 4, 12, 16, data.length - 1]) {
      const shorter = [
        ...parts.slice(0, 3),
        data.subarray(0, data.length - cut).toString("base64url"),
      ];
      expect(() => box.open(JOB, shorter.join("."))).toThrow();
    }
  });

  it("a value sealed for one job does not open for another (the job id is bound in)", () => {
    expect(() => box.open(OTHER_JOB, sealed)).toThrow(/does not open/);
  });

  it("a value relabelled with another configured key's id does not open", () => {
    const both = createSecretBox([keyA, keyB]);
    const relabelled = sealed.replace(`.${keyId(keyA)}.`, `.${keyId(keyB)}.`);
    expect(() => both.open(JOB, relabelled)).toThrow(/does not open with key/);
  });

  it.each([
    ["an empty string", ""],
    ["plain text", "Bearer s3cr3t-token-value"],
    ["an unknown version", sealed.replace(/^v1\./, "v2.")],
    ["a missing part", sealed.split(".").slice(0, 3).join(".")],
    ["an extra part", `${sealed}.x`],
    ["a short IV", [...sealed.split(".").slice(0, 2), "AAAA", sealed.split(".")[3]].join(".")],
  ])("%s is not a sealed value", (_what, text) => {
    expect(() => box.open(JOB, text)).toThrow("not a sealed value");
  });
});

describe("keys and rotation", () => {
  it("an unknown key id throws, naming the key and that it is not configured", () => {
    const sealed = createSecretBox([keyA]).seal(JOB, HEADERS);
    const err = (() => {
      try {
        createSecretBox([keyB]).open(JOB, sealed);
      } catch (e) {
        return e as Error;
      }
      throw new Error("open did not throw");
    })();
    expect(err.message).toContain(`key ${keyId(keyA)}`);
    expect(err.message).toMatch(/not configured/);
    expect(err.message).toContain("JOBQUEUE_SECRET_KEY");
    // Neither key's bytes appear in the message.
    for (const k of [keyA, keyB]) {
      expect(err.message).not.toContain(k.toString("hex"));
      expect(err.message).not.toContain(k.toString("base64"));
    }
  });

  it("the first key seals; every key opens: rotation from A to B,A keeps A's values readable", () => {
    const old = createSecretBox([keyA]).seal(JOB, HEADERS);
    const rotated = createSecretBox([keyB, keyA]);
    expect(rotated.open(JOB, old)).toEqual(HEADERS);
    const fresh = rotated.seal(JOB, HEADERS);
    expect(fresh.split(".")[1]).toBe(keyId(keyB));
    expect(rotated.open(JOB, fresh)).toEqual(HEADERS);
    // Once A is dropped, B's values still open and A's do not.
    const onlyB = createSecretBox([keyB]);
    expect(onlyB.open(JOB, fresh)).toEqual(HEADERS);
    expect(() => onlyB.open(JOB, old)).toThrow(/not configured/);
  });
});
