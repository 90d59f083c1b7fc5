// SPDX-License-Identifier: GPL-2.0-or-later
// Telemetry to Sentry, opt-in: the forwarder (its identity, its filter), the
// channel, scrubbing, and the real helper reporting to a real HTTP receiver
// on 127.0.0.1 that decodes Sentry envelopes (test/fixtures/sentry-receiver.ts).
// No mock: the Sentry SDK sends real HTTP from the real forwarder process.
import t, { type Test } from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { constants } from 'node:os';
import { acceptHelper, awaitReply, HELPER, passt, ROOT, startHelper, TCP_REPAIR_ON, writePolicy, type HelperRun, FAILURE_BYTE, NODE, RUNTIME_LAUNCHER } from './passt-double/passt-double';
import { loadAllowlist, loadForwarderDenyList, parseSeccompPolicy, seccompFile } from '../src/sandbox/seccomp';
import { HelperError } from '../src/errors';
import type { FailureReport } from '../src/telemetry/report';
import { NOBODY, listenAsNobody, loopbackConnections, nobodyDirectory, temporaryDirectory } from './lib';
import { now, startReceiver, type Receiver, type SentryEvent } from './fixtures/sentry-receiver';

// The helper's launcher runs only dist/src/main.js; this one runs a test's script in the same sandbox.
const REPORTER = path.join(ROOT, 'dist/src/telemetry/reporter.js');
const SECCOMP = path.join(ROOT, 'dist/src/sandbox/seccomp.js');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

// ---------------------------------------------------------------------------
// Processes: who is whose child, and what /proc says about them.

/** The direct children of `pid` (every thread's). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      children.push(...fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // the thread ended while listed
    }
  }
  return children;
}

function statusOf(pid: number): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1).trim();
  }
  return fields;
}

/**
 * Every running process of this package's forwarder whose parent is `parent`
 * (other test files may run forwarders of their own at the same time).
 */
function forwarderProcesses(parent: number): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(path.join(ROOT, 'dist/src/telemetry/forwarder.js'))) continue;
      if (Number(statusOf(Number(entry)).PPid) === parent) found.push(Number(entry));
    } catch {
      // gone
    }
  }
  return found;
}

/**
 * The forwarder started by process `pid`, once it is set up: under four
 * filters (the io_uring filter of the launcher `pid` was started through,
 * inherited; its own launcher's; its deny list; its execve denial),
 * not root, not dumpable (its /proc files then belong to root), and without
 * the helper's standard error it was lent (its descriptor 3 meanwhile).
 */
