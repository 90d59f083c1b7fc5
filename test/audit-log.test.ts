// SPDX-License-Identifier: GPL-2.0-or-later
// The audit log on the helper's real standard error: its events and fields
// in both formats, the gate named in every refusal, syslog priorities for the
// journal, and a stalled standard error that must not stall passt.
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HELPER, ROOT, TCP_REPAIR_OFF, TCP_REPAIR_ON, acceptHelper, awaitReply, passt, startHelper, writePolicy, FAILURE_BYTE } from './passt-double/passt-double';
import { TEST_POLICY, loopbackConnections, startSession, temporaryDirectory, type Loopback } from './lib';

const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

let loopback: Loopback;
t.before(async () => {
  loopback = await loopbackConnections(5);
});
t.teardown(() => loopback.close());

type Line = Record<string, unknown>;

function jsonLines(stderr: string): Line[] {
  return stderr
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as Line);
}

/** ON for 2 sockets, ON for 3, OFF for all 5: two runs of commands. */
async function threeRequests(t: Test, sock: number): Promise<void> {
  const fds = loopback.fds;
  for (const [command, batch] of [[TCP_REPAIR_ON, fds.slice(0, 2)], [TCP_REPAIR_ON, fds.slice(2)], [TCP_REPAIR_OFF, fds]] as const) {
    passt.sendRequest(sock, Buffer.from([command]), batch);
    t.equal(await awaitReply(sock), command, `command ${command} for ${batch.length} socket(s) answered`);
  }
}

t.test('--log-format json: start, connected, one line per run of a command, end; stable fields', async (t) => {
  const session = await startSession((socketPath) => ['--log-format', 'json', socketPath]);
  await threeRequests(t, session.sock);
  fs.closeSync(session.sock);
  const { code, stderr } = await session.helper.exited;
  t.equal(code, 0);
  const lines = jsonLines(stderr);
  t.same(
    lines.map((line) => line.event),
    ['start', 'connected', 'command', 'command', 'end'],
    'the events in order',
  );
  for (const line of lines) {
    t.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, `${String(line.event)}: an ISO 8601 UTC time`);
    t.equal(line.level, 'info', `${String(line.event)}: level info`);
    t.type(line.message, 'string');
  }
  const [start, connected, on, off, end] = lines as [Line, Line, Line, Line, Line];
  const socketPath = path.join(session.dir, 'passt.repair');
  t.match(start, { version: VERSION, pid: session.helper.child.pid, path: socketPath, policy: TEST_POLICY }, 'start: version, pid, path, policy');
  t.match(
    connected,
    { socket: fs.realpathSync(socketPath), rule: 'tests', peerPid: process.pid, peerUid: 0, peerGid: 0, peerExe: fs.realpathSync(process.execPath) },
    'connected: the socket, the rule that allowed it, and the peer (this test process)',
  );
  t.match(on, { command: 'TCP_REPAIR_ON', requests: 2, sockets: 5 }, 'TCP_REPAIR_ON: both requests in one line');
  t.match(off, { command: 'TCP_REPAIR_OFF', requests: 1, sockets: 5 });
  for (const summary of [on, off]) t.ok(typeof summary.durationMs === 'number' && summary.durationMs >= 0, 'a duration in ms');
  t.match(end, { reason: 'done', exitCode: 0, requests: 3, sockets: 10, droppedLines: 0 }, 'end: why, totals');
  t.ok(typeof end.durationMs === 'number' && end.durationMs > 0, 'end: the run took some time');
});

