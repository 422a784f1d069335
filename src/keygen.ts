import { generateApiKey } from "./auth/api-keys.js";
import { ROLES, type Role } from "./auth/principal.js";

/**
 * `npm run keygen -- <principal> <role>`: prints a new API key (give it to the client, once) and
 * the line that configures it (add it to JOBQUEUE_API_KEYS_FILE). Only the hash is ever stored.
 */
const [principal, role] = process.argv.slice(2);
if (!principal || !role || !(ROLES as readonly string[]).includes(role) || /\s/.test(principal)) {
  process.stderr.write(`usage: npm run keygen -- <principal> <${ROLES.join("|")}>\n`);
  process.exit(2);
}
const { key, line } = generateApiKey(principal, role as Role);
process.stdout.write(
  `API key for ${principal} (${role}); shown once, keep it secret:\n  ${key}\n\nAdd this line to the JOBQUEUE_API_KEYS_FILE file:\n  ${line}\n`,
);