async function waitForForwarder(pid: number, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const child of childrenOf(pid)) {
      try {
        const status = statusOf(child);
        if (
          Number(status.Seccomp_filters) >= 4 &&
          status.Uid !== '0\t0\t0\t0' &&
          fs.statSync(`/proc/${child}/status`).uid === 0 &&
          !fs.existsSync(`/proc/${child}/fd/3`)
        )
          return child;
      } catch {
        // not there yet, or gone
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  throw new Error(`process ${pid} has no set-up forwarder after ${timeoutMs} ms`);
}

/** Whether `pid` has ended (gone, or a zombie its new parent has not reaped yet). */
function ended(pid: number): boolean {
  try {
    return statusOf(pid).State?.startsWith('Z') ?? true;
  } catch {
    return true;
  }
}

/** Waits (at most `timeoutMs`) for `pid` to end; returns whether it did. */
async function waitForEnd(pid: number, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!ended(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  return ended(pid);
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/**
 * The forwarder's descriptors once set up: its input is the pipe, its output
 * and error /dev/null, nothing of its parent's (the standard error lent for
 * the set-up is closed), and no socket at all (not passt's, not anything
 * inherited).
 */
function checkDescriptors(t: Test, forwarder: number, parent: number): void {
  const descriptors = new Map(fs.readdirSync(`/proc/${forwarder}/fd`).map((fd) => [Number(fd), fs.readlinkSync(`/proc/${forwarder}/fd/${fd}`)] as const));
  t.match(descriptors.get(0), /^pipe:/, 'its input is the pipe');
  t.equal(descriptors.get(1), '/dev/null', 'its output is /dev/null');
  t.equal(descriptors.get(2), '/dev/null', 'its standard error is /dev/null');
  const parentStderr = fs.readlinkSync(`/proc/${parent}/fd/2`);
  t.same([...descriptors].filter(([, target]) => target === parentStderr), [], 'the helper\'s standard error is not among them');
  t.same([...descriptors].filter(([, target]) => target.startsWith('socket:')), [], 'no socket among its descriptors');
}

// ---------------------------------------------------------------------------
// Events: what must be in them and what must not.

function messageOf(event: SentryEvent): string {
  return typeof event.message === 'string' ? event.message : (event.message?.formatted ?? event.message?.message ?? '');
}

/** The parts of an event that carry the helper's words (ids and timestamps elsewhere are random digits). */
function wordsOf(event: SentryEvent): string {
  return JSON.stringify([messageOf(event), event.tags, event.fingerprint, event.exception]);
}

// ---------------------------------------------------------------------------
// A process standing in for the helper: the real reporter, started under the
// real launcher and runtime flags, driven by JSON lines on its standard input.

const DRIVER = `
const { startReporter } = require(${JSON.stringify(REPORTER)});
const settings = JSON.parse(process.argv[1]);
const startedAt = performance.timeOrigin + performance.now();
const reporter = startReporter({ ...settings, include: new Set(settings.include) }, 'nobody', ${JSON.stringify(VERSION)});
const startMs = performance.timeOrigin + performance.now() - startedAt;
const say = (value) => require('fs').writeSync(1, JSON.stringify(value) + '\\n');
say({ started: true, startedAt, startMs });
let pending = '';
process.stdin.setEncoding('utf8').on('data', async (chunk) => {
  pending += chunk;
  let newline;
  while ((newline = pending.indexOf('\\n')) >= 0) {
    const command = JSON.parse(pending.slice(0, newline));
    pending = pending.slice(newline + 1);
    if (command.report) {
      const at = performance.timeOrigin + performance.now();
      reporter.report(command.report);
      say({ reported: true, at, reportMs: performance.timeOrigin + performance.now() - at });
    }
    if (command.close) {
      const at = performance.now();
      await reporter.close();
      say({ closed: true, closeMs: performance.now() - at, dropped: reporter.dropped });
      process.stdin.destroy();
    }
  }
});
`;

interface Driver {
  child: ChildProcess;
  /** Resolves with the next JSON line the driver prints. */
  next(): Promise<Record<string, number | boolean>>;
  send(command: object): void;
  stderr(): string;
}

function startDriver(settings: { dsn: string; environment: string; include: string[] }, wrapper: readonly string[] = []): Driver {
  // env -i: tap's NODE_OPTIONS must not reach the runtime (as in seccomp.test.ts).
  const command = [...wrapper, 'env', '-i', RUNTIME_LAUNCHER, NODE, '--disable-sigusr1', '-e', DRIVER, JSON.stringify(settings)];
  const child = spawn(command[0]!, command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  let buffered = '';
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      const waiter = waiting.shift();
      if (waiter) waiter(line);
      else lines.push(line);
    }
  });
  return {
    child,
    next: () =>
      new Promise((resolve, reject) => {
        const line = lines.shift();
        if (line !== undefined) return resolve(JSON.parse(line) as Record<string, number | boolean>);
        const timer = setTimeout(() => reject(new Error(`the driver said nothing; stderr: ${stderr}`)), 15_000);
        waiting.push((text) => {
          clearTimeout(timer);
          resolve(JSON.parse(text) as Record<string, number | boolean>);
        });
      }),
    send: (command) => child.stdin!.write(`${JSON.stringify(command)}\n`),
    stderr: () => stderr,
  };
}

const SECRET_DIR = '/srv/tenant-a7/vm-42';
const REFUSAL: FailureReport = {
  level: 'error',
  phase: 'peer',
  gate: 'peer',
  message: `gate 4 (peer) refused: peer refused on ${SECRET_DIR}/vm.repair: pid 48213, uid 61234, gid 61235; rule "vm": uid 61234 is not in uids [12345]`,
  exitCode: 1,
  known: { paths: [`${SECRET_DIR}/vm.repair`], ids: [61234, 61235], pids: [48213] },
};

function internalError(): FailureReport {
  const error = new TypeError(`cannot read ${SECRET_DIR}/state`);
  // A frame of the package itself, and one from elsewhere.
  error.stack = [
    `TypeError: cannot read ${SECRET_DIR}/state`,
    `    at serve (${ROOT}/dist/src/protocol.js:31:20)`,
    `    at main (${ROOT}/dist/src/main.js:12:3)`,
    `    at Object.<anonymous> (/opt/elsewhere/lib.js:5:7)`,
  ].join('\n');
  return {
    level: 'fatal',
    phase: 'serve',
    message: `internal error: cannot read ${SECRET_DIR}/state`,
    exitCode: 1,
    error: { type: 'TypeError', stack: error.stack },
    known: { paths: [], ids: [], pids: [] },
  };
}

// ---------------------------------------------------------------------------
// Off means off.

t.test('the Sentry SDK is referenced by the forwarder alone, which nothing loads as a module', async (t) => {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.js')) files.push(full);
    }
  };
  walk(path.join(ROOT, 'dist/src'));
  t.ok(files.length > 10, `${files.length} files of dist/src`);
  const relative = (file: string) => path.relative(ROOT, file);
  // A require.resolve (--check-policy's test that the package is installed) finds it without loading it.
  t.same(files.filter((file) => /require\(\s*['"]@sentry\//.test(fs.readFileSync(file, 'utf8'))).map(relative), ['dist/src/telemetry/forwarder.js'], 'only the forwarder requires @sentry/node');
  t.same(files.filter((file) => /require\([^)]*forwarder/.test(fs.readFileSync(file, 'utf8'))).map(relative), [], 'no file requires the forwarder: it only runs as a process of its own');
  t.match(fs.readFileSync(path.join(ROOT, 'dist/src/telemetry/reporter.js'), 'utf8'), /'forwarder\.js'/, 'the reporter starts it as a program');
});

t.test('with Sentry off: no forwarder is ever started, nothing is sent, and a failure is still only logged', async (t) => {
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'passt.repair');
  const policy = writePolicy(temporaryDirectory(), { version: 1, rules: [{ name: 'test', sockets: [`${dir}/*.repair`], peer: {} }] });
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', policy, socketPath]);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  const loopback = await loopbackConnections(1);
  t.teardown(() => loopback.close());
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'serving');
  t.same(childrenOf(helper.child.pid!), [], 'the helper has no child process while it serves');
  t.same(forwarderProcesses(helper.child.pid!), [], 'no forwarder process of the helper\'s exists');
  passt.sendRequest(sock, Buffer.from([9]), loopback.fds);
  t.equal(await awaitReply(sock), FAILURE_BYTE, 'a bad request is refused');
  fs.closeSync(sock);
  const exit = await helper.exited;
  t.equal(exit.code, 1);
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.same([receiver.connections, receiver.envelopes.length], [0, 0], 'the receiver saw nothing');
});

// ---------------------------------------------------------------------------
// The seccomp data: the conditional deny, the forwarder's deny list, the helper's addition.

t.test('seccomp files: a conditional deny on one line, "!=" on deny lines only, every mistake named', async (t) => {
  t.same(parseSeccompPolicy('socket: arg0 == AF_UNIX && deny EACCES  # why\n', 'x.policy', 'denylist'), [
    { syscall: 'socket', args: [{ arg: 0, value: 1n }], line: 1, file: 'x.policy', deny: constants.errno.EACCES },
  ]);
  t.same(parseSeccompPolicy('prlimit64: arg0 != 0 && deny EPERM  # why\n', 'x.policy', 'denylist')[0]!.args, [{ arg: 0, value: 0n, op: '!=' }]);
  // What parsed before parses the same.
  t.same(parseSeccompPolicy('openat: deny EACCES  # why\nfcntl: arg1 == F_GETFL  # why\nread  # why\n', 'x.policy'), [
    { syscall: 'openat', args: [], line: 1, file: 'x.policy', deny: constants.errno.EACCES },
    { syscall: 'fcntl', args: [{ arg: 1, value: 3n }], line: 2, file: 'x.policy' },
    { syscall: 'read', args: [], line: 3, file: 'x.policy' },
  ]);
  const refused: [string, RegExp][] = [
    ['socket: deny EACCES && arg0 == AF_UNIX  # why\n', /x\.policy:1: "deny EACCES" must come last/],
    ['fcntl: arg1 != 3  # why\n', /x\.policy:1: "arg1 != 3": "!=" is only for deny lines/],
    ['socket: arg0 == 4294967296 && deny EPERM  # why\n', /x\.policy:1: .*lower 32 bits; 4294967296 does not fit/],
    ['socket: arg0 > 1 && deny EPERM  # why\n', /x\.policy:1: "arg0 > 1" is not "argN == VALUE"/],
    ['socket: arg0 == AF_UNIX && deny ENOPE  # why\n', /x\.policy:1: unknown error name ENOPE/],
  ];
  for (const [text, message] of refused) t.throws(() => parseSeccompPolicy(text, 'x.policy'), message, text.trim());
  t.throws(() => parseSeccompPolicy('read  # why\n', 'x.policy', 'denylist'), new HelperError('x.policy:1: a deny list only denies: expected "NAME: deny ERRNO" or "NAME: argN == VALUE && ... && deny ERRNO"'));
});

t.test('the helper\'s allowlist gains wait4 with telemetry, and nothing without', async (t) => {
  const plain = loadAllowlist();
  const withTelemetry = loadAllowlist({ telemetry: true });
  t.notOk(plain.some((rule) => rule.syscall === 'wait4'), 'no wait4 without telemetry');
  const added = withTelemetry.slice(plain.length);
  t.same(plain, withTelemetry.slice(0, plain.length), 'the allowlist itself is unchanged');
  t.same(added.map((rule) => [rule.syscall, rule.args, rule.deny, rule.file]), [['wait4', [], undefined, seccompFile('telemetry')]]);
});

t.test('the forwarder\'s deny list: every line denies, with a reason; what it must cover', async (t) => {
  const rules = loadForwarderDenyList();
  t.ok(rules.every((rule) => rule.deny !== undefined), 'every line denies');
  const denied = (syscall: string) => rules.filter((rule) => rule.syscall === syscall);
  t.same(denied('socket').map((rule) => [rule.args, rule.deny]), [[[{ arg: 0, value: 1n }], constants.errno.EACCES]], 'socket(AF_UNIX) only: EACCES');
  for (const call of ['kill', 'tkill', 'tgkill', 'rt_sigqueueinfo', 'rt_tgsigqueueinfo', 'pidfd_open', 'pidfd_send_signal', 'pidfd_getfd', 'ptrace', 'process_vm_readv', 'process_vm_writev'])
    t.same(denied(call).map((rule) => [rule.args, rule.deny]), [[[], constants.errno.EPERM]], `${call}: always EPERM`);
  t.same(denied('prlimit64').map((rule) => rule.args), [[{ arg: 0, value: 0n, op: '!=' }]], 'prlimit64 on another process');
  t.same(denied('io_uring_setup').map((rule) => rule.deny), [constants.errno.ENOSYS]);
});

t.test('under the forwarder\'s filter: no UNIX socket, no signal or renice of another process; TCP works', async (t) => {
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  // A process of the same uid to aim at: the test's own child.
  const target = spawn('sleep', ['30']);
  t.teardown(() => target.kill());
  const unixPath = path.join(temporaryDirectory(), 'some.sock');
  const server = require('node:net').createServer().listen(unixPath) as import('node:net').Server;
  t.teardown(() => server.close());
  await new Promise((resolve) => server.once('listening', resolve));
  const script = `
    const net = require('net'), os = require('os');
    require(${JSON.stringify(SECCOMP)}).installDenyList(require(${JSON.stringify(SECCOMP)}).loadForwarderDenyList());
    const results = {};
    const attempt = (name, f) => { try { f(); results[name] = 'ok'; } catch (e) { results[name] = e.code === 'ERR_SYSTEM_ERROR' ? e.info.code : e.code; } };
    attempt('kill', () => process.kill(${target.pid}, 0));
    attempt('killSelf', () => process.kill(process.pid, 0));
    attempt('reniceOther', () => os.setPriority(${target.pid}, 5));
    attempt('reniceSelf', () => os.setPriority(0, 5));
    const unix = net.connect(${JSON.stringify(unixPath)});
    unix.on('error', (e) => {
      results.unix = e.code;
      const tcp = net.connect(${receiver.port}, '127.0.0.1', () => { results.tcp = 'ok'; tcp.destroy(); console.log(JSON.stringify(results)); });
      tcp.on('error', (e) => { results.tcp = e.code; console.log(JSON.stringify(results)); });
    });
    unix.on('connect', () => { results.unix = 'ok'; unix.destroy(); unix.emit('error', { code: 'CONNECTED' }); });
  `;
  const result = spawnSync('env', ['-i', RUNTIME_LAUNCHER, NODE, '-e', script], { encoding: 'utf8' });
  t.equal(result.status, 0, result.stderr);
  t.same(JSON.parse(result.stdout), { kill: 'EPERM', killSelf: 'EPERM', reniceOther: 'EPERM', reniceSelf: 'ok', unix: 'EACCES', tcp: 'ok' });
});

// ---------------------------------------------------------------------------
// The reporter and the forwarder, started as the helper starts them.

t.test('reporter and forwarder: scrubbed reports arrive as Sentry events; the forwarder holds nothing', async (t) => {
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const driver = startDriver({ dsn: receiver.dsn, environment: 'staging', include: [] });
  t.teardown(() => driver.child.kill('SIGKILL'));
  const started = await driver.next();
  t.ok(started.started);
  const forwarder = await waitForForwarder(driver.child.pid!);
  const setUpMs = now() - (started.startedAt as number);
  t.comment(`startReporter() took ${(started.startMs as number).toFixed(2)} ms; forwarder privileges dropped and filter installed ${setUpMs.toFixed(1)} ms after it was called`);

  // Its identity, while it waits for reports.
  const status = statusOf(forwarder);
  t.same(
    { Uid: status.Uid, Gid: status.Gid, Groups: status.Groups, CapInh: status.CapInh, CapPrm: status.CapPrm, CapEff: status.CapEff, CapAmb: status.CapAmb, NoNewPrivs: status.NoNewPrivs, Seccomp: status.Seccomp },
    {
      Uid: `${NOBODY}\t${NOBODY}\t${NOBODY}\t${NOBODY}`,
      Gid: `${NOBODY}\t${NOBODY}\t${NOBODY}\t${NOBODY}`,
      Groups: '',
      CapInh: '0000000000000000',
      CapPrm: '0000000000000000',
      CapEff: '0000000000000000',
      CapAmb: '0000000000000000',
      NoNewPrivs: '1',
      Seccomp: '2',
    },
    'the forwarder: nobody, no capability in any set, NO_NEW_PRIVS, under seccomp',
  );
  // Started with setuid(2) by libuv, not by a capability drop: the bounding
  // set stays the driver's (emptying it takes CAP_SETPCAP); under
  // NO_NEW_PRIVS, with execve denied, it can grant nothing.
  t.equal(status.CapBnd, statusOf(driver.child.pid!).CapBnd, 'the bounding set as the driver has it');
  // The driver's own (its launcher's), then the forwarder's launcher's, its deny list, its execve denial.
  const filters = Number(statusOf(driver.child.pid!).Seccomp_filters) + 3;
  for (const task of fs.readdirSync(`/proc/${forwarder}/task`)) {
    const thread = fs.readFileSync(`/proc/${forwarder}/task/${task}/status`, 'utf8');
    t.match(thread, /^CapEff:\t0{16}$/m, `thread ${task}: no capability`);
    t.match(thread, new RegExp(`^Seccomp_filters:\\t${filters}$`, 'm'), `thread ${task}: under the forwarder's filters`);
  }
  t.equal(fs.statSync(`/proc/${forwarder}/status`).uid, 0, 'not dumpable (its /proc files belong to root)');
  const environ = fs.readFileSync(`/proc/${forwarder}/environ`, 'utf8').split('\0').filter(Boolean).sort();
  t.same(environ, ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'UV_USE_IO_URING=0'], 'its environment: no DSN, nothing of the helper\'s');
  t.notMatch(fs.readFileSync(`/proc/${forwarder}/cmdline`, 'utf8'), /public@|127\.0\.0\.1/, 'no DSN in its command line');
  checkDescriptors(t, forwarder, driver.child.pid!);
  t.same(receiver.connections, 0, 'nothing sent before anything is reported (the SDK is not even loaded)');

  // A refusal, then an internal error.
  driver.send({ report: REFUSAL });
  const reported = await driver.next();
  t.ok((reported.reportMs as number) < 50, `report() returned in ${(reported.reportMs as number).toFixed(3)} ms`);
  const [refusal] = await receiver.waitForEvents(1);
  const firstArrival = receiver.envelopes[0]!.receivedAt - (reported.at as number);
  driver.send({ report: internalError() });
  const reportedAgain = await driver.next();
  const [, internal] = await receiver.waitForEvents(2);
  const secondArrival = receiver.envelopes[1]!.receivedAt - (reportedAgain.at as number);
  t.comment(`report to event arrival: ${firstArrival.toFixed(1)} ms for the first (the forwarder loads the SDK then), ${secondArrival.toFixed(1)} ms for the next`);

  t.match(refusal, {
    level: 'error',
    release: `passt-repair@${VERSION}`,
    environment: 'staging',
    tags: { phase: 'peer', gate: 'peer', exit_code: '1' },
    logger: 'passt-repair',
  });
  t.equal(messageOf(refusal!), 'gate 4 (peer) refused: peer refused on [path]: pid [pid], uid [id], gid [id]; rule "vm": uid [id] is not in uids [[id]]');
  t.notOk('server_name' in refusal!, 'no host name');
  t.notOk('user' in refusal!, 'no user');
  t.match(internal, { level: 'fatal', tags: { phase: 'serve', exit_code: '1' }, exception: { values: [{ type: 'TypeError', value: 'cannot read [path]' }] } });
  const frames = internal!.exception!.values![0]!.stacktrace!.frames!.map((frame) => [frame.filename, frame.lineno]);
  t.same(frames, [['[path]', 5], ['dist/src/main.js', 12], ['dist/src/protocol.js', 31]], 'frames of the package relative to it, oldest first; others scrubbed');
  t.same(internal!.exception!.values![0]!.stacktrace!.frames!.slice(1).map((frame) => frame.function), ['main', 'serve']);
  const everything = JSON.stringify(receiver.envelopes);
  t.notMatch(everything, /tenant-a7|vm-42|\/srv\/|\/opt\/|work\/main/, 'no path of the helper\'s anywhere in what was sent');
  for (const event of [refusal!, internal!]) t.notMatch(wordsOf(event), /48213|61234|61235|12345/, 'no pid, uid or gid');
  t.match(receiver.envelopes[0]!.path, /sentry_key=public/, 'sent with the DSN\'s key');

  // The end: flushed and gone, quickly.
  driver.send({ close: true });
  const closed = await driver.next();
  t.comment(`close() with nothing pending took ${(closed.closeMs as number).toFixed(1)} ms`);
  t.ok((closed.closeMs as number) < 2500, 'close() returned within the flush bound');
  t.equal(closed.dropped, 0, 'nothing dropped');
  t.same(await exited(driver.child), { code: 0, signal: null });
  t.ok(ended(forwarder), 'the forwarder has exited');
  t.equal(receiver.events.length, 2, 'an orderly end sends nothing more');
  t.equal(driver.stderr(), '', 'nothing on stderr');
});

