// Tests-only dependency: the official OTLP protobuf schema, as the protobufjs root that
// @opentelemetry/otlp-transformer ships (0.57.x and 0.200–0.217; 0.218 and later only encode). Used by the test
// receiver to decode what the output sends; never loaded by the plugin.
// deno-lint-ignore-file
import root from "npm:@opentelemetry/otlp-transformer@0.217.0/build/src/generated/root.js";
export const otlpRoot: any = root;
