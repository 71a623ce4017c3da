/**
 * The README shows the example plugin as it is: its "Writing a plugin" code block is the region of
 * examples/loadavg_plugin.ts that CI runs.
 */
import assert from "node:assert/strict";

Deno.test("README's plugin example is examples/loadavg_plugin.ts, which CI runs", async () => {
  const root = new URL("..", import.meta.url);
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const example = await Deno.readTextFile(new URL("examples/loadavg_plugin.ts", root));
  const region = /\/\/ #region plugin\n([\s\S]*?)\/\/ #endregion plugin/.exec(example)?.[1];
  assert.ok(region, "examples/loadavg_plugin.ts has no `// #region plugin` … `// #endregion plugin`");
  const section = readme.slice(readme.indexOf("## Writing a plugin"));
  const block = /```ts ignore\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(block, 'README\'s "Writing a plugin" has no ```ts ignore block');
  assert.equal(block, region);
});
