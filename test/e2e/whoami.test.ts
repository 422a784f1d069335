import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/auth/api-keys.js";
import { bearer, type Clients, createClients } from "../helpers/clients.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";

/**
 * GetCaller (REST `GET /whoami`): who the server takes the caller to be. The dashboard asks it
 * to show only what the caller's role may do.
 */
describe("GetCaller", () => {
  const reader = generateApiKey("rita", "reader");
  const admin = generateApiKey("ada", "admin");

  describe("with API keys", () => {
    let t: TestApp;
    let clients: Clients;
    beforeAll(async () => {
      t = await startTestApp({ JOBQUEUE_API_KEYS: [reader.line, admin.line].join(",") });
      clients = createClients(t.url);
    });
    afterAll(async () => {
      clients?.close();
      await t?.stop();
    });

    it("answers the principal and role of the key over REST", async () => {
      const res = await fetch(`${t.url}/whoami`, { headers: bearer(reader.key) });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        authentication_required: true,
        principal: "rita",
        role: "reader",
      });
    });

    it("answers the same over Connect", async () => {
      const res = await clients.call("connect", "GetCaller", {}, bearer(admin.key));
      expect(res.body).toEqual({
        authentication_required: true,
        principal: "ada",
        role: "ROLE_ADMIN",
      });
    });

    it("is UNAUTHENTICATED without a key, on both", async () => {
      const rest = await fetch(`${t.url}/whoami`);
      expect(rest.status).toBe(401);
      const connect = await clients.call("connect", "GetCaller", {});
      expect(connect.code).toBe(16);
    });
  });

  describe("without authentication", () => {
    let t: TestApp;
    let clients: Clients;
    beforeAll(async () => {
      t = await startTestApp();
      clients = createClients(t.url);
    });
    afterAll(async () => {
      clients?.close();
      await t?.stop();
    });

    it("says no key is needed and everyone acts as an admin", async () => {
      const res = await fetch(`${t.url}/whoami`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ authentication_required: false, role: "admin" });
      const connect = await clients.call("connect", "GetCaller", {});
      expect(connect.body).toEqual({ role: "ROLE_ADMIN" });
    });
  });
});
