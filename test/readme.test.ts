import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { SETTINGS } from "../src/config.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

describe("README", () => {
  it.each(SETTINGS.map((s) => [s.env, s.default]))("documents %s with its default", (env, def) => {
    const row = readme.split("\n").find((line) => line.startsWith(`| \`${env}\` |`));
    expect(row, `a config table row for ${env}`).toBeDefined();
    expect(row).toContain(def === "" ? "(empty)" : `\`${def}\``);
  });

  it("lists no setting the code does not have", () => {
    const documented = [...readme.matchAll(/^\| `(JOBQUEUE_[A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(SETTINGS.map((s) => s.env).sort());
  });
});
