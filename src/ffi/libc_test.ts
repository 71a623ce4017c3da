import assert from "node:assert/strict";
import { cString, errno, ErrnoError, libc, O_RDONLY_CLOEXEC, TOLERATED, unwrap } from "./libc.ts";
import { DirWatcher } from "./inotify.ts";

/** A call that fails with ENOENT. */
const openMissing = () => libc().open(cString("/nonexistent/alumet-libc-test"), O_RDONLY_CLOEXEC, 0);
/** A call that fails with EBADF. */
const closeBad = () => libc().close(-5);

Deno.test("unwrap returns a result ≥ 0 as it is, number or bigint", () => {
  assert.equal(unwrap(0, "x"), 0);
  assert.equal(unwrap(7, "x", { tolerate: ["EAGAIN"] }), 7);
  assert.equal(unwrap(12n, "x"), 12n);
});

Deno.test("unwrap throws an ErrnoError naming the call, errno and the hint", () => {
  assert.throws(() => unwrap(openMissing(), "open(/nonexistent/alumet-libc-test)"), (e: unknown) => {
    assert.ok(e instanceof ErrnoError);
    assert.equal(e.code, "ENOENT");
    assert.equal(e.errno, 2);
    assert.equal(e.message, "open(/nonexistent/alumet-libc-test) failed: No such file or directory (ENOENT)");
    return true;
  });
  assert.throws(
    () => unwrap(closeBad(), "close(-5)", { hint: "a fixed hint" }),
    (e: unknown) =>
      e instanceof ErrnoError && e.message === "close(-5) failed: Bad file descriptor (EBADF); a fixed hint",
  );
  assert.throws(
    () =>
      unwrap(closeBad(), "close(-5)", { hint: (code) => code === "EBADF" ? `hint for ${code}` : undefined }),
    (e: unknown) => e instanceof ErrnoError && e.message.endsWith("(EBADF); hint for EBADF"),
  );
  assert.throws(
    () => unwrap(openMissing(), "open", { hint: (code) => code === "EBADF" ? "not this one" : undefined }),
    (e: unknown) => e instanceof ErrnoError && e.message.endsWith("(ENOENT)"),
  );
});

Deno.test("unwrap tolerates the listed errno values only", () => {
  assert.equal(unwrap(openMissing(), "open", { tolerate: ["ENOENT"] }), TOLERATED);
  assert.equal(errno(), 2, "errno is still readable after a tolerated failure");
  assert.equal(unwrap(closeBad(), "close", { tolerate: ["ENOENT", "EBADF"] }), TOLERATED);
  assert.throws(
    () => unwrap(openMissing(), "open", { tolerate: ["EAGAIN", "EINTR"], hint: "h" }),
    (e: unknown) => e instanceof ErrnoError && e.code === "ENOENT" && e.message.endsWith("; h"),
  );
  assert.throws(() => unwrap(-1n, "bigint", { tolerate: ["EAGAIN"] }), ErrnoError);
  assert.ok(TOLERATED < 0, "never a valid result");
});

Deno.test("DirWatcher: EAGAIN on an idle fd is no change, a missing directory is not watched", () => {
  const dir = Deno.makeTempDirSync();
  try {
    using w = DirWatcher.open();
    assert.equal(w.changed(), false, "read(2) fails with EAGAIN: tolerated");
    assert.equal(w.watch(`${dir}/missing`), false, "ENOENT: tolerated");
    assert.equal(w.watch(`${dir}/file`), false, "ENOENT too");
    Deno.writeTextFileSync(`${dir}/file`, "");
    assert.equal(w.watch(`${dir}/file`), false, "ENOTDIR: tolerated");
    assert.equal(w.watch(dir), true);
    assert.equal(w.size, 1);
    Deno.mkdirSync(`${dir}/child`);
    assert.equal(w.changed(), true);
    assert.equal(w.changed(), false);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
