import type { Command } from "commander";
import { generateApiKey } from "../../auth/api-keys.js";
import { ROLES, type Role } from "../../auth/principal.js";
import { CliError, EXIT } from "../exit-codes.js";

/**
 * `keygen <principal> <role>` (also `npm run keygen -- <principal> <role>`): prints a new API key
 * (give it to the client, once) and the line that configures it (add it to
 * JOBQUEUE_API_KEYS_FILE). Only the hash is ever stored. Needs no server.
 */
export function registerKeygen(program: Command): void {
  program
    .command("keygen")
    .description("make a new API key and the line that configures it (no server needed)")
    .argument("<principal>", "who the key is for (no spaces)")
    .argument("<role>", ROLES.join(", "))
    .action((principal: string, role: string) => {
      if (!(ROLES as readonly string[]).includes(role) || /\s/.test(principal)) {
        throw new CliError(`usage: jobqueue keygen <principal> <${ROLES.join("|")}>`, EXIT.usage);
      }
      const { key, line } = generateApiKey(principal, role as Role);
      process.stdout.write(
        `API key for ${principal} (${role}); shown once, keep it secret:\n  ${key}\n\nAdd this line to the JOBQUEUE_API_KEYS_FILE file:\n  ${line}\n`,
      );
    });
}
