// `npm run generate` (after buf generate): writes openapi/openapi.json, the OpenAPI 3.1 document
// of the REST API, from the service descriptors in gen/ (the ones the server derives its REST
// routes from) and the comments of proto/ (read from `buf build`, which keeps source info).
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createFileRegistry,
  type DescEnum,
  type DescFile,
  type DescMessage,
  fromBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { JobQueueService } from "../gen/jobqueue/v1/job_queue_service_pb.js";
import { QueueService } from "../gen/jobqueue/v1/queue_service_pb.js";
import { ScheduleService } from "../gen/jobqueue/v1/schedule_service_pb.js";
import { buildOpenApiDocument } from "../src/openapi/openapi-document.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "openapi/openapi.json");

const built = spawnSync(
  join(root, "node_modules/.bin/buf"),
  ["build", "--as-file-descriptor-set", "-o", "-#format=binpb"],
  { cwd: root, maxBuffer: 64 << 20 },
);
if (built.status !== 0) {
  process.stderr.write(built.stderr);
  process.exit(1);
}
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, built.stdout));

/** Leading comments of every element, by full name. */
const comments = new Map<string, string>();
for (const file of registry.files) collect(file);

function collect(file: DescFile) {
  const locations = new Map<string, string>();
  for (const loc of file.proto.sourceCodeInfo?.location ?? []) {
    if (loc.leadingComments) locations.set(loc.path.join("."), loc.leadingComments);
  }
  const note = (name: string, path: number[]) => {
    const text = locations.get(path.join("."));
    if (text) comments.set(name, tidy(text));
  };
  const enumOf = (e: DescEnum, path: number[]) => {
    note(e.typeName, path);
    e.values.forEach((v, i) => {
      note(`${e.typeName}.${v.name}`, [...path, 2, i]);
    });
  };
  const messageOf = (m: DescMessage, path: number[]) => {
    note(m.typeName, path);
    m.proto.field.forEach((f, i) => {
      note(`${m.typeName}.${f.name}`, [...path, 2, i]);
    });
    m.nestedMessages.forEach((n, i) => {
      messageOf(n, [...path, 3, i]);
    });
    m.nestedEnums.forEach((e, i) => {
      enumOf(e, [...path, 4, i]);
    });
  };
  file.messages.forEach((m, i) => {
    messageOf(m, [4, i]);
  });
  file.enums.forEach((e, i) => {
    enumOf(e, [5, i]);
  });
  file.services.forEach((s, i) => {
    note(s.typeName, [6, i]);
    s.methods.forEach((m, j) => {
      note(`${s.typeName}.${m.name}`, [6, i, 2, j]);
    });
  });
}

/** A proto comment as prose: lines of a paragraph joined, paragraphs kept apart. */
function tidy(text: string): string {
  return text
    .split(/\n\s*\n/)
    .map((p) =>
      p
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l !== "")
        .join(" "),
    )
    .filter((p) => p !== "")
    .join("\n\n");
}

const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  version: string;
};
const document = buildOpenApiDocument({
  services: [JobQueueService, QueueService, ScheduleService],
  version,
  comments: (name) => comments.get(name),
});
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(document, null, 2)}\n`);
