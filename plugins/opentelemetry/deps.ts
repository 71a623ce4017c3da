/**
 * The opentelemetry output's external dependency, pinned: `@bufbuild/protobuf`'s wire module (a small protobuf
 * writer and reader, no code generation). It loads only when the output is enabled (the plugin's module is
 * imported lazily).
 *
 * @module
 */
export { BinaryReader, BinaryWriter, WireType } from "npm:@bufbuild/protobuf@2.17.0/wire";
