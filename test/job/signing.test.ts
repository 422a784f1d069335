import { randomBytes } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../src/job/errors.js";
import {
  generateSigningSecret,
  parseSigningSecrets,
  requestBodyBytes,
  signatureHeaders,
} from "../../src/job/signing.js";

const OLD = generateSigningSecret(randomBytes);
const NEW = generateSigningSecret(randomBytes);

describe("signatureHeaders", () => {
  it("signs as the Standard Webhooks library verifies, with each active secret", () => {
    const body = requestBodyBytes({ kind: "json", value: { job_id: "j_1", status: "succeeded" } });
    const now = Math.floor(Date.now() / 1000);
    const headers = signatureHeaders({ id: "j_1", timestampSec: now, body, secrets: [OLD, NEW] });
    expect(headers["webhook-id"]).toBe("j_1");
    expect(headers["webhook-timestamp"]).toBe(String(now));
    expect(headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    const payload = body!.toString("utf8");
    // A receiver that knows only one of the secrets (before or after it moved over) accepts it.
    expect(new Webhook(OLD).verify(payload, headers)).toEqual({
      job_id: "j_1",
      status: "succeeded",
    });
    expect(new Webhook(NEW).verify(payload, headers)).toBeTruthy();
    // The library's own signature is the same as ours.
    expect(headers["webhook-signature"]!.split(" ")[0]).toBe(
      new Webhook(OLD).sign("j_1", new Date(now * 1000), payload),
    );
    expect(() =>
      new Webhook(generateSigningSecret(randomBytes)).verify(payload, headers),
    ).toThrow();
    expect(() => new Webhook(OLD).verify(`${payload} `, headers)).toThrow();
  });

  it("signs an empty body (a GET) over id.timestamp.", () => {
    const headers = signatureHeaders({
      id: "j_2",
      timestampSec: Date.now() / 1000,
      body: undefined,
      secrets: [OLD],
    });
    expect(() => new Webhook(OLD).verify("", headers)).not.toThrow();
  });
});

describe("parseSigningSecrets", () => {
  it("reads whsec_ secrets separated by spaces", () => {
    expect(parseSigningSecrets(` ${OLD}  ${NEW} `, "signing_secret")).toEqual([OLD, NEW]);
    expect(parseSigningSecrets([OLD, NEW], "x")).toEqual([OLD, NEW]);
  });

  it.each([
    ["no prefix", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "does not start with whsec_"],
    ["not base64", "whsec_!!!!", "not whsec_ followed by base64"],
    ["too short", `whsec_${Buffer.alloc(8).toString("base64")}`, "is 8 bytes once decoded"],
    ["too long", `whsec_${Buffer.alloc(100).toString("base64")}`, "is 100 bytes once decoded"],
  ])("refuses %s, naming the field and never the secret", (_, given, problem) => {
    let err: unknown;
    try {
      parseSigningSecrets(given, "signing_secret");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).field).toBe("signing_secret");
    expect((err as Error).message).toContain(problem);
    expect((err as Error).message).not.toContain(given.slice(6));
  });

  it("refuses more than five", () => {
    expect(() => parseSigningSecrets(Array(6).fill(OLD).join(" "), "signing_secret")).toThrow(
      /at most 5/,
    );
  });
});
