import { checkMetricsTable } from "../../src/testing/readme.ts";
import { KERNEL_METRICS, NETWORK_METRICS, PROCESS_METRICS } from "./metrics.ts";

Deno.test("README metrics table matches the declared metrics", async () =>
  checkMetricsTable(
    await Deno.readTextFile(new URL("./README.md", import.meta.url)),
    KERNEL_METRICS,
    NETWORK_METRICS,
    PROCESS_METRICS,
  ));