t.test('text format by default: the same events, one line each', async (t) => {
  const session = await startSession();
  await threeRequests(t, session.sock);
  fs.closeSync(session.sock);
  const { code, stderr } = await session.helper.exited;
  t.equal(code, 0);
  const lines = stderr.trimEnd().split('\n');
  t.equal(lines.length, 5);
  t.match(lines[0], new RegExp(`^passt-repair: start: passt-repair ${VERSION.replace(/\./g, '\\.')}, pid ${session.helper.child.pid}, path .*passt\\.repair, policy ${TEST_POLICY}$`));
  t.match(lines[1], /^passt-repair: connected to .*passt\.repair, allowed by rule "tests": peer pid \d+, uid 0, gid 0, executable \//);
  t.match(lines[2], /^passt-repair: TCP_REPAIR_ON: 2 request\(s\), 5 socket\(s\), [\d.]+ ms$/);
  t.match(lines[3], /^passt-repair: TCP_REPAIR_OFF: 1 request\(s\), 5 socket\(s\), [\d.]+ ms$/);
  t.match(lines[4], /^passt-repair: end: passt closed the connection; 3 request\(s\), 10 socket\(s\) in [\d.]+ ms$/);
});

t.test('the policy chooses the format; --log-format wins over it', async (t) => {
  const policy = writePolicy(temporaryDirectory(), {
    version: 1,
    log: { format: 'json' },
    rules: [{ name: 'tests', sockets: [`${os.tmpdir()}/**`], peer: {} }],
  });
  for (const [args, json] of [[[], true], [['--log-format', 'text'], false]] as const) {
    const dir = temporaryDirectory();
    const socketPath = path.join(dir, 'passt.repair');
    const listener = passt.listenUnix(socketPath);
    const helper = startHelper(['--policy', policy, ...args, socketPath]);
    fs.closeSync(await acceptHelper(listener));
    fs.closeSync(listener);
    const { code, stderr } = await helper.exited;
    t.equal(code, 0);
    const first = stderr.split('\n')[0]!;
    if (json) t.match(JSON.parse(first), { event: 'start' }, 'the policy\'s "log": {"format": "json"}');
    else t.match(first, /^passt-repair: start: /, '--log-format text over the policy');
  }
});

t.test('--log-format needs text or json', async (t) => {
  const result = spawnSync(HELPER, ['--log-format', 'xml', '/tmp/x'], { encoding: 'utf8' });
  t.equal(result.status, 2);
  t.match(result.stderr, /--log-format needs "text" or "json", not "xml"/);
});

t.test('every refusal names its gate: path (1), peer (4), request', async (t) => {
  await t.test('gate 1: a socket no rule allows', async (t) => {
    const dir = temporaryDirectory();
    const socketPath = path.join(dir, 'elsewhere.repair');
    const listener = passt.listenUnix(socketPath);
    const policy = writePolicy(temporaryDirectory(), { version: 1, rules: [{ name: 'only-vms', sockets: ['/run/vms/*.repair'], peer: {} }] });
    const { code, stderr } = await startHelper(['--policy', policy, '--log-format', 'json', socketPath]).exited;
    fs.closeSync(listener);
    t.equal(code, 1);
    const lines = jsonLines(stderr);
    t.same(lines.map((line) => line.event), ['start', 'refused', 'end']);
    t.match(lines[1], { level: 'error', gate: 'path', reason: /elsewhere\.repair: no rule of .* allows connecting to this socket/ });
    t.match(lines[1]!.message, /^gate 1 \(path\) refused: /);
    t.match(lines[2], { level: 'error', reason: 'refused', exitCode: 1, requests: 0, sockets: 0 });
  });
  await t.test('gate 4: a peer no rule allows', async (t) => {
    const policy = writePolicy(temporaryDirectory(), { version: 1, rules: [{ name: 'qemu-only', sockets: [`${os.tmpdir()}/**`], peer: { uids: [107] } }] });
    const dir = temporaryDirectory();
    const socketPath = path.join(dir, 'passt.repair');
    const listener = passt.listenUnix(socketPath);
    const helper = startHelper(['--policy', policy, '--log-format', 'json', socketPath]);
    fs.closeSync(await acceptHelper(listener));
    fs.closeSync(listener);
    const { code, stderr } = await helper.exited;
    t.equal(code, 1);
    const lines = jsonLines(stderr);
    t.same(lines.map((line) => line.event), ['start', 'refused', 'end'], 'no connected line: the peer was not served');
    t.match(lines[1], { gate: 'peer', reason: /rule "qemu-only": uid 0 is not in uids \[107\]/ });
    t.match(lines[1]!.message, /^gate 4 \(peer\) refused: /);
  });
  await t.test('the protocol loop: a request that is not one command byte', async (t) => {
    const session = await startSession((socketPath) => ['--log-format', 'json', socketPath]);
    passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), loopback.fds.slice(0, 1));
    t.equal(await awaitReply(session.sock), TCP_REPAIR_ON);
    passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_OFF, TCP_REPAIR_OFF]), loopback.fds.slice(0, 1));
    t.equal(await awaitReply(session.sock), FAILURE_BYTE, 'refused: no reply');
    fs.closeSync(session.sock);
    const { code, stderr } = await session.helper.exited;
    t.equal(code, 1);
    const lines = jsonLines(stderr);
    t.same(lines.map((line) => line.event), ['start', 'connected', 'command', 'refused', 'end'], 'the request served before is summarised');
    t.match(lines[3], { gate: 'request', reason: /request refused: more than one byte/ });
    t.match(lines[4], { reason: 'refused', requests: 1, sockets: 1 });
  });
  await t.test('an error that is no refusal names its phase', async (t) => {
    // (A missing sandbox account, once the example here, is now refused with the policy: exit 2.)
    const missing = path.join(temporaryDirectory(), 'none.repair');
    const { code, stderr } = await startHelper(['--policy', TEST_POLICY, '--log-format', 'json', missing]).exited;
    t.equal(code, 1);
    const lines = jsonLines(stderr);
    t.same(lines.map((line) => line.event), ['start', 'error', 'end']);
    t.match(lines[1], { phase: 'connect', reason: /none\.repair: no such file or directory/ });
    t.match(lines[2], { reason: 'error', exitCode: 1 });
  });
  await t.test('an unusable policy: the start line still comes first, then the error, exit 2', async (t) => {
    const policy = writePolicy(temporaryDirectory(), { version: 2, rules: [] });
    const { code, stderr } = await startHelper(['--policy', policy, '--log-format', 'json', '/tmp']).exited;
    t.equal(code, 2);
    const lines = jsonLines(stderr);
    t.same(lines.map((line) => line.event), ['start', 'error', 'end']);
    t.match(lines[1], { phase: 'policy', reason: /\/version: expected 1/ });
    t.match(lines[2], { exitCode: 2 });
  });
});

