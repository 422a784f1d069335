import {
  type DescExtension,
  type DescFile,
  type DescMessage,
  type DescService,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  type ServerReflectionRequest as RequestV1,
  type ServerReflectionResponseSchema as ResponseV1Schema,
  ServerReflection as ServerReflectionV1,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { ServiceRegistration } from "./rest.js";

type ReflectionResponse = MessageInitShape<typeof ResponseV1Schema>;

/** gRPC status codes used in reflection error responses. */
const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) over the descriptors compiled into the
 * generated code, so grpcurl and `buf curl` can list and call the services without proto files.
 * Answers every query form: list services, file by name, file containing a symbol or an
 * extension, and the extension numbers of a type. File answers carry the file's transitive
 * dependencies too.
 */
export function reflectionServices(services: DescService[]): ServiceRegistration[] {
  const index = buildIndex([...services, ServerReflectionV1, ServerReflectionV1alpha]);
  const serviceNames = [
    ...services.map((s) => s.typeName),
    ServerReflectionV1.typeName,
    ServerReflectionV1alpha.typeName,
  ];

  async function* info(requests: AsyncIterable<RequestV1>) {
    for await (const req of requests) yield answer(req, index, serviceNames);
  }
  return [
    { service: ServerReflectionV1, impl: { serverReflectionInfo: info } as never },
    // v1alpha's messages have the same shape and field numbers as v1's.
    { service: ServerReflectionV1alpha, impl: { serverReflectionInfo: info } as never },
  ];
}

interface Index {
  files: Map<string, DescFile>;
  symbols: Map<string, DescFile>;
  extensions: DescExtension[];
  encoded: Map<DescFile, Uint8Array>;
}

function buildIndex(services: DescService[]): Index {
  const index: Index = { files: new Map(), symbols: new Map(), extensions: [], encoded: new Map() };
  const visit = (file: DescFile) => {
    if (index.files.has(file.name)) return;
    index.files.set(file.name, file);
    for (const dep of file.dependencies) visit(dep);
    for (const type of nestedTypes(file)) {
      index.symbols.set(type.typeName, file);
      if (type.kind === "service") {
        for (const m of type.methods) index.symbols.set(`${type.typeName}.${m.name}`, file);
      }
      if (type.kind === "extension") index.extensions.push(type);
      if (type.kind === "message") addFields(type, file, index);
    }
  };
  for (const s of services) visit(s.file);
  return index;
}

function addFields(message: DescMessage, file: DescFile, index: Index) {
  for (const f of message.fields) index.symbols.set(`${message.typeName}.${f.name}`, file);
}

function answer(req: RequestV1, index: Index, serviceNames: string[]): ReflectionResponse {
  const base = { validHost: req.host, originalRequest: req };
  const notFound = (what: string): ReflectionResponse => ({
    ...base,
    messageResponse: {
      case: "errorResponse",
      value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` },
    },
  });
  const files = (file: DescFile): ReflectionResponse => ({
    ...base,
    messageResponse: {
      case: "fileDescriptorResponse",
      value: { fileDescriptorProto: withDependencies(file).map((f) => encode(f, index)) },
    },
  });

  const q = req.messageRequest;
  switch (q.case) {
    case "listServices":
      return {
        ...base,
        messageResponse: {
          case: "listServicesResponse",
          value: { service: serviceNames.map((name) => ({ name })) },
        },
      };
    case "fileByFilename": {
      const file = index.files.get(q.value);
      return file ? files(file) : notFound(`file ${q.value}`);
    }
    case "fileContainingSymbol": {
      const file = index.symbols.get(q.value.replace(/^\./, ""));
      return file ? files(file) : notFound(`symbol ${q.value}`);
    }
    case "fileContainingExtension": {
      const ext = index.extensions.find(
        (e) =>
          e.extendee.typeName === q.value.containingType.replace(/^\./, "") &&
          e.number === q.value.extensionNumber,
      );
      return ext
        ? files(ext.file)
        : notFound(`extension ${q.value.extensionNumber} of ${q.value.containingType}`);
    }
    case "allExtensionNumbersOfType": {
      const type = q.value.replace(/^\./, "");
      if (!index.symbols.has(type)) return notFound(`type ${q.value}`);
      return {
        ...base,
        messageResponse: {
          case: "allExtensionNumbersResponse",
          value: {
            baseTypeName: type,
            extensionNumber: index.extensions
              .filter((e) => e.extendee.typeName === type)
              .map((e) => e.number),
          },
        },
      };
    }
    default:
      return {
        ...base,
        messageResponse: {
          case: "errorResponse",
          value: { errorCode: INVALID_ARGUMENT, errorMessage: "empty reflection request" },
        },
      };
  }
}

/** The file first, then every file it depends on, transitively, each once. */
function withDependencies(file: DescFile): DescFile[] {
  const out: DescFile[] = [];
  const seen = new Set<string>();
  const walk = (f: DescFile) => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    out.push(f);
    for (const dep of f.dependencies) walk(dep);
  };
  walk(file);
  return out;
}

function encode(file: DescFile, index: Index): Uint8Array {
  let bytes = index.encoded.get(file);
  if (!bytes) {
    bytes = toBinary(FileDescriptorProtoSchema, file.proto);
    index.encoded.set(file, bytes);
  }
  return bytes;
}
