#!/usr/bin/env node
// SPDX-License-Identifier: GPL-2.0-or-later
// npm runs this before `npm pack` and `npm publish` ("prepack"). The package
// ships prebuilt artifacts, because the machines it installs on have no
// compiler (package.json has "gypfile": false, so npm never runs node-gyp on
// install). This refuses to pack when an artifact is missing or older than
// its sources: run `npm run build` first. It builds nothing itself.
//
// It checks that:
// - every path listed in package.json "files" exists (npm silently leaves
//   out a missing one) and every "bin" target is an executable file;
// - build/Release/passt_repair.node is newer than binding.gyp and its
//   sources (and native/*.h), build/Release/passt_repair_launcher newer than
//   binding.gyp and native/launcher.c;
// - src/policy/validate.generated.ts is newer than the schema it is
//   generated from, and each src/**/*.ts has its dist/src/**/*.js, newer
//   (a dist/src/**/*.js whose source is gone only gets a warning);
// - the start-up snapshot (dist/snapshot/) is one the launcher would use:
//   built from dist/src as it is (scripts/build-snapshot.js, staleSnapshot).
// Exit status: 0 ready to pack, 1 not.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const problems = [];

function stat(relative) {
  try {
    return fs.statSync(path.join(root, relative));
  } catch {
    return undefined;
  }
}

function listFiles(relative, keep) {
  const found = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const child = path.posix.join(dir, entry.name);
      if (entry.isDirectory()) walk(child);
      else if (keep(child)) found.push(child);
    }
  };
  if (stat(relative)?.isDirectory()) walk(relative);
  return found;
}

/** `artifact` must exist and be newer than each of `sources` that exists. */
function requireNewer(artifact, sources) {
  const built = stat(artifact);
  if (!built) {
    problems.push(`${artifact} is missing`);
    return;
  }
  const stale = sources.filter((source) => {
    const s = stat(source);
    return s !== undefined && s.mtimeMs > built.mtimeMs;
  });
  if (stale.length > 0) problems.push(`${artifact} is older than ${stale.join(', ')}`);
}

const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

for (const entry of manifest.files ?? []) {
  if (/[*?[\]{}!]/.test(entry)) continue;
  if (!stat(entry)) problems.push(`${entry} (listed in package.json "files") is missing`);
}
for (const [name, target] of Object.entries(manifest.bin ?? {})) {
  const s = stat(target);
  if (!s?.isFile()) problems.push(`${target} (bin "${name}") is missing`);
  else if ((s.mode & 0o111) === 0) problems.push(`${target} (bin "${name}") is not executable`);
}

// The native artifacts, against the sources binding.gyp names for them.
let targets = [];
try {
  // gyp files are JSON plus "#" comment lines (the licence header).
  const text = fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8').replace(/^\s*#.*$/gm, '');
  targets = JSON.parse(text).targets ?? [];
} catch (error) {
  problems.push(`binding.gyp cannot be read as JSON with # comments (${error.message})`);
}
const headers = listFiles('native', (file) => /\.h$/.test(file) && path.posix.dirname(file) === 'native');
for (const [target, artifact] of [
  ['passt_repair', 'build/Release/passt_repair.node'],
  ['passt_repair_launcher', 'build/Release/passt_repair_launcher'],
]) {
  const sources = targets.find((t) => t.target_name === target)?.sources ?? [];
  if (targets.length > 0 && sources.length === 0) problems.push(`binding.gyp has no target ${target}`);
  requireNewer(artifact, ['binding.gyp', ...sources, ...(target === 'passt_repair' ? headers : [])]);
}
const launcher = stat('build/Release/passt_repair_launcher');
if (launcher && (launcher.mode & 0o111) === 0) problems.push('build/Release/passt_repair_launcher is not executable');

// The compiled TypeScript.
requireNewer('src/policy/validate.generated.ts', ['policy/policy.schema.json', 'scripts/generate-policy-validator.js']);
for (const source of listFiles('src', (file) => file.endsWith('.ts') && !file.endsWith('.d.ts')))
  requireNewer(`dist/${source.replace(/\.ts$/, '.js')}`, [source]);
if (!stat('dist/src/main.js')) problems.push('dist/src/main.js is missing');
// tsc never deletes the output of a source that is gone: it would ship.
const orphans = listFiles('dist/src', (file) => file.endsWith('.js') && !stat(file.replace(/^dist\//, '').replace(/\.js$/, '.ts')));
if (orphans.length > 0)
  process.stderr.write(`passt-repair: warning: packing compiled files without a source (remove dist/ and run "npm run build" to drop them): ${orphans.join(', ')}\n`);

// The start-up snapshot: a stale one would ship unused, and the helper start slower.
const staleSnapshot = require('./build-snapshot.js').staleSnapshot();
if (staleSnapshot !== undefined) problems.push(`the start-up snapshot is not current: ${staleSnapshot}`);

if (problems.length > 0) {
  process.stderr.write(
    `passt-repair: not packing: the package ships prebuilt artifacts, and some are missing or stale:\n` +
      problems.map((problem) => `  - ${problem}\n`).join('') +
      `Run "npm run build" (it needs a compiler and libseccomp-dev), then pack again.\n`,
  );
  process.exit(1);
}
