import assert from "node:assert/strict";
import { cgroupFiles, detectLayout, layoutOf, parseMounts } from "./hierarchy.ts";

const fixture = (name: string) =>
  Deno.readTextFileSync(new URL(`./testdata/mounts/${name}`, import.meta.url));

Deno.test("parseMounts finds the hierarchies of each layout", async (t) => {
  await t.step("hybrid (these machines): v1 controllers, v2 at /sys/fs/cgroup/unified without memory", () => {
    const layout = layoutOf(parseMounts(fixture("hybrid_debian12.txt"), () => ["hugetlb"]));
    assert.equal(layout.v2?.mountPoint, "/sys/fs/cgroup/unified");
    assert.equal(layout.v1.get("memory")?.mountPoint, "/sys/fs/cgroup/memory");
    assert.equal(layout.v1.get("cpuacct")?.mountPoint, "/sys/fs/cgroup/cpuacct");
    const files = cgroupFiles(layout, "/test.slice", () => true);
    assert.equal(files.cpuStat, "/sys/fs/cgroup/unified/test.slice/cpu.stat");
    assert.equal(files.memoryCurrent, undefined, "v2 has no memory controller here");
    assert.equal(files.memoryUsageV1, "/sys/fs/cgroup/memory/test.slice/memory.usage_in_bytes");
    assert.equal(files.cpuacctUsage, undefined, "v2 cpu.stat is preferred");
  });
  await t.step("pure v2", () => {
    const layout = layoutOf(parseMounts(fixture("pure_v2.txt"), () => ["cpu", "memory", "io"]));
    assert.equal(layout.v1.size, 0);
    const files = cgroupFiles(layout, "system.slice/a.service", () => true);
    assert.equal(files.memoryCurrent, "/sys/fs/cgroup/system.slice/a.service/memory.current");
    assert.equal(files.ioPressure, "/sys/fs/cgroup/system.slice/a.service/io.pressure");
  });
  await t.step("pure v1, co-mounted controllers, a named hierarchy and an escaped mount point", () => {
    const hs = parseMounts(fixture("pure_v1_escaped.txt"), () => []);
    assert.deepEqual(hs.find((h) => h.name === "systemd")?.controllers, []);
    const layout = layoutOf(hs);
    assert.equal(layout.v2, undefined);
    assert.equal(layout.v1.get("cpu"), layout.v1.get("cpuacct"));
    assert.equal(layout.v1.get("pids")?.mountPoint, "/mnt/my cgroups/pids");
    const files = cgroupFiles(layout, "/", () => true);
    assert.equal(files.cpuacctUsage, "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage");
    assert.equal(files.cpuStat, undefined);
  });
});

Deno.test("detectLayout reads this machine's /proc/mounts", () => {
  const layout = detectLayout();
  const files = cgroupFiles(layout, "/");
  // Every Linux machine that runs the tests has a CPU accounting file for the root cgroup, v2 or v1.
  assert.ok(files.cpuStat !== undefined || files.cpuacctUsage !== undefined, JSON.stringify(layout));
});
