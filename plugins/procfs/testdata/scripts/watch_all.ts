/**
 * Starts 30 `sleep` processes (so that /proc has enough processes whatever the machine), then procfs with its
 * default config (Alumet's group: every process), runs the process watcher twice on the live /proc, and prints
 * how many processes its group follows. Run by process_test.ts under a low `ulimit -n`, to see how the plugin
 * reports processes it cannot open.
 */
import { testPlugin } from "../../../../src/testing/mod.ts";
import { type ProcessGroupSource, procfsPlugin } from "../../mod.ts";

// Started by one shell that exits at once: the sleeps cost this process no descriptor.
const started = await new Deno.Command("sh", {
  args: ["-c", 'for i in $(seq 30); do sleep 20 </dev/null >/dev/null 2>&1 & echo $!; done'],
}).output();
const children = new TextDecoder().decode(started.stdout).trim().split("\n").map(Number);
await using h = await testPlugin(procfsPlugin, {
  kernel: { enabled: false },
  memory: { enabled: false },
  network: { enabled: false },
});
if (Deno.env.get("WATCH_ALL_COUNT_FDS") === "1") {
  // Calibration: the descriptors this process holds before it scans (the test sets the limit a little above).
  console.log(`fds ${[...Deno.readDirSync("/proc/self/fd")].length}`);
  for (const pid of children) Deno.kill(pid, "SIGKILL");
  Deno.exit(0);
}
// Once the followed processes hold every descriptor, listing /proc itself may fail: the agent's task runner
// logs that once; here it is printed for the test to check its hint.
for (let i = 0; i < 2; i++) {
  try {
    await h.runTask("process-watcher");
  } catch (e) {
    console.log(`scan failed: ${e instanceof Error ? e.message : e}`);
  }
}
const group = h.sources.get("group-0")?.source as ProcessGroupSource | undefined;
console.log(`followed ${group?.pids.length ?? -1}`);
for (const pid of children) Deno.kill(pid, "SIGKILL");
