import { deepEqual, equal, match, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { DURATION_UNITS } from "../model/duration.ts";
import type { PluginMetadata } from "../plugin/plugin.ts";
import { duration, z } from "../plugin/schema.ts";
import {
  DEFAULT_SOURCE_CHANNEL_SIZE,
  loadConfig,
  parseConfigText,
  type PluginSection,
  type RawConfig,
  renderDefaultConfig,
  selectPlugins,
  validateSection,
} from "./config.ts";

const noEnv = (_name: string): string | undefined => undefined;

/** Asserts that `fn` throws a ConfigError with exactly `message`. */
function throwsConfig(fn: () => unknown, message: string): void {
  throws(fn, (e: unknown) => {
    ok(e instanceof ConfigError, `expected a ConfigError, got ${e}`);
    equal(e.message, message);
    return true;
  });
}

function meta(name: string, defaults: Record<string, unknown> = {}): PluginMetadata<unknown> {
  return { name, version: "0.1.0", defaultConfig: () => defaults, init: () => ({ start() {} }) };
}

const known = new Map(["rapl", "csv", "procfs", "perf"].map((n) => [n, meta(n)]));

const demoSchema = z.strictObject({
  poll_interval: duration(),
  csv_delimiter: z.string(),
  mode: z.enum(["append", "truncate"]),
  sub: z.strictObject({ depth: z.int().min(1), tags: z.array(z.string()) }),
});
const demo: PluginMetadata<z.infer<typeof demoSchema>> = {
  name: "demo",
  version: "0.1.0",
  defaultConfig: () => ({
    poll_interval: "1s",
    csv_delimiter: ";",
    mode: "append",
    sub: { depth: 2, tags: ["a", "b"] },
  }),
  configSchema: demoSchema,
  init: () => ({ start() {} }),
};

function section(raw: RawConfig, name: string): PluginSection {
  const s = raw.sections.find((s) => s.name === name);
  ok(s !== undefined, `no section ${name}`);
  return s;
}

Deno.test("parseConfigText substitutes ${ENV} before parsing", async (t) => {
  await t.step("a set variable is replaced by its value", () => {
    const raw = parseConfigText('[plugins.csv]\noutput_path = "${DIR}/out.csv"\n', "a.toml", {
      env: (name) => name === "DIR" ? "/var/alumet" : undefined,
    });
    deepEqual(section(raw, "csv").table, { output_path: "/var/alumet/out.csv" });
  });

  await t.step("a variable can hold a non-string value", () => {
    const raw = parseConfigText("source_channel_size = ${SIZE}\n", "a.toml", { env: () => "64" });
    deepEqual(raw.general, { sourceChannelSize: 64 });
  });

  await t.step("an unset variable is an error naming the variable and its line", () => {
    throwsConfig(
      () => parseConfigText('[plugins.csv]\n\noutput_path = "${NOPE}"\n', "a.toml", { env: noEnv }),
      'Invalid config in a.toml: line 3: expected the environment variable NOPE to be set (the file uses ${NOPE}); set it, or write \\${NOPE} to keep "${NOPE}" as is',
    );
  });

  await t.step("\\${X} is left as ${X}", () => {
    const raw = parseConfigText('[plugins.csv]\noutput_path = "\\${X}/a"\n', "a.toml", { env: noEnv });
    deepEqual(section(raw, "csv").table, { output_path: "${X}/a" });
  });

  await t.step("comment lines are left alone", () => {
    const raw = parseConfigText("# uses ${NOPE}\n[plugins.csv]\n", "a.toml", { env: noEnv });
    deepEqual(raw.sections.map((s) => s.name), ["csv"]);
  });

  await t.step("a malformed reference is an error", () => {
    throwsConfig(
      () => parseConfigText('x = "${A-B}"\n', "a.toml", { env: noEnv }),
      'Invalid config in a.toml: line 1: expected an environment variable name (letters, digits, _) in ${A-B}; write \\${A-B} to keep "${A-B}" as is',
    );
  });

  await t.step("the default env is Deno.env", () => {
    Deno.env.set("ALUMET_CONFIG_TEST_VAR", "from-env");
    try {
      const raw = parseConfigText('[plugins.csv]\noutput_path = "${ALUMET_CONFIG_TEST_VAR}"\n', "a.toml");
      deepEqual(section(raw, "csv").table, { output_path: "from-env" });
    } finally {
      Deno.env.delete("ALUMET_CONFIG_TEST_VAR");
    }
  });
});

Deno.test("parseConfigText applies --config-override values", async (t) => {
  const file = '[plugins.rapl]\npoll_interval = "1s"\n\n[plugins.x.sub]\na = 1\nb = 2\nlist = [1, 2, 3]\n';

  await t.step("a value that is not TOML is taken as a plain string", () => {
    const raw = parseConfigText(file, "a.toml", { overrides: ["plugins.csv.output_path=out.csv"] });
    deepEqual(section(raw, "csv").table, { output_path: "out.csv" });
  });

  await t.step("a value is parsed as TOML", () => {
    const raw = parseConfigText(file, "a.toml", {
      overrides: [
        'plugins.rapl.poll_interval="1ms"',
        "plugins.rapl.n=5",
        "plugins.rapl.flag=true",
        'plugins.rapl.list=["a","b"]',
        "plugins.rapl.unquoted=1ms",
        "plugins.rapl.empty=",
      ],
    });
    deepEqual(section(raw, "rapl").table, {
      poll_interval: "1ms",
      n: 5,
      flag: true,
      list: ["a", "b"],
      unquoted: "1ms",
      empty: "",
    });
  });

  await t.step("an override creates nested tables and a new section after the file's", () => {
    const raw = parseConfigText(file, "a.toml", { overrides: ['plugins.new.deep.er.key="v"'] });
    deepEqual(raw.sections.map((s) => s.name), ["rapl", "x", "new"]);
    deepEqual(section(raw, "new").table, { deep: { er: { key: "v" } } });
    equal(section(raw, "new").enabled, true);
  });

  await t.step("an override deep-merges into the table; arrays are replaced", () => {
    const raw = parseConfigText(file, "a.toml", {
      overrides: ["plugins.x.sub.b=3", "plugins.x.sub.list=[9]"],
    });
    deepEqual(section(raw, "x").table, { sub: { a: 1, b: 3, list: [9] } });
  });

  await t.step("a quoted key segment is one segment", () => {
    const raw = parseConfigText("", "a.toml", { overrides: ['plugins.x."a.b"=1'] });
    deepEqual(section(raw, "x").table, { "a.b": 1 });
  });

  await t.step("an override sets a top-level key", () => {
    const raw = parseConfigText(file, "a.toml", { overrides: ['max_update_interval="500ms"'] });
    deepEqual(raw.general, { maxUpdateInterval: 500 });
  });

  await t.step("an override disables a plugin", () => {
    const raw = parseConfigText(file, "a.toml", { overrides: ["plugins.rapl.enable=false"] });
    equal(section(raw, "rapl").enabled, false);
    deepEqual(section(raw, "rapl").table, { poll_interval: "1s" });
  });

  await t.step("an override without = is an error", () => {
    throwsConfig(
      () => parseConfigText(file, "a.toml", { overrides: ["plugins.csv.output_path"] }),
      "Invalid config in --config-override: plugins.csv.output_path: expected key=value; e.g. --config-override 'plugins.NAME.KEY=\"text\"'",
    );
  });

  await t.step("a value that starts like a TOML string, array or table but is not one is an error", () => {
    // The suggestion is the user's own value, closed (or quoted whole when closing is not enough).
    for (
      const [value, fixed] of [
        ['"a', '"a"'],
        ["'a", "'a'"],
        ['"out dir/x.csv', '"out dir/x.csv"'],
        ['"a"b', '"\\"a\\"b"'],
        ["[1, 2", "[1, 2]"],
        ["{ x = 1", "{ x = 1 }"],
        ['["a", "b"', '["a", "b"]'],
      ]
    ) {
      throwsConfig(
        () => parseConfigText(file, "a.toml", { overrides: [`plugins.csv.output_path=${value}`] }),
        `Invalid config in --config-override: plugins.csv.output_path=${value}: expected a TOML value after = ` +
          `(a quoted string, a number, a boolean, an array or a table); e.g. plugins.csv.output_path=${fixed}`,
      );
    }
    const raw = parseConfigText(file, "a.toml", { overrides: ["plugins.csv.output_path=out.csv"] });
    equal(raw.sections.find((s) => s.name === "csv")?.table.output_path, "out.csv", "a bare word stays text");
  });

  await t.step("a bad key is an error", () => {
    throwsConfig(
      () => parseConfigText(file, "a.toml", { overrides: ["plugins..x=1"] }),
      "Invalid config in --config-override: plugins..x: expected a dotted TOML key such as plugins.NAME.KEY",
    );
  });

  await t.step("a bad top-level value from an override names --config-override", () => {
    throwsConfig(
      () => parseConfigText(file, "a.toml", { overrides: ["source_channel_size=-1"] }),
      "Invalid config in --config-override: source_channel_size: expected a positive integer, not -1",
    );
  });
});

Deno.test("parseConfigText checks the top-level keys", async (t) => {
  await t.step("max_update_interval and source_channel_size are accepted", () => {
    const raw = parseConfigText('max_update_interval = "250ms"\nsource_channel_size = 16\n', "a.toml");
    deepEqual(raw, {
      source: "a.toml",
      fromFile: true,
      general: { maxUpdateInterval: 250, sourceChannelSize: 16 },
      sections: [],
    });
  });

  await t.step("an unknown key is an error with did you mean", () => {
    throwsConfig(
      () => parseConfigText("source_chanel_size = 3\n", "a.toml"),
      'Invalid config in a.toml: source_chanel_size: expected a known key (one of: max_update_interval, source_channel_size, sampling_realtime, plugins); did you mean "source_channel_size"?',
    );
  });

  await t.step("a plugin table without the plugins. prefix is pointed out", () => {
    throwsConfig(
      () => parseConfigText('[csv]\noutput_path = "a"\n', "a.toml"),
      "Invalid config in a.toml: csv: expected a known key (one of: max_update_interval, source_channel_size, sampling_realtime, plugins); plugin sections are written [plugins.csv]",
    );
  });

  await t.step("a bad duration is an error", () => {
    throwsConfig(
      () => parseConfigText('max_update_interval = "soon"\n', "a.toml"),
      `Invalid config in a.toml: max_update_interval: expected a positive duration such as "1s" or "250ms" (units: ${DURATION_UNITS}), not "soon"`,
    );
    throwsConfig(
      () => parseConfigText("max_update_interval = 5\n", "a.toml"),
      `Invalid config in a.toml: max_update_interval: expected a duration such as "1s" or "250ms" (units: ${DURATION_UNITS}), not 5`,
    );
  });

  await t.step("sampling_realtime is a boolean, absent unless set (normal priority)", () => {
    deepEqual(parseConfigText("sampling_realtime = true\n", "a.toml").general, { samplingRealtime: true });
    deepEqual(parseConfigText("sampling_realtime = false\n", "a.toml").general, { samplingRealtime: false });
    deepEqual(parseConfigText("", "a.toml").general, {});
    deepEqual(
      parseConfigText("", "a.toml", { overrides: ["sampling_realtime=true"] }).general,
      { samplingRealtime: true },
    );
    throwsConfig(
      () => parseConfigText("sampling_realtime = yes\n", "a.toml"),
      "Invalid config in a.toml: line 1, column 21: expected valid TOML (invalid value); a boolean is written true or false: sampling_realtime = true",
    );
    throwsConfig(
      () => parseConfigText('sampling_realtime = "on"\n', "a.toml"),
      'Invalid config in a.toml: sampling_realtime: expected true or false, not "on"',
    );
  });

  await t.step("source_channel_size must be a positive integer", () => {
    throwsConfig(
      () => parseConfigText("source_channel_size = 0\n", "a.toml"),
      "Invalid config in a.toml: source_channel_size: expected a positive integer, not 0",
    );
    throwsConfig(
      () => parseConfigText("source_channel_size = 1.5\n", "a.toml"),
      "Invalid config in a.toml: source_channel_size: expected a positive integer, not 1.5",
    );
  });

  await t.step("a plugin section must be a table", () => {
    throwsConfig(
      () => parseConfigText("plugins.csv = 5\n", "a.toml"),
      "Invalid config in a.toml: plugins.csv: expected a table, not 5",
    );
  });
});

Deno.test("parseConfigText reports a TOML syntax error with its line and column", async (t) => {
  await t.step("an unquoted duration suggests quotes", () => {
    throws(() => parseConfigText("[plugins.rapl]\npoll_interval = 1ms\n", "a.toml"), (e: unknown) => {
      ok(e instanceof ConfigError);
      match(e.message, /^Invalid config in a\.toml: line 2, column \d+: expected valid TOML \(.+\)/);
      match(e.message, /; write strings in quotes: poll_interval = "1ms"$/);
      deepEqual([e.problem.source, e.problem.key.startsWith("line 2, column ")], ["a.toml", true]);
      return true;
    });
  });

  await t.step("yes or no suggests a boolean", () => {
    throws(
      () => parseConfigText("[plugins.rapl]\nenable = yes\n", "a.toml"),
      /^ConfigError: Invalid config in a\.toml: line 2, column \d+: expected valid TOML \(.+\); a boolean is written true or false: enable = true$/,
    );
  });

  await t.step("an unclosed table header", () => {
    throws(
      () => parseConfigText("a = 1\n[plugins.csv\n", "a.toml"),
      /^ConfigError: Invalid config in a\.toml: line 2, column \d+: expected valid TOML \(.+\)$/,
    );
  });
});

Deno.test("parseConfigText reads enable and enabled", async (t) => {
  await t.step("enable = false and enabled = false disable and are removed from the table", () => {
    const raw = parseConfigText(
      "[plugins.a]\nenable = false\nx = 1\n[plugins.b]\nenabled = false\n[plugins.c]\nenabled = true\n",
      "a.toml",
    );
    deepEqual(raw.sections, [
      { name: "a", enabled: false, table: { x: 1 } },
      { name: "b", enabled: false, table: {} },
      { name: "c", enabled: true, table: {} },
    ]);
  });

  await t.step("a nested enabled key is the plugin's own", () => {
    const raw = parseConfigText("[plugins.procfs.kernel]\nenabled = false\n", "a.toml");
    deepEqual(raw.sections, [{ name: "procfs", enabled: true, table: { kernel: { enabled: false } } }]);
  });

  await t.step("a non-boolean is an error", () => {
    throwsConfig(
      () => parseConfigText('[plugins.a]\nenable = "no"\n', "a.toml"),
      'Invalid config in a.toml: plugins.a.enable: expected a boolean, not "no"',
    );
  });
});

Deno.test("selectPlugins decides which plugins run, in order", async (t) => {
  const file = "[plugins.csv]\n[plugins.rapl]\nenable = false\n[plugins.procfs]\n";

  await t.step("the file's enabled sections, in file order", () => {
    const raw = parseConfigText(file, "a.toml");
    deepEqual(selectPlugins(raw, { known, enabledByDefault: ["perf"] }).map((s) => s.name), [
      "csv",
      "procfs",
    ]);
  });

  await t.step("--plugins enables exactly these, whatever the file says", () => {
    const raw = parseConfigText(file, "a.toml");
    const chosen = selectPlugins(raw, { known, enabledByDefault: [], only: ["perf", "rapl", "csv", "rapl"] });
    deepEqual(chosen.map((s) => [s.name, s.enabled]), [["csv", true], ["rapl", true], ["perf", true]]);
    deepEqual(chosen[2]?.table, {});
  });

  await t.step("with no file, the default plugins then those the overrides create", async () => {
    const raw = await loadConfig({
      overrides: ["plugins.perf.x=1", "plugins.procfs.enable=false", "plugins.csv.output_path=o.csv"],
    });
    const chosen = selectPlugins(raw, { known, enabledByDefault: ["csv", "procfs", "rapl"] });
    deepEqual(chosen.map((s) => [s.name, s.table]), [["csv", { output_path: "o.csv" }], ["rapl", {}], [
      "perf",
      { x: 1 },
    ]]);
  });

  await t.step("an unknown plugin in the file lists the known ones, with did you mean", () => {
    throwsConfig(
      () => selectPlugins(parseConfigText("[plugins.rapll]\n", "a.toml"), { known, enabledByDefault: [] }),
      'Invalid config in a.toml: plugins.rapll: expected a known plugin (one of: csv, perf, procfs, rapl); did you mean "rapl"?',
    );
  });

  await t.step("an unknown disabled plugin is still an error", () => {
    throws(
      () =>
        selectPlugins(parseConfigText("[plugins.zzz]\nenable = false\n", "a.toml"), {
          known,
          enabledByDefault: [],
        }),
      /plugins\.zzz: expected a known plugin/,
    );
  });

  await t.step("an unknown plugin with no near miss suggests an external module", () => {
    throwsConfig(
      () => selectPlugins(parseConfigText("[plugins.mqtt]\n", "a.toml"), { known, enabledByDefault: [] }),
      'Invalid config in a.toml: plugins.mqtt: expected a known plugin (one of: csv, perf, procfs, rapl); for an external plugin, add module = "./plugin.ts" to [plugins.mqtt]',
    );
  });

  await t.step("an unknown plugin in --plugins names --plugins", () => {
    throwsConfig(
      () =>
        selectPlugins(parseConfigText(file, "a.toml"), { known, enabledByDefault: [], only: ["procfss"] }),
      'Invalid config in --plugins: procfss: expected a known plugin (one of: csv, perf, procfs, rapl); did you mean "procfs"?',
    );
  });

  await t.step(
    "a section of a plugin in `skip` (Alumet's, not implemented) is skipped; enabled ones are told",
    () => {
      const text = "[plugins.socket-control]\n[plugins.csv]\n[plugins.k8s]\nenable = false\n";
      const told: string[] = [];
      const skip = new Set(["socket-control", "k8s", "rapl"]);
      const chosen = selectPlugins(parseConfigText(text, "a.toml"), {
        known,
        enabledByDefault: [],
        skip,
        onSkip: (n) => told.push(n),
      });
      equal(chosen.map((s) => s.name).join(), "csv");
      equal(told.join(), "socket-control", "only the enabled one is told, once");
      const withOnly = selectPlugins(parseConfigText(text, "a.toml"), {
        known,
        enabledByDefault: [],
        skip,
        only: ["csv", "k8s"],
        onSkip: (n) => told.push(n),
      });
      equal(withOnly.map((s) => s.name).join(), "csv");
      equal(told.join(), "socket-control,k8s");
      throwsConfig(
        () =>
          selectPlugins(parseConfigText("[plugins.socket-contrl]\n", "a.toml"), {
            known,
            enabledByDefault: [],
            skip,
          }),
        'Invalid config in a.toml: plugins.socket-contrl: expected a known plugin (one of: csv, perf, procfs, rapl); did you mean "socket-control"?',
      );
    },
  );

  await t.step("an unknown plugin created by an override names --config-override", () => {
    const raw = parseConfigText(file, "a.toml", { overrides: ["plugins.csvv.output_path=o.csv"] });
    throwsConfig(
      () => selectPlugins(raw, { known, enabledByDefault: [] }),
      'Invalid config in --config-override: plugins.csvv: expected a known plugin (one of: csv, perf, procfs, rapl); did you mean "csv"?',
    );
  });

  await t.step("an external plugin is kept with its module", () => {
    const raw = parseConfigText('[plugins.mine]\nmodule = "https://example.com/p.ts"\nx = 1\n', "a.toml");
    deepEqual(selectPlugins(raw, { known, enabledByDefault: [], only: ["mine"] }), [
      { name: "mine", enabled: true, table: { x: 1 }, module: "https://example.com/p.ts" },
    ]);
  });
});

Deno.test("validateSection merges the defaults and validates with the schema", async (t) => {
  const check = (table: string, overrides: string[] = []) => {
    const raw = parseConfigText(`[plugins.demo]\n${table}\n`, "a.toml", { overrides });
    return validateSection(demo, section(raw, "demo"), raw.source);
  };

  await t.step("defaults are merged under the table, deeply, and durations parsed", () => {
    deepEqual(check('poll_interval = "250us"\nsub.depth = 5'), {
      poll_interval: 0.25,
      csv_delimiter: ";",
      mode: "append",
      sub: { depth: 5, tags: ["a", "b"] },
    });
    deepEqual(check('sub.tags = ["z"]').sub, { depth: 2, tags: ["z"] });
  });

  await t.step("an unknown key is an error with did you mean", () => {
    throwsConfig(
      () => check('pol_interval = "1s"'),
      'Invalid config in a.toml: plugins.demo.pol_interval: expected a known key (one of: poll_interval, csv_delimiter, mode, sub); did you mean "poll_interval"?',
    );
  });

  await t.step("an unknown nested key is an error with did you mean", () => {
    throwsConfig(
      () => check("sub.dpth = 1"),
      'Invalid config in a.toml: plugins.demo.sub.dpth: expected a known key (one of: depth, tags); did you mean "depth"?',
    );
  });

  await t.step("an unknown key is reported before other problems", () => {
    throws(() => check("csv_delimiter = 5\nmoed = 1"), /plugins\.demo\.moed: expected a known key/);
  });

  await t.step("a wrong type is an error naming the key and the value", () => {
    throwsConfig(
      () => check("csv_delimiter = 5"),
      "Invalid config in a.toml: plugins.demo.csv_delimiter: expected a string, not 5",
    );
    throwsConfig(
      () => check("sub.depth = 1.5"),
      "Invalid config in a.toml: plugins.demo.sub.depth: expected an integer, not 1.5",
    );
    throwsConfig(
      () => check("sub.depth = 0"),
      "Invalid config in a.toml: plugins.demo.sub.depth: expected a number >= 1, not 0",
    );
    throwsConfig(
      () => check("sub.tags = [1]"),
      "Invalid config in a.toml: plugins.demo.sub.tags[0]: expected a string, not 1",
    );
  });

  await t.step("a bad duration is an error", () => {
    throwsConfig(
      () => check('poll_interval = "soon"'),
      `Invalid config in a.toml: plugins.demo.poll_interval: expected a positive duration such as "1s" or "250ms" (units: ${DURATION_UNITS}), not "soon"`,
    );
    throwsConfig(
      () => check("poll_interval = 10"),
      `Invalid config in a.toml: plugins.demo.poll_interval: expected a duration such as "1s" or "250ms" (units: ${DURATION_UNITS}), not 10`,
    );
  });

  await t.step("a value outside an enum is an error with did you mean", () => {
    throwsConfig(
      () => check('mode = "apend"'),
      'Invalid config in a.toml: plugins.demo.mode: expected one of "append", "truncate", not "apend"; did you mean "append"?',
    );
  });

  await t.step("a bad value from an override names --config-override", () => {
    throwsConfig(
      () => check("", ["plugins.demo.poll_interval=5"]),
      `Invalid config in --config-override: plugins.demo.poll_interval: expected a duration such as "1s" or "250ms" (units: ${DURATION_UNITS}), not 5`,
    );
    throwsConfig(
      () => check("", ["plugins.demo.sub.dpth=1"]),
      'Invalid config in --config-override: plugins.demo.sub.dpth: expected a known key (one of: depth, tags); did you mean "depth"?',
    );
    throws(
      () => check("csv_delimiter = 5", ["plugins.demo.mode=append"]),
      /^ConfigError: Invalid config in a\.toml:/,
    );
  });

  await t.step("without a schema, the merged table is returned", () => {
    const plain = meta("plain", { a: 1, t: { x: 1, y: 2 } });
    deepEqual(
      validateSection(plain, { name: "plain", enabled: true, table: { t: { y: 3 } } }, "a.toml"),
      {
        a: 1,
        t: { x: 1, y: 3 },
      },
    );
  });
});

Deno.test("loadConfig reads the file, or falls back to the defaults", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "alumet_config_test_" });
  try {
    await t.step("a missing optional file means the defaults", async () => {
      const raw = await loadConfig({ path: join(dir, "missing.toml") });
      deepEqual(raw, { source: "defaults", fromFile: false, general: {}, sections: [] });
    });

    await t.step("a missing required file is an error", async () => {
      const path = join(dir, "missing.toml");
      await rejects(loadConfig({ path, required: true }), (e: unknown) => {
        ok(e instanceof ConfigError);
        equal(
          e.message,
          `Invalid config in ${path}: expected an existing config file; check the path, or create the file with "config regen"`,
        );
        return true;
      });
    });

    await t.step("an existing file is read, with env and overrides", async () => {
      const path = join(dir, "alumet-config.toml");
      await Deno.writeTextFile(path, 'max_update_interval = "${MUI}"\n[plugins.csv]\n');
      const raw = await loadConfig({
        path,
        required: true,
        env: (n) => n === "MUI" ? "3s" : undefined,
        overrides: ["plugins.csv.output_path=x.csv"],
      });
      deepEqual(raw, {
        source: path,
        fromFile: true,
        general: { maxUpdateInterval: 3000 },
        sections: [{ name: "csv", enabled: true, table: { output_path: "x.csv" } }],
      });
    });

    await t.step("a syntax error names the file", async () => {
      const path = join(dir, "bad.toml");
      await Deno.writeTextFile(path, "[plugins.csv\n");
      await rejects(
        loadConfig({ path }),
        new RegExp(`^ConfigError: Invalid config in ${path}: line 1, column`),
      );
    });

    await t.step("a module path is resolved against the config file's directory", async () => {
      await Deno.mkdir(join(dir, "conf"));
      const path = join(dir, "conf", "alumet-config.toml");
      await Deno.writeTextFile(
        path,
        '[plugins.ext]\nmodule = "./plugins/ext.ts"\nx = 1\n[plugins.web]\nmodule = "https://example.com/p.ts"\n' +
          '[plugins.abs]\nmodule = "/opt/p.ts"\n',
      );
      const raw = await loadConfig({ path, overrides: ["plugins.cli.module=./cli.ts"] });
      deepEqual(raw.sections, [
        { name: "ext", enabled: true, table: { x: 1 }, module: join(dir, "conf", "plugins", "ext.ts") },
        { name: "web", enabled: true, table: {}, module: "https://example.com/p.ts" },
        { name: "abs", enabled: true, table: {}, module: "/opt/p.ts" },
        { name: "cli", enabled: true, table: {}, module: join(Deno.cwd(), "cli.ts") },
      ]);
    });

    await t.step("a module that is not a string is an error", () => {
      throwsConfig(
        () => parseConfigText("[plugins.ext]\nmodule = 1\n", "a.toml"),
        'Invalid config in a.toml: plugins.ext.module: expected the path or URL of a plugin module, not 1; e.g. module = "./my_plugin.ts"',
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("renderDefaultConfig writes a file that parses back to the defaults", async (t) => {
  const plugins = [
    meta("rapl", { poll_interval: "1s", domains: ["package", "dram"] }),
    meta("csv", { output_path: "${HOME}/alumet-output.csv", csv_delimiter: ";", nested: { a: { b: 1 } } }),
    meta("empty"),
    { ...meta("none"), defaultConfig: () => undefined },
  ];

  await t.step("one section per plugin, in order, with its defaults", () => {
    const text = renderDefaultConfig(plugins);
    const raw = parseConfigText(text, "alumet-config.toml", { env: noEnv });
    deepEqual(raw.general, {});
    deepEqual(
      raw.sections.map((s) => [s.name, s.enabled, s.table]),
      plugins.map((p) => [p.name, true, p.defaultConfig?.() ?? {}]),
    );
  });

  await t.step(
    "the general keys are written commented out with the agent's defaults; they parse uncommented",
    () => {
      const text = renderDefaultConfig([]);
      match(text, /^# max_update_interval .*\n# has no effect here/m);
      match(text, new RegExp(`^# source_channel_size = ${DEFAULT_SOURCE_CHANNEL_SIZE}$`, "m"));
      const raw = parseConfigText(text.replaceAll(/^# (\w+ = )/gm, "$1"), "a.toml");
      deepEqual(raw.general, { sourceChannelSize: DEFAULT_SOURCE_CHANNEL_SIZE, samplingRealtime: false });
      match(text, /^# sampling_realtime = false$/m);
    },
  );

  await t.step("the sections validate against the plugins' schemas", () => {
    const raw = parseConfigText(renderDefaultConfig([demo]), "a.toml");
    deepEqual(validateSection(demo, section(raw, "demo"), raw.source), {
      poll_interval: 1000,
      csv_delimiter: ";",
      mode: "append",
      sub: { depth: 2, tags: ["a", "b"] },
    });
  });
});
