import { Webhook } from "standardwebhooks";

/**
 * Verifies a received request as a Standard Webhooks receiver would, with the `standardwebhooks`
 * library and one secret: throws if it does not verify; returns the parsed JSON body (the text
 * with `text`).
 */
export function verifyWebhook(
  req: { body: Buffer; headers: Record<string, unknown> },
  secret: string,
  text = false,
): unknown {
  const headers = Object.fromEntries(
    ["webhook-id", "webhook-timestamp", "webhook-signature"].map((h) => [
      h,
      String(req.headers[h]),
    ]),
  );
  return new Webhook(secret).verify(req.body.toString("utf8"), headers, { jsonParse: !text });
}
