import assert from "node:assert/strict";
import { PathPattern, PatternError, walkMatching } from "./pattern.ts";

Deno.test("PathPattern matches cgroup paths segment by segment", async (t) => {
  const cases: [pattern: string, path: string, matches: boolean][] = [
    // one level
    ["system.slice/*", "/system.slice/cron.service", true],
    ["system.slice/*", "/system.slice", false],
    ["system.slice/*", "/system.slice/a.service/sub", false],
    ["/system.slice/*", "/system.slice/cron.service", true],
    ["system.slice/*.service", "/system.slice/cron.service", true],
    ["system.slice/*.service", "/system.slice/session-1.scope", false],
    // any depth: the base itself and everything below it
    ["kubepods*/**", "/kubepods.slice", true],
    ["kubepods*/**", "/kubepods", true],
    ["kubepods*/**", "/kubepods.slice/kubepods-burstable.slice/pod1/cri-containerd-abc.scope", true],
    ["kubepods*/**", "/system.slice", false],
    ["kubepods*/**", "/", false],
    ["**", "/", true],
    ["**", "/a/b/c", true],
    ["/**/docker-*.scope", "/system.slice/docker-0123.scope", true],
    ["/**/docker-*.scope", "/docker-0123.scope", true],
    ["/**/docker-*.scope", "/system.slice/docker-0123.scope/init", false],
    ["a/**/b", "/a/b", true],
    ["a/**/b", "/a/x/y/b", true],
    ["a/**/b", "/a/x/y/c", false],
    // exact paths, with or without the leading or trailing slash
    ["/user.slice/user-1000.slice", "/user.slice/user-1000.slice", true],
    ["user.slice/user-1000.slice/", "/user.slice/user-1000.slice", true],
    ["/user.slice/user-1000.slice", "/user.slice/user-1001.slice", false],
    ["/user.slice/user-1000.slice", "/user.slice", false],
    ["/", "/", true],
    ["/", "/a", false],
    // ? is one character; regular-expression characters are literal
    ["pod?", "/pod1", true],
    ["pod?", "/pod12", false],
    ["a+b(c)", "/a+b(c)", true],
    ["a.b", "/aXb", false],
    ["*", "/", false],
  ];
  for (const [pattern, path, expected] of cases) {
    await t.step(`${pattern} ${expected ? "matches" : "does not match"} ${path}`, () => {
      assert.equal(new PathPattern(pattern).matches(path), expected);
    });
  }
});

Deno.test("PathPattern rejects patterns that cannot mean a cgroup path", () => {
  for (const bad of ["", "  ", "a//b", "a**", "**b/c", "../x", "a/./b"]) {
    assert.throws(() => new PathPattern(bad), PatternError, JSON.stringify(bad));
  }
});

Deno.test("walkMatching lists only the directories the patterns can match below", async (t) => {
  // A big tree: the walk must not list what no pattern can reach.
  const tree: Record<string, string[]> = {
    "/r": ["system.slice", "user.slice", "kubepods.slice", "init.scope"],
    "/r/system.slice": ["a.service", "b.service", "c.socket"],
    "/r/system.slice/a.service": ["sub"],
    "/r/system.slice/a.service/sub": [],
    "/r/system.slice/b.service": [],
    "/r/system.slice/c.socket": [],
    "/r/user.slice": ["user-1000.slice"],
    "/r/user.slice/user-1000.slice": ["session-1.scope"],
    "/r/user.slice/user-1000.slice/session-1.scope": [],
    "/r/kubepods.slice": ["pod1", "pod2"],
    "/r/kubepods.slice/pod1": ["ctr"],
    "/r/kubepods.slice/pod1/ctr": [],
    "/r/kubepods.slice/pod2": [],
    "/r/init.scope": [],
  };
  const walk = (patterns: string[]) => {
    const listed: string[] = [];
    const found = walkMatching("/r", patterns.map((p) => new PathPattern(p)), (dir) => {
      listed.push(dir);
      const names = tree[dir];
      if (names === undefined) throw new Deno.errors.NotFound(dir);
      return names;
    });
    return { found: found.sort(), listed: listed.sort() };
  };
  await t.step("one level lists the root and that level's parent only", () => {
    const { found, listed } = walk(["system.slice/*.service"]);
    assert.deepEqual(found, ["/system.slice/a.service", "/system.slice/b.service"]);
    assert.deepEqual(listed, ["/r", "/r/system.slice"]);
  });
  await t.step("any depth lists the subtree it covers, and nothing else", () => {
    const { found, listed } = walk(["kubepods*/**"]);
    assert.deepEqual(found, [
      "/kubepods.slice",
      "/kubepods.slice/pod1",
      "/kubepods.slice/pod1/ctr",
      "/kubepods.slice/pod2",
    ]);
    assert.deepEqual(listed, [
      "/r",
      "/r/kubepods.slice",
      "/r/kubepods.slice/pod1",
      "/r/kubepods.slice/pod1/ctr",
      "/r/kubepods.slice/pod2",
    ]);
  });
  await t.step("several patterns are walked together, each cgroup found once", () => {
    const { found } = walk(["/", "/user.slice/user-1000.slice", "system.slice/*", "/system.slice/a.service"]);
    assert.deepEqual(found, [
      "/",
      "/system.slice/a.service",
      "/system.slice/b.service",
      "/system.slice/c.socket",
      "/user.slice/user-1000.slice",
    ]);
  });
  await t.step("a directory removed during the walk is skipped", () => {
    // "ghost" is listed by its parent, then is gone when it is listed in turn.
    const readDir = (dir: string) => {
      if (dir === "/r") return ["ghost", "init.scope"];
      if (dir === "/r/init.scope") return [];
      throw new Deno.errors.NotFound(dir);
    };
    const found = walkMatching("/r", [new PathPattern("ghost/*"), new PathPattern("*")], readDir);
    assert.deepEqual(found.sort(), ["/ghost", "/init.scope"]);
  });
  await t.step("a missing root has no cgroup; an unreadable one is an error, not an empty hierarchy", () => {
    const missing = () => {
      throw new Deno.errors.NotFound("/r");
    };
    assert.deepEqual(walkMatching("/r", [new PathPattern("**")], missing), []);
    const denied = () => {
      throw new Deno.errors.NotCapable('Requires all access to "/r"');
    };
    assert.throws(() => walkMatching("/r", [new PathPattern("**")], denied), Deno.errors.NotCapable);
  });
});
