// SPDX-License-Identifier: GPL-2.0-or-later
// Failures under resource limits are clear: each ends in one line naming
// the limit and exit 1, with nothing connected; an audit log lost to the
// file-size limit is reported by the exit status. Every limit is set with
// prlimit(1) on the real helper, as a caller's ulimit would be.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, awaitReply, HELPER, passt, ROOT, TCP_REPAIR_ON } from './passt-double/passt-double';
import { loopbackConnections, temporaryDirectory, TEST_POLICY, type Loopback } from './lib';

let loopback: Loopback;
t.before(async () => {
  loopback = await loopbackConnections(1);
});
t.teardown(() => loopback.close());

/** A listening repair socket in a fresh directory, removed in teardown. */
function listening(t: Test) {
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'passt.repair');
  const listener = passt.listenUnix(socketPath);
  t.teardown(() => {
    fs.closeSync(listener);
    fs.rmSync(dir, { recursive: true });
  });
  return { dir, socketPath, listener };
}

/** The helper under `prlimit LIMIT`, its standard error on `stderr` (a pipe unless a descriptor is given). */
function startLimited(limit: string, socketPath: string, stderr: number | 'pipe' = 'pipe') {
  const child = spawn('prlimit', [limit, HELPER, '--policy', TEST_POLICY, socketPath], { stdio: ['ignore', 'ignore', stderr] });
  let output = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stderr: output })),
  );
}

for (const [limit, line] of [
  ['--nofile=14', 'the open-file limit (RLIMIT_NOFILE, ulimit -n) is 14; the helper needs at least 32 to start (and about 280 for a request of 253 sockets)'],
  ['--nofile=18', 'the open-file limit (RLIMIT_NOFILE, ulimit -n) is 18; the helper needs at least 32 to start (and about 280 for a request of 253 sockets)'],
  ['--nofile=20', 'the open-file limit (RLIMIT_NOFILE, ulimit -n) is 20; the helper needs at least 32 to start (and about 280 for a request of 253 sockets)'],
  ['--nofile=31', 'the open-file limit (RLIMIT_NOFILE, ulimit -n) is 31; the helper needs at least 32 to start (and about 280 for a request of 253 sockets)'],
  ['--as=1073741824', 'the address-space limit (RLIMIT_AS, ulimit -v) is 1048576 KiB; the helper\'s runtime needs at least 2097152 KiB'],
  ['--as=536870912', 'the address-space limit (RLIMIT_AS, ulimit -v) is 524288 KiB; the helper\'s runtime needs at least 2097152 KiB'],
] as const) {
  t.test(`prlimit ${limit}: one line naming the limit, exit 1, nothing connected`, async (t) => {
    const { socketPath, listener } = listening(t);
    const result = await startLimited(limit, socketPath);
    t.same({ code: result.code, signal: result.signal }, { code: 1, signal: null }, 'exit 1, no crash');
    t.equal(result.stderr, `passt-repair: ${line}\n`);
    t.equal(passt.accept(listener, 0), -1, 'nothing connected');
  });
}

t.test('prlimit --sigpending=0: the capability broadcast names the limit it hit, nothing connected', async (t) => {
  const { socketPath, listener } = listening(t);
  const result = await startLimited('--sigpending=0', socketPath);
  t.equal(result.code, 1);
  t.match(
    result.stderr,
    /^passt-repair: cannot signal thread \d+ to drop its privileges: resource temporarily unavailable \(no room to queue a signal: the pending-signal limit, RLIMIT_SIGPENDING, ulimit -i, is reached\)$/m,
  );
  t.equal(passt.accept(listener, 0), -1, 'nothing connected');
});

t.test('prlimit --fsize=0, the audit log a file: nothing can be logged, so nothing is connected; exit 1, no SIGXFSZ', async (t) => {
  const { dir, socketPath, listener } = listening(t);
  const log = fs.openSync(path.join(dir, 'audit.log'), 'w');
  const result = await startLimited('--fsize=0', socketPath, log);
  fs.closeSync(log);
  t.same({ code: result.code, signal: result.signal }, { code: 1, signal: null });
  t.equal(fs.statSync(path.join(dir, 'audit.log')).size, 0, 'not a byte could be written');
  t.equal(passt.accept(listener, 0), -1, 'nothing connected');
});

t.test('prlimit --fsize, the audit log lost while serving: passt is served, the exit status reports the loss', async (t) => {
  const { dir, socketPath, listener } = listening(t);
  const file = path.join(dir, 'audit.log');
  const log = fs.openSync(file, 'w');
  // Room for the start line (its pid at most 7 digits) and a little more:
  // the "connected" line is cut at the limit, and every later write fails (EFBIG).
  const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const limit = `passt-repair: start: passt-repair ${version}, pid 1234567, path ${socketPath}, policy ${TEST_POLICY}\n`.length + 20;
  const exited = startLimited(`--fsize=${limit}`, socketPath, log);
  const sock = await acceptHelper(listener);
  passt.sendRequest(sock, Buffer.from([TCP_REPAIR_ON]), loopback.fds);
  t.equal(await awaitReply(sock), TCP_REPAIR_ON, 'served');
  fs.closeSync(sock);
  const result = await exited;
  fs.closeSync(log);
  t.same({ code: result.code, signal: result.signal }, { code: 1, signal: null }, 'exit 1: the audit log was lost');
  const written = fs.readFileSync(file, 'utf8');
  t.equal(written.length, limit, 'written up to the limit');
  t.match(written, /^passt-repair: start: /);
});
