import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";

/**
 * Seals a job's secret headers with AES-256-GCM. The sealed text names the key that sealed it, so
 * keys can rotate: the first key seals, every key opens. Each seal is bound to its job's id
 * (additional authenticated data), so a sealed value moved to another job does not open.
 *
 * Format: `v1.<key id>.<iv, base64url>.<ciphertext and tag, base64url>`.
 */
export interface SecretBox {
  seal(jobId: string, headers: Record<string, string>): string;
  /** Throws if no key opens it or it was tampered with. */
  open(jobId: string, sealed: string): Record<string, string>;
}

const VERSION = "v1";
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A short, stable, non-secret name for a key: the first 8 hex digits of its SHA-256. */
export function keyId(key: Buffer): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 8);
}

/** `keys[0]` seals; all of them open. Each key is 32 bytes. */
export function createSecretBox(keys: Buffer[]): SecretBox {
  if (keys.length === 0) throw new Error("a secret box needs at least one key");
  for (const k of keys) if (k.length !== 32) throw new Error("secret keys must be 32 bytes");
  const byId = new Map(keys.map((k) => [keyId(k), k]));
  const current = keys[0]!;
  const currentId = keyId(current);

  return {
    seal(jobId, headers) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv("aes-256-gcm", current, iv);
      cipher.setAAD(Buffer.from(jobId));
      const ct = Buffer.concat([
        cipher.update(JSON.stringify(headers), "utf8"),
        cipher.final(),
        cipher.getAuthTag(),
      ]);
      return [VERSION, currentId, iv.toString("base64url"), ct.toString("base64url")].join(".");
    },
    open(jobId, sealed) {
      const parts = sealed.split(".");
      const [version, id, ivText, data] = parts;
      if (parts.length !== 4 || version !== VERSION || !id || !ivText || !data) {
        throw new Error("not a sealed value");
      }
      const key = byId.get(id);
      if (!key) {
        throw new Error(
          `sealed with key ${id}, which is not configured (not among JOBQUEUE_SECRET_KEY or the key file)`,
        );
      }
      const iv = Buffer.from(ivText, "base64url");
      const bytes = Buffer.from(data, "base64url");
      if (iv.length !== IV_BYTES || bytes.length < TAG_BYTES) throw new Error("not a sealed value");
      // The tag length is pinned: without it, GCM accepts a truncated (forgeable) tag.
      const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(jobId));
      decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
      let plain: Buffer;
      try {
        plain = Buffer.concat([
          decipher.update(bytes.subarray(0, bytes.length - TAG_BYTES)),
          decipher.final(),
        ]);
      } catch {
        // OpenSSL's own message ("unable to authenticate data") says nothing useful to an operator.
        throw new Error(`sealed value does not open with key ${id}: altered, or not this job's`);
      }
      return JSON.parse(plain.toString("utf8")) as Record<string, string>;
    },
  };
}

/** The name a job's signing secrets are sealed under (with the secret box of its headers). */
const SIGNING_SECRET_ENTRY = "signing-secret";

/** Seals a job's own signing secrets, bound to the job's id as its secret headers are. */
export function sealSigningSecrets(box: SecretBox, jobId: string, secrets: string[]): string {
  return box.seal(jobId, { [SIGNING_SECRET_ENTRY]: secrets.join(" ") });
}

/** Opens what {@link sealSigningSecrets} sealed for `jobId`; throws as {@link SecretBox.open}. */
export function openSigningSecrets(box: SecretBox, jobId: string, sealed: string): string[] {
  const text = box.open(jobId, sealed)[SIGNING_SECRET_ENTRY] ?? "";
  return text.split(" ").filter((s) => s !== "");
}