t.test('started by a non-root helper with ambient CAP_NET_ADMIN: the forwarder keeps its uid and no capability', async (t) => {
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const setpriv = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all,+net_admin', '--ambient-caps=+net_admin'];
  const driver = startDriver({ dsn: receiver.dsn, environment: 'production', include: [] }, setpriv);
  t.teardown(() => driver.child.kill('SIGKILL'));
  await driver.next();
  // setpriv execs env, which execs the launcher, which execs Node: one pid throughout.
  const forwarder = await waitForForwarder(driver.child.pid!);
  const status = statusOf(forwarder);
  t.match(statusOf(driver.child.pid!), { CapAmb: '0000000000001000' }, 'the driver runs with ambient CAP_NET_ADMIN');
  t.same([status.Uid, status.CapInh, status.CapPrm, status.CapEff, status.CapAmb, status.NoNewPrivs], [
    `${NOBODY}\t${NOBODY}\t${NOBODY}\t${NOBODY}`, '0000000000000000', '0000000000000000', '0000000000000000', '0000000000000000', '1',
  ], 'no capability left, not even the ambient one it inherited');
  driver.send({ report: REFUSAL });
  await driver.next();
  t.match(await receiver.waitForEvents(1), [{ level: 'error', tags: { gate: 'peer' } }], 'and it reports');
  driver.send({ close: true });
  await driver.next();
});

