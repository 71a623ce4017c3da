/**
 * The npm dependencies of the `prometheus-remote-write` plugin, pinned: `@bufbuild/protobuf`'s wire module (a
 * protobuf writer and reader without code generation) and `snappyjs` (the block format remote write uses). Only
 * this plugin imports them, so an agent that does not enable it never loads them.
 *
 * @module
 */
export { BinaryReader, BinaryWriter, WireType } from "npm:@bufbuild/protobuf@2.17.0/wire";
/** `snappyjs` (no type declarations): `compress(Uint8Array): Uint8Array`, `uncompress(Uint8Array): Uint8Array`. */
export { default as SnappyJS } from "npm:snappyjs@0.7.0";
