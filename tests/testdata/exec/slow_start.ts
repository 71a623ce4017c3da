// A plugin for tests/exec_watch_test.ts whose start takes a while: it writes `<dir>/starting` when its start
// begins, then waits `delay_ms` (default 3000) before it returns, so that a test can signal the agent while
// it is starting. It measures nothing.
export default {
  name: "slow-start",
  version: "1.0.0",
  defaultConfig: () => ({ dir: "", delay_ms: 3000 }),
  init: (config: { dir: string; delay_ms: number }) => ({
    async start() {
      if (config.dir === "") throw new Error("slow-start: dir is required");
      Deno.writeTextFileSync(`${config.dir}/starting`, "");
      await new Promise((r) => setTimeout(r, config.delay_ms));
    },
  }),
};