t.test('with the policy\'s include, paths, ids and pids are sent as they are', async (t) => {
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const driver = startDriver({ dsn: receiver.dsn, environment: 'production', include: ['paths', 'ids', 'pids'] });
  t.teardown(() => driver.child.kill('SIGKILL'));
  await driver.next();
  driver.send({ report: REFUSAL });
  await driver.next();
  const [event] = await receiver.waitForEvents(1);
  t.equal(messageOf(event!), REFUSAL.message);
  t.equal(event!.environment, 'production');
  driver.send({ close: true });
  await driver.next();
});

t.test('a helper that dies without closing: the forwarder reports it, and exits', async (t) => {
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const driver = startDriver({ dsn: receiver.dsn, environment: 'production', include: [] });
  await driver.next();
  const forwarder = await waitForForwarder(driver.child.pid!);
  driver.child.kill('SIGKILL');
  await exited(driver.child);
  const [event] = await receiver.waitForEvents(1);
  t.match(event, { level: 'fatal', tags: { phase: 'internal', exit_code: 'unknown' } });
  t.match(messageOf(event!), /^the helper ended without a final report \(killed/);
  t.ok(await waitForEnd(forwarder), 'the forwarder has exited');
});

t.test('a Sentry that never answers: report() never waits, close() gives up within the bound', async (t) => {
  const receiver = await startReceiver({ silent: true });
  t.teardown(() => receiver.close());
  const driver = startDriver({ dsn: receiver.dsn, environment: 'production', include: [] });
  t.teardown(() => driver.child.kill('SIGKILL'));
  await driver.next();
  const forwarder = await waitForForwarder(driver.child.pid!);
  for (let i = 0; i < 20; i++) {
    driver.send({ report: REFUSAL });
    const reported = await driver.next();
    t.ok((reported.reportMs as number) < 50, `report ${i + 1} returned in ${(reported.reportMs as number).toFixed(3)} ms`);
  }
  await receiver.waitForConnections(1);
  driver.send({ close: true });
  const closed = await driver.next();
  t.comment(`close() against a silent Sentry took ${(closed.closeMs as number).toFixed(0)} ms`);
  t.ok((closed.closeMs as number) < 4000, 'close() returned within the flush bound (2 s) and its grace');
  t.same(await exited(driver.child), { code: 0, signal: null });
  t.ok(await waitForEnd(forwarder), 'the forwarder gave up and exited on its own');
  t.equal(receiver.events.length, 0, 'nothing was ever answered');
});

t.test('a forwarder that cannot start costs the helper nothing', async (t) => {
  // An account that does not exist: the forwarder is not started (the helper itself then fails gate 2 with that message).
  const script = `
    const { startReporter } = require(${JSON.stringify(REPORTER)});
    const reporter = startReporter({ dsn: 'http://k@127.0.0.1:9/1', environment: 'e', include: new Set() }, 'no-such-account', '0');
    setTimeout(async () => {
      reporter.report(${JSON.stringify(REFUSAL)});
      const at = performance.now();
      await reporter.close();
      console.log(JSON.stringify({ closeMs: performance.now() - at, dropped: reporter.dropped }));
    }, 1000);
  `;
  const result = spawnSync('env', ['-i', RUNTIME_LAUNCHER, NODE, '--disable-sigusr1', '-e', script], { encoding: 'utf8' });
  t.equal(result.status, 0, 'the reporting process lives on');
  t.equal(result.stderr, '', 'nothing said: the helper says it when it drops its privileges');
  const { closeMs, dropped } = JSON.parse(result.stdout) as { closeMs: number; dropped: number };
  t.equal(dropped, 1, 'the report was dropped (the pipe is broken), not waited on');
  t.ok(closeMs < 100, `close() returned at once (${closeMs.toFixed(1)} ms)`);
});

// ---------------------------------------------------------------------------
// The real helper.

interface NobodyRun {
  helper: { code: number | null; signal: NodeJS.Signals | null; stderr: string };
  result: { reply: number | null; uid: number; gid: number; pid: number };
  socketPath: string;
  forwarder: number;
}

/** passt's side as uid 65534 (the listener fixture), the helper as root under `telemetry`, refused by gate 4. */
async function refusedAsNobody(telemetry: object): Promise<NobodyRun> {
  const dir = nobodyDirectory('tenant-a7');
  const socketPath = path.join(dir, 'vm.repair');
  const listener = await listenAsNobody(socketPath);
  const policy = writePolicy(temporaryDirectory(), { version: 1, telemetry, rules: [{ name: 'vm', sockets: [`${dir}/*.repair`], peer: { uids: [12345] } }] });
  const run = startHelper(['--policy', policy, socketPath]);
  const forwarder = waitForForwarder(run.child.pid!);
  const helper = await run.exited;
  const result = await listener.finished;
  return { helper, result: { ...result, pid: listener.pid }, socketPath, forwarder: await forwarder };
}

t.test('the helper refuses a peer (gate 4): the event has the gate and phase, and none of the path, uid or pid', async (t) => {
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const { helper, result, socketPath, forwarder } = await refusedAsNobody({ sentry: { dsn: receiver.dsn, environment: 'ci' } });
  t.equal(result.reply, null, 'refused: no reply');
  t.equal(helper.code, 1);
  t.match(helper.stderr, /gate 4 \(peer\) refused: peer refused on .*vm\.repair: pid \d+, uid 65534/);
  const [event] = await receiver.waitForEvents(1);
  t.match(event, { level: 'error', release: `passt-repair@${VERSION}`, environment: 'ci', tags: { phase: 'peer', gate: 'peer', exit_code: '1' } });
  t.match(messageOf(event!), /^gate 4 \(peer\) refused: peer refused on \[path\]: pid \[pid\], uid \[id\], gid \[id\]; rule "vm": uid \[id\] is not in uids \[\[id\]\]$/);
  t.notMatch(JSON.stringify(receiver.envelopes), new RegExp(`tenant-a7|${path.dirname(socketPath)}`), 'the socket path is nowhere in what was sent');
  t.notMatch(wordsOf(event!), /65534|12345/, 'no uid');
  t.notMatch(wordsOf(event!), new RegExp(`\\b${result.pid}\\b`), 'no pid');
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.equal(receiver.events.length, 1, 'one failure, one event (an orderly end is not reported)');
  t.ok(await waitForEnd(forwarder), 'the forwarder is gone with the helper');
});

t.test('with include ["paths", "ids", "pids"], the same event carries them', async (t) => {
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const { result, socketPath } = await refusedAsNobody({ sentry: { dsn: receiver.dsn, include: ['paths', 'ids', 'pids'] } });
  const [event] = await receiver.waitForEvents(1);
  t.equal(event!.environment, 'production', 'the default environment');
  t.equal(
    messageOf(event!),
    `gate 4 (peer) refused: peer refused on ${socketPath}: pid ${result.pid}, uid 65534, gid 65534; rule "vm": uid 65534 is not in uids [12345]`,
  );
});

interface TelemetrySession {
  helper: HelperRun;
  sock: number;
  forwarder: number;
  receiver: Receiver;
}

async function telemetrySession(t: Test, receiverOptions: { silent?: boolean } = {}): Promise<TelemetrySession> {
  const receiver = await startReceiver(receiverOptions);
  t.teardown(() => receiver.close());
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'passt.repair');
  const policy = writePolicy(temporaryDirectory(), {
    version: 1,
    telemetry: { sentry: { dsn: receiver.dsn, environment: 'ci' } },
    rules: [{ name: 'test', sockets: [`${dir}/*.repair`], peer: {} }],
  });
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', policy, socketPath]);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  const forwarder = await waitForForwarder(helper.child.pid!);
  return { helper, sock, forwarder, receiver };
}

