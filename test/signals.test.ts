// SPDX-License-Identifier: GPL-2.0-or-later
// SIGTERM, SIGINT and SIGHUP at every phase of a serving run, sent to the
// real helper under its real seccomp filter: before connecting (waiting in
// directory mode), between two gates, between requests and inside a batch.
// Each must end in the documented status (128 + N), an end line naming the
// signal, never SIGSYS (Node's own handlers re-raise with tgkill, which the
// filter kills), and every socket in the state passt last got confirmed.
// The phases inside the gates and the batch are held open deterministically
// with strace's delay injection on a system call made there.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { acceptHelper, awaitReply, FAILURE_BYTE, HELPER, passt, TCP_REPAIR_ON, type HelperRun } from './passt-double/passt-double';
import { loopbackConnections, repairStates, startSession, startTestHelper, straceMissing, temporaryDirectory, type Loopback } from './lib';

const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
type Signal = (typeof SIGNALS)[number];

let loopback: Loopback;
t.before(async () => {
  loopback = await loopbackConnections(40);
});
t.teardown(() => loopback.close());

/** The helper's stderr so far, collected from its start (startHelper's own copy comes only at exit). */
const stderrSoFar = new WeakMap<HelperRun, { text: string }>();
function collectStderr(helper: HelperRun): HelperRun {
  const collected = { text: '' };
  helper.child.stderr!.on('data', (chunk: string) => (collected.text += chunk));
  stderrSoFar.set(helper, collected);
  return helper;
}

/** Resolves once the helper's stderr so far matches `pattern`; returns the match. */
async function waitForLine(helper: HelperRun, pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
  const collected = stderrSoFar.get(helper)!;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = collected.text.match(pattern);
    if (match) return match;
    if (Date.now() > deadline || helper.child.exitCode !== null) throw new Error(`no line matching ${pattern} in:\n${collected.text}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** The helper's own pid, from its start line (under strace, the child is strace). */
async function helperPid(helper: HelperRun): Promise<number> {
  return Number((await waitForLine(helper, /start: passt-repair \S+, pid (\d+)/))[1]);
}

/** The exit, the end line and no SIGSYS, for a run stopped by `signal` after `requests` requests on `sockets` sockets. */
async function expectStopped(t: Test, helper: HelperRun, signal: Signal, requests: number, sockets: number): Promise<void> {
  const { code, signal: killedBy, stderr } = await helper.exited;
  t.equal(killedBy, null, 'not killed by a signal (no SIGSYS, no default action)');
  t.equal(code, 128 + os.constants.signals[signal], `exit 128 + ${signal}`);
  t.notMatch(stderr, /SIGSYS|internal error/, 'no SIGSYS, no internal error');
  t.match(stderr, new RegExp(`passt-repair: end: stopped by ${signal} \\(exit ${128 + os.constants.signals[signal]}\\); ${requests} request\\(s\\), ${sockets} socket\\(s\\)`), 'the end line names the signal and the totals');
}

/** After the helper stopped: passt reads the failure byte (never an echo), then EOF. */
async function expectFailureByte(t: Test, sock: number): Promise<void> {
  t.equal(await awaitReply(sock), FAILURE_BYTE, 'passt reads the failure byte');
  t.equal(await awaitReply(sock), null, 'then the connection closes');
}

SIGNALS.forEach((signal, index) => {
  // Each signal's runs use sockets of their own, left as the helper left them.
  const own = (from: number, count: number) => loopback.fds.slice(index * 12 + from, index * 12 + from + count);

  t.test(`${signal} while waiting in directory mode: the wait ends cleanly`, async (t) => {
    const dir = temporaryDirectory();
    const helper = collectStderr(startTestHelper([dir]));
    const pid = await helperPid(helper);
    process.kill(pid, signal);
    await expectStopped(t, helper, signal, 0, 0);
    fs.rmSync(dir, { recursive: true });
  });

  t.test(`${signal} between two gates (held in seccomp(2) by strace): nothing is served`, { skip: straceMissing() }, async (t) => {
    const dir = temporaryDirectory();
    const socketPath = path.join(dir, 'passt.repair');
    const listener = passt.listenUnix(socketPath);
    // Every seccomp(2) call waits 0.4 s before it runs: the filter cannot be
    // installed, nor the first request read, until well after the signal,
    // sent as soon as the connected line (gate 4) is read. The launcher and
    // the filter's preparation make some twenty seccomp(2) calls before
    // connecting (libseccomp probing the kernel), hence the long wait for
    // the connection.
    const helper = collectStderr(startTestHelper([socketPath], ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=seccomp', '-e', 'inject=seccomp:delay_enter=400000', HELPER]));
    const sock = await acceptHelper(listener, 60_000);
    fs.closeSync(listener);
    const pid = await helperPid(helper);
    await waitForLine(helper, /connected to /);
    const fds = own(0, 3);
    const before = repairStates(fds);
    passt.sendRequest(sock, Buffer.from([TCP_REPAIR_ON]), fds);
    process.kill(pid, signal);
    await expectFailureByte(t, sock);
    await expectStopped(t, helper, signal, 0, 0);
    t.same(repairStates(fds), before, 'the request sent during the gates was never served');
    fs.closeSync(sock);
    fs.rmSync(dir, { recursive: true });
  });

  t.test(`${signal} between requests: the last confirmed state stays`, async (t) => {
    const session = await startSession();
    const fds = own(3, 4);
    passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), fds);
    t.equal(await awaitReply(session.sock), TCP_REPAIR_ON, 'a request confirmed');
    process.kill(session.helper.child.pid!, signal);
    await expectFailureByte(t, session.sock);
    await expectStopped(t, session.helper, signal, 1, fds.length);
    t.same(repairStates(fds), fds.map(() => 1), 'every socket in the state confirmed');
    fs.closeSync(session.sock);
  });

  t.test(`${signal} inside a batch (setsockopt slowed by strace): the batch is finished and confirmed, then the helper stops`, { skip: straceMissing() }, async (t) => {
    const dir = temporaryDirectory();
    const socketPath = path.join(dir, 'passt.repair');
    const listener = passt.listenUnix(socketPath);
    // Each setsockopt(2) returns 300 ms after it took effect: a batch of five
    // takes 1.5 seconds, and the signal lands after the first.
    const helper = collectStderr(startTestHelper([socketPath], ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=setsockopt', '-e', 'inject=setsockopt:delay_exit=300000', HELPER]));
    const sock = await acceptHelper(listener, 20_000);
    fs.closeSync(listener);
    const pid = await helperPid(helper);
    const fds = own(7, 5);
    t.same(repairStates(fds), fds.map(() => 0), 'out of repair mode before');
    passt.sendRequest(sock, Buffer.from([TCP_REPAIR_ON]), fds);
    while (passt.repairState(fds[0]!) !== 1) await new Promise((resolve) => setTimeout(resolve, 1));
    process.kill(pid, signal);
    const during = repairStates(fds);
    t.ok(during.includes(1) && during.includes(0), `the signal arrived mid-batch (states ${during.join('')})`);
    t.equal(await awaitReply(sock), TCP_REPAIR_ON, 'the batch is confirmed');
    t.same(repairStates(fds), fds.map(() => 1), 'all of it switched');
    await expectFailureByte(t, sock);
    await expectStopped(t, helper, signal, 1, fds.length);
    fs.closeSync(sock);
    fs.rmSync(dir, { recursive: true });
  });
});
