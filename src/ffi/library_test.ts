import assert from "node:assert/strict";
import { diagnoseLibrary, LibraryError, type LibrarySpec, openLibrary } from "./library.ts";

/** True when a C compiler is on PATH (the tests that build a library need one; the others run anyway). */
function hasGcc(): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (dir !== "" && Deno.statSync(`${dir}/gcc`).isFile) return true;
    } catch { /* not there */ }
  }
  return false;
}

const GCC = hasGcc();

/** The symbol the test libraries export: `int answer(void)`. */
const ANSWER = { answer: { parameters: [], result: "i32" } } as const;

/** Builds `lib<name>.so` in `dir`, whose `answer()` returns `value` (no `answer` at all when undefined). */
async function buildLibrary(dir: string, name: string, value: number | undefined): Promise<string> {
  const source = `${dir}/${name}.c`;
  const path = `${dir}/lib${name}.so`;
  await Deno.writeTextFile(
    source,
    value === undefined ? "int other(void) { return 0; }\n" : `int answer(void) { return ${value}; }\n`,
  );
  const r = await new Deno.Command("gcc", { args: ["-shared", "-fPIC", "-o", path, source], stderr: "piped" })
    .output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  return path;
}

/** Runs `fn` with a temporary directory holding `libone.so` (1), `libtwo.so` (2) and `libnone.so` (no symbol). */
async function withLibraries(
  fn: (libs: { dir: string; one: string; two: string; none: string }) => void | Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "alumet_library_test_" });
  try {
    const [one, two, none] = await Promise.all([
      buildLibrary(dir, "one", 1),
      buildLibrary(dir, "two", 2),
      buildLibrary(dir, "none", undefined),
    ]);
    await fn({ dir, one, two, none });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Sets an environment variable for the time of `fn`. */
function withEnv(name: string, value: string | undefined, fn: () => void): void {
  const before = Deno.env.get(name);
  if (value === undefined) Deno.env.delete(name);
  else Deno.env.set(name, value);
  try {
    fn();
  } finally {
    if (before === undefined) Deno.env.delete(name);
    else Deno.env.set(name, before);
  }
}

const NVML_LIKE: LibrarySpec = {
  name: "NVML (libnvidia-ml)",
  candidates: ["libalumet-test-missing.so.1", "libalumet-test-missing.so"],
  env: "ALUMET_TEST_MISSING_LIBRARY",
  install: "install the NVIDIA driver (it ships libnvidia-ml.so.1)",
};

Deno.test("a library that no candidate provides gives one error naming each try and the fix", () => {
  withEnv(NVML_LIKE.env!, undefined, () => {
    assert.throws(() => openLibrary(NVML_LIKE, {}), (e: unknown) => {
      assert.ok(e instanceof LibraryError);
      assert.equal(e.denied, false);
      assert.deepEqual(e.attempts.map((a) => a.candidate), NVML_LIKE.candidates);
      for (const a of e.attempts) assert.match(a.message, /cannot open shared object file/);
      assert.equal(
        e.message,
        "Cannot load NVML (libnvidia-ml): tried " +
          "libalumet-test-missing.so.1 (cannot open shared object file: No such file or directory), " +
          "libalumet-test-missing.so (cannot open shared object file: No such file or directory); " +
          "install the NVIDIA driver (it ships libnvidia-ml.so.1), " +
          "or set ALUMET_TEST_MISSING_LIBRARY to the library's path",
      );
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    });
  });
});

Deno.test("a wrong path in the environment override is named, and the candidates are not tried", () => {
  withEnv(NVML_LIKE.env!, "/nonexistent/libnvidia-ml.so.1", () => {
    assert.throws(() => openLibrary(NVML_LIKE, {}), (e: unknown) => {
      assert.ok(e instanceof LibraryError);
      assert.deepEqual(e.attempts.map((a) => a.candidate), ["/nonexistent/libnvidia-ml.so.1"]);
      assert.equal(
        e.message,
        "Cannot load NVML (libnvidia-ml): tried ALUMET_TEST_MISSING_LIBRARY=/nonexistent/libnvidia-ml.so.1 " +
          "(cannot open shared object file: No such file or directory); check ALUMET_TEST_MISSING_LIBRARY, " +
          "or unset it to try libalumet-test-missing.so.1, libalumet-test-missing.so",
      );
      return true;
    });
  });
});

Deno.test("an empty environment override counts as unset", () => {
  withEnv("ALUMET_TEST_LIBC_LIBRARY", "", () => {
    const { library, path } = openLibrary(
      { name: "libc", candidates: ["libc.so.6"], env: "ALUMET_TEST_LIBC_LIBRARY" },
      { getpid: { parameters: [], result: "i32" } },
    );
    assert.equal(path, "libc.so.6");
    assert.equal(library.symbols.getpid(), Deno.pid);
    library.close();
  });
});

Deno.test({
  name: "candidates are tried in order; one without the symbols is skipped with its message",
  ignore: !GCC,
  fn: () =>
    withLibraries(({ dir, one, two, none }) => {
      const first = openLibrary({ name: "t", candidates: [`${dir}/libmissing.so`, one, two] }, ANSWER);
      assert.equal(first.path, one);
      assert.equal(first.library.symbols.answer(), 1);
      first.library.close();
      const second = openLibrary({ name: "t", candidates: [two, one] }, ANSWER);
      assert.equal(second.library.symbols.answer(), 2);
      second.library.close();
      const skipped = openLibrary({ name: "t", candidates: [none, two] }, ANSWER);
      assert.equal(skipped.path, two);
      skipped.library.close();
      assert.throws(() => openLibrary({ name: "t", candidates: [none] }, ANSWER), (e: unknown) => {
        assert.ok(e instanceof LibraryError);
        assert.match(e.attempts[0]!.message, /answer/, "the missing symbol is named");
        assert.equal(e.fix, "install it");
        return true;
      });
    }),
});

Deno.test({
  name: "the environment override replaces the candidates",
  ignore: !GCC,
  fn: () =>
    withLibraries(({ one, two }) => {
      const spec: LibrarySpec = { name: "t", candidates: [one], env: "ALUMET_TEST_LIBRARY" };
      withEnv("ALUMET_TEST_LIBRARY", two, () => {
        const { library, path } = openLibrary(spec, ANSWER);
        assert.equal(path, two);
        assert.equal(library.symbols.answer(), 2);
        library.close();
      });
      withEnv("ALUMET_TEST_LIBRARY", undefined, () => {
        const { library } = openLibrary(spec, ANSWER);
        assert.equal(library.symbols.answer(), 1);
        library.close();
      });
    }),
});

Deno.test("diagnoseLibrary: a doctor line with what was tried and the fix", () => {
  withEnv(NVML_LIKE.env!, undefined, () => {
    assert.deepEqual(diagnoseLibrary("libc", { name: "libc", candidates: ["libc.so.6"] }), {
      check: "libc",
      ok: true,
      detail: "libc.so.6 loads",
    });
    const d = diagnoseLibrary("NVIDIA GPUs (NVML)", NVML_LIKE);
    assert.equal(d.ok, false);
    assert.match(d.detail, /^tried libalumet-test-missing\.so\.1 \(cannot open shared object file/);
    assert.equal(
      d.fix,
      "install the NVIDIA driver (it ships libnvidia-ml.so.1), or set ALUMET_TEST_MISSING_LIBRARY to the library's path",
    );
  });
});

Deno.test("without --allow-ffi: the error says so, and the doctor line gives the flag", async () => {
  const script = `
    import { diagnoseLibrary, LibraryError, openLibrary } from ${
    JSON.stringify(import.meta.resolve("./library.ts"))
  };
    import { libc } from ${JSON.stringify(import.meta.resolve("./libc.ts"))};
    const out = {};
    try { libc(); } catch (e) { out.libc = [e instanceof LibraryError, e.denied, e.message]; }
    try { libc(); } catch (e) { out.again = e.message; }
    out.doctor = diagnoseLibrary("native calls (FFI)", { name: "libc", candidates: ["libc.so.6"] });
    console.log(JSON.stringify(out));
  `;
  const file = await Deno.makeTempFile({ prefix: "alumet_library_test_", suffix: ".ts" });
  await Deno.writeTextFile(file, script);
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", "--no-prompt", "--allow-read", file],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output().finally(() => Deno.remove(file));
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  const out = JSON.parse(new TextDecoder().decode(r.stdout));
  const message = "Native calls are not allowed: run Deno with --allow-ffi (the alumet task does)";
  assert.deepEqual(out.libc, [true, true, message]);
  assert.equal(out.again, message);
  assert.deepEqual(out.doctor, {
    check: "native calls (FFI)",
    ok: false,
    detail: "Deno runs without --allow-ffi",
    fix: "run Deno with --allow-ffi (the alumet task does)",
  });
});