t.test('a malformed request under telemetry: refused as ever, reported with gate "request"', async (t) => {
  const { helper, sock, forwarder, receiver } = await telemetrySession(t);
  const loopback = await loopbackConnections(2);
  t.teardown(() => loopback.close());
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'served first');
  // While it serves: the forwarder, as the helper's child.
  t.same(childrenOf(helper.child.pid!), [forwarder], 'one child: the forwarder');
  const status = statusOf(forwarder);
  t.same([status.Uid, status.CapInh, status.CapPrm, status.CapEff, status.CapAmb, status.NoNewPrivs, status.Seccomp], [
    `${NOBODY}\t${NOBODY}\t${NOBODY}\t${NOBODY}`, '0000000000000000', '0000000000000000', '0000000000000000', '0000000000000000', '1', '2',
  ]);
  checkDescriptors(t, forwarder, helper.child.pid!);
  passt.sendRequest(sock, Buffer.from([2]), loopback.fds);
  t.equal(await awaitReply(sock), FAILURE_BYTE, 'refused');
  fs.closeSync(sock);
  const exit = await helper.exited;
  t.equal(exit.code, 1);
  t.equal(exit.signal, null, 'not killed by its filter (it reaped the forwarder: wait4)');
  const [event] = await receiver.waitForEvents(1);
  t.match(event, { level: 'error', environment: 'ci', release: `passt-repair@${VERSION}`, tags: { phase: 'serve', gate: 'request', exit_code: '1' } });
  t.match(messageOf(event!), /^request refused: unknown command 2 /);
  t.comment(`from the helper's report to the event's arrival: ${(receiver.envelopes[0]!.receivedAt - event!.timestamp! * 1000).toFixed(0)} ms (the forwarder loads the SDK on this first report)`);
});