/**
 * A FIFO to be the helper's standard error: a non-blocking read end for the
 * test, and a blocking write end for the helper, each its own open file
 * description (spawn makes a child's stdio blocking, and the helper makes it
 * non-blocking, on the description it is given: the test's end must not be
 * that one).
 */
function fifo(): { read: number; write: number; path: string } {
  const fifoPath = path.join(temporaryDirectory(), 'stderr');
  const made = spawnSync('mkfifo', [fifoPath]);
  if (made.status !== 0) throw new Error(`mkfifo: ${made.stderr}`);
  const read = fs.openSync(fifoPath, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  return { read, write: fs.openSync(fifoPath, fs.constants.O_WRONLY), path: fifoPath };
}

function drain(fd: number): string {
  let text = '';
  const buffer = Buffer.alloc(65536);
  for (;;) {
    try {
      const n = fs.readSync(fd, buffer);
      if (n === 0) return text;
      text += buffer.toString('utf8', 0, n);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return text;
      throw error;
    }
  }
}

/** Starts the helper with `stderrFd` as its standard error and the environment given. */
function startWithStderr(args: readonly string[], stderrFd: number, env: NodeJS.ProcessEnv) {
  const child = spawn(HELPER, ['--policy', TEST_POLICY, ...args], { stdio: ['ignore', 'ignore', stderrFd], env });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, exited };
}

