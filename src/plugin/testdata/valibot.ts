// valibot, pinned, for the tests that check a plugin may bring its own Standard Schema library.
export * as v from "npm:valibot@1.5.0";