t.test('a forwarder killed while the helper serves: the helper serves on, under its filter, and drops its report', async (t) => {
  const { helper, sock, forwarder, receiver } = await telemetrySession(t);
  const loopback = await loopbackConnections(1);
  t.teardown(() => loopback.close());
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON);
  process.kill(forwarder, 'SIGKILL');
  t.ok(await waitForEnd(forwarder), 'the forwarder is gone');
  // The helper reaps it (SIGCHLD, wait4) under its filter, and goes on.
  for (const command of [0, TCP_REPAIR_ON, 0]) t.equal(passt.roundTrip(sock, command, loopback.fds)[0], command, `still serving (${command})`);
  passt.sendRequest(sock, Buffer.from([2]), loopback.fds);
  t.equal(await awaitReply(sock), FAILURE_BYTE, 'a refusal');
  fs.closeSync(sock);
  const started = Date.now();
  const exit = await helper.exited;
  t.same([exit.code, exit.signal], [1, null], 'exit 1, not killed');
  t.ok(Date.now() - started < 2000, 'without waiting for a forwarder that is gone');
  t.equal(receiver.connections, 0, 'nothing was sent');
});

t.test('a helper killed while serving: its forwarder reports the crash', async (t) => {
  const { helper, sock, forwarder, receiver } = await telemetrySession(t);
  helper.child.kill('SIGKILL');
  await helper.exited;
  fs.closeSync(sock);
  const [event] = await receiver.waitForEvents(1);
  t.match(event, { level: 'fatal', tags: { phase: 'internal' }, release: `passt-repair@${VERSION}` });
  t.match(messageOf(event!), /without a final report/);
  t.ok(await waitForEnd(forwarder), 'the forwarder is gone');
});