t.test('under systemd (JOURNAL_STREAM is standard error): syslog priorities on every line', async (t) => {
  for (const matching of [true, false]) {
    const stream = fifo();
    const stats = fs.fstatSync(stream.write, { bigint: true });
    const journalStream = matching ? `${stats.dev}:${stats.ino}` : `${stats.dev}:${stats.ino + 1n}`;
    const dir = temporaryDirectory();
    const socketPath = path.join(dir, 'passt.repair');
    const listener = passt.listenUnix(socketPath);
    const helper = startWithStderr([socketPath], stream.write, { ...process.env, JOURNAL_STREAM: journalStream });
    const sock = await acceptHelper(listener);
    fs.closeSync(listener);
    passt.sendRequest(sock, Buffer.from([TCP_REPAIR_ON, TCP_REPAIR_ON]), loopback.fds.slice(0, 1));
    t.equal(await awaitReply(sock), FAILURE_BYTE, 'a refused request');
    fs.closeSync(sock);
    t.equal(await helper.exited, 1);
    const lines = drain(stream.read).trimEnd().split('\n');
    fs.closeSync(stream.read);
    fs.closeSync(stream.write);
    if (matching) {
      t.same(
        lines.map((line) => line.slice(0, 3)),
        ['<6>', '<6>', '<3>', '<3>'],
        'info for start and connected, err for the refusal and the failed end',
      );
      t.match(lines[0], /^<6>passt-repair: start: /);
    } else t.ok(lines.every((line) => line.startsWith('passt-repair: ')), 'JOURNAL_STREAM naming another stream: no prefixes');
  }
});

function isNonBlocking(fd: number): boolean {
  const flags = /^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
  return (parseInt(flags, 8) & fs.constants.O_NONBLOCK) !== 0;
}

t.test('a stalled standard error does not stall passt: lines are dropped and counted', async (t) => {
  const stream = fifo();
  // Full: the helper's first write would block were it not non-blocking.
  const filler = fs.openSync(stream.path, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  const chunk = Buffer.alloc(4096, 'x');
  for (;;) {
    try {
      fs.writeSync(filler, chunk);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw error;
    }
  }
  fs.closeSync(filler);
  const writeEnd = stream.write;
  t.notOk(isNonBlocking(writeEnd), 'the descriptor given is blocking');
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'passt.repair');
  const listener = passt.listenUnix(socketPath);
  const helper = startWithStderr(['--log-format', 'json', socketPath], writeEnd, process.env);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  // ON, OFF, ON: the first ON run's summary is written (and dropped) before
  // the third request is read, so by the third reply three lines are
  // certainly lost. The OFF run's summary races with the drain below: it is
  // either dropped or written (during the drain at the earliest), and the
  // end line's count must say which.
  for (const command of [TCP_REPAIR_ON, TCP_REPAIR_OFF, TCP_REPAIR_ON]) {
    passt.sendRequest(sock, Buffer.from([command]), loopback.fds);
    t.equal(await awaitReply(sock), command, `command ${command} answered while stderr is full`);
  }
  t.ok(isNonBlocking(writeEnd), 'the helper made it non-blocking while it runs');
  // Draining makes room: what the helper writes from then on gets through.
  const duringDrain = drain(stream.read).replace(/x/g, '');
  fs.closeSync(sock);
  t.equal(await helper.exited, 0, 'exit 0');
  const lines = jsonLines(duringDrain + drain(stream.read));
  t.notOk(lines.some((line) => line.event === 'start' || line.event === 'connected'), 'start and connected were dropped, never written late');
  const end = lines[lines.length - 1]!;
  t.match(end, { event: 'end', reason: 'done' }, 'once there was room again, the end line was written');
  t.same(lines.slice(0, -1).map((line) => line.command), lines.length === 3 ? ['TCP_REPAIR_OFF', 'TCP_REPAIR_ON'] : ['TCP_REPAIR_ON'], 'then the later summaries, in order');
  t.equal(end.droppedLines, 6 - lines.length, 'the end line counts exactly the lines that were dropped (6 in all: start, connected, three summaries, end)');
  t.notOk(isNonBlocking(writeEnd), 'Node.js put the flags back at exit');
  fs.closeSync(writeEnd);
  fs.closeSync(stream.read);
});