t.test('a Sentry that never answers delays no reply, and the helper still exits in bounded time', async (t) => {
  const { helper, sock, forwarder, receiver } = await telemetrySession(t, { silent: true });
  const loopback = await loopbackConnections(253);
  t.teardown(() => loopback.close());
  let slowest = 0;
  for (let round = 0; round < 20; round++) {
    const [reply, nanoseconds] = passt.roundTrip(sock, round % 2 === 0 ? TCP_REPAIR_ON : 0, loopback.fds);
    t.equal(reply, round % 2 === 0 ? TCP_REPAIR_ON : 0);
    slowest = Math.max(slowest, nanoseconds / 1e6);
  }
  t.comment(`slowest of 20 round trips of 253 sockets: ${slowest.toFixed(2)} ms`);
  passt.sendRequest(sock, Buffer.from([2]), loopback.fds.slice(0, 1));
  t.equal(await awaitReply(sock), FAILURE_BYTE, 'a refusal, which is reported to the silent Sentry');
  const closedAt = Date.now();
  fs.closeSync(sock);
  const exit = await helper.exited;
  const exitMs = Date.now() - closedAt;
  t.comment(`the helper ended ${exitMs} ms after passt closed`);
  t.equal(exit.code, 1);
  t.ok(exitMs < 10_000, 'bounded');
  t.ok(receiver.connections >= 1, 'the forwarder did try to send');
  t.ok(await waitForEnd(forwarder), 'the forwarder has given up and ended');
});

t.test('a policy not owned by root may not turn telemetry on', async (t) => {
  const dir = temporaryDirectory();
  fs.chownSync(dir, NOBODY, NOBODY);
  fs.chmodSync(dir, 0o755);
  const policy = writePolicy(dir, {
    version: 1,
    telemetry: { sentry: { dsn: 'http://k@127.0.0.1:9/1' } },
    rules: [{ name: 'test', sockets: [`${dir}/*.repair`], peer: {} }],
  });
  fs.chownSync(policy, NOBODY, NOBODY);
  const asNobody = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', HELPER];
  const check = spawnSync(asNobody[0]!, [...asNobody.slice(1), '--check-policy', policy], { encoding: 'utf8' });
  t.equal(check.status, 1, '--check-policy: invalid');
  t.match(check.stderr, /\/telemetry: honoured only in a policy owned by root, and this one is owned by uid 65534/);
  const serve = spawnSync(asNobody[0]!, [...asNobody.slice(1), '--policy', policy, path.join(dir, 'x.repair')], { encoding: 'utf8' });
  t.equal(serve.status, 2, 'serving: an unusable policy');
  t.match(serve.stderr, /\/telemetry: honoured only in a policy owned by root/);
});
