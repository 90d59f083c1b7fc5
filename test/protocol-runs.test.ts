// SPDX-License-Identifier: GPL-2.0-or-later
// Several requests served in one native call (serveRequests): passt's
// requests queued back to back, before any reply is read. Each request is
// still applied to all of its sockets or to none and confirmed before the
// next is read; a failure in the middle leaves the earlier ones confirmed
// and counted, the failing one rolled back, and nothing after it read; the
// rule's limits hold as they stand before each request; the call returns at
// the count asked for and when the command changes.
//
// The helper's own handler (its addon) in this process over real socket
// pairs and real loopback TCP sockets, then the real helper process.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { native } from '../src/addon';
import { isNativeFailure } from '../src/errors';
import { commandMask } from '../src/limits';
import type { NativeFailure, Served } from '../src/native.d';
import { awaitReply, FAILURE_BYTE, HELPER, passt, TCP_REPAIR_OFF, TCP_REPAIR_OFF_NO_WP, TCP_REPAIR_ON } from './passt-double/passt-double';
import { loopbackConnections, repairStates, startSession, startTestHelper, straceMissing, temporaryDirectory, type Loopback } from './lib';

const ALL_COMMANDS = commandMask(['TCP_REPAIR_ON', 'TCP_REPAIR_OFF', 'TCP_REPAIR_OFF_NO_WP']);

let loopback: Loopback;
let listening: net.Server;
/** A listening TCP socket: TCP, but the kernel refuses repair mode on it (setsockopt fails). */
let listeningFd: number;
t.before(async () => {
  loopback = await loopbackConnections(12);
  listening = net.createServer();
  await new Promise<void>((resolve) => listening.listen(0, '127.0.0.1', resolve));
  listeningFd = (listening as unknown as { _handle: { fd: number } })._handle.fd;
});
t.teardown(async () => {
  await loopback.close();
  await new Promise((resolve) => listening.close(resolve));
});

interface Pair {
  passtEnd: number;
  helperEnd: number;
  close(): void;
}

/** passt's end and the helper's end of a fresh connection, with `requests` queued on it. */
function queued(requests: [command: number, fds: number[]][]): Pair {
  const [passtEnd, helperEnd] = passt.socketPair();
  for (const [command, fds] of requests) passt.sendRequest(passtEnd, Buffer.from([command & 0xff]), fds);
  return {
    passtEnd,
    helperEnd,
    close() {
      fs.closeSync(passtEnd);
      fs.closeSync(helperEnd);
    },
  };
}

/** Every reply byte passt can read now. */
function replies(fd: number): number[] {
  const bytes: number[] = [];
  for (let reply = passt.receiveReply(fd, 0); typeof reply === 'number'; reply = passt.receiveReply(fd, 0)) bytes.push(reply);
  return bytes;
}

/** serveRequests without waiting (everything is queued), no deadline, 253 sockets a request. */
function serve(pair: Pair, options: { socketsLeft?: number; maxRequests?: number; sessionLeftMs?: number } = {}): Served {
  return native.serveRequests(pair.helperEnd, 0, 0, options.sessionLeftMs ?? Infinity, ALL_COMMANDS, 253, options.socketsLeft ?? Infinity, options.maxRequests ?? 64);
}

function failureOf(run: () => unknown): NativeFailure {
  try {
    run();
  } catch (error) {
    if (isNativeFailure(error)) return error;
    throw error;
  }
  throw new Error('expected a native failure');
}

function reset(fds: readonly number[]): void {
  const pair = queued([[TCP_REPAIR_OFF, [...fds]]]);
  serve(pair);
  pair.close();
}

t.test('queued requests are served in one call, each confirmed in order', async (t) => {
  const fds = loopback.fds.slice(0, 6);
  const pair = queued([
    [TCP_REPAIR_ON, fds.slice(0, 2)],
    [TCP_REPAIR_ON, fds.slice(2, 4)],
    [TCP_REPAIR_ON, fds.slice(4, 6)],
  ]);
  const served = serve(pair);
  t.equal(served.end, 'timeout', 'then nothing more was queued');
  t.match(served.runs, [{ command: TCP_REPAIR_ON, requests: 3, sockets: 6 }]);
  t.ok(served.runs[0]!.nanoseconds > 0, "the helper's own time is counted");
  t.same(replies(pair.passtEnd), [TCP_REPAIR_ON, TCP_REPAIR_ON, TCP_REPAIR_ON], 'one reply a request');
  t.same(repairStates(fds), [1, 1, 1, 1, 1, 1]);
  pair.close();
  reset(fds);
});

t.test('a failure in the middle request: the earlier ones confirmed, the failing one rolled back, nothing after it read', async (t) => {
  const [a, b, c, d] = loopback.fds.slice(0, 4) as [number, number, number, number];
  const pair = queued([
    [TCP_REPAIR_ON, [a, b]],
    // c is switched first, then the listening socket fails: c must be put back.
    [TCP_REPAIR_ON, [c, listeningFd]],
    [TCP_REPAIR_ON, [d]],
  ]);
  const failure = failureOf(() => serve(pair));
  t.equal(failure.code, 'REPAIR_FAILED');
  t.match(failure, { index: 1, rolledBack: 1, unrestored: 0 }, 'the one socket switched before the failure was rolled back');
  t.match(failure.served, [{ command: TCP_REPAIR_ON, requests: 1, sockets: 2 }], 'the first request is reported as served');
  t.same(replies(pair.passtEnd), [TCP_REPAIR_ON], 'only the first request was confirmed');
  t.same(repairStates([a, b, c, d]), [1, 1, 0, 0], 'a and b on; c rolled back; d never touched');
  // The third request is still queued, unread: the next call serves it.
  const next = serve(pair);
  t.match(next.runs, [{ command: TCP_REPAIR_ON, requests: 1, sockets: 1 }], 'the request after the failure was still queued');
  t.equal(repairStates([d])[0], 1);
  pair.close();
  reset([a, b, c, d]);
});

t.test('a refusal in the middle: the session total crossed by the second request', async (t) => {
  const fds = loopback.fds.slice(0, 5);
  const pair = queued([
    [TCP_REPAIR_ON, fds.slice(0, 2)],
    [TCP_REPAIR_ON, fds.slice(2, 4)],
    [TCP_REPAIR_ON, fds.slice(4, 5)],
  ]);
  const failure = failureOf(() => serve(pair, { socketsLeft: 3 }));
  t.equal(failure.code, 'SESSION_SOCKETS_EXCEEDED');
  t.match(failure, { descriptors: 2, left: 1 }, 'the total as it stood after the first request');
  t.match(failure.served, [{ requests: 1, sockets: 2 }]);
  t.same(replies(pair.passtEnd), [TCP_REPAIR_ON]);
  t.same(repairStates(fds), [1, 1, 0, 0, 0], 'the refused request touched nothing, the third was not read');
  pair.close();
  reset(fds);
});

t.test('a refused first request reports nothing served', async (t) => {
  const fds = loopback.fds.slice(0, 2);
  const pair = queued([[TCP_REPAIR_ON, [fds[0]!, listeningFd]], [TCP_REPAIR_ON, [fds[1]!]]]);
  const failure = failureOf(() => serve(pair));
  t.equal(failure.code, 'REPAIR_FAILED');
  t.same(failure.served, []);
  t.same(repairStates(fds), [0, 0]);
  pair.close();
});

t.test('the call returns after the count asked for, and once the command changes', async (t) => {
  const fds = loopback.fds.slice(0, 2);
  const pair = queued([
    [TCP_REPAIR_ON, fds],
    [TCP_REPAIR_ON, fds],
    [TCP_REPAIR_ON, fds],
    [TCP_REPAIR_OFF, fds],
    [TCP_REPAIR_ON, fds],
  ]);
  const first = serve(pair, { maxRequests: 2 });
  t.equal(first.end, 'yield');
  t.match(first.runs, [{ command: TCP_REPAIR_ON, requests: 2, sockets: 4 }]);
  const second = serve(pair);
  t.equal(second.end, 'command', 'the command changed');
  t.match(second.runs, [
    { command: TCP_REPAIR_ON, requests: 1, sockets: 2 },
    { command: TCP_REPAIR_OFF, requests: 1, sockets: 2 },
  ]);
  t.same(repairStates(fds), [0, 0], 'the OFF request was applied; the ON after it not yet');
  const third = serve(pair);
  t.match(third.runs, [{ command: TCP_REPAIR_ON, requests: 1 }]);
  t.same(replies(pair.passtEnd), [1, 1, 1, 0, 1]);
  pair.close();
  reset(fds);
});

t.test("the session's deadline holds for a queued request too", async (t) => {
  const fds = loopback.fds.slice(0, 1);
  const pair = queued([[TCP_REPAIR_ON, fds]]);
  const served = serve(pair, { sessionLeftMs: 0 });
  t.equal(served.end, 'timeout');
  t.same(served.runs, []);
  t.same(replies(pair.passtEnd), [], 'nothing read, nothing confirmed');
  t.same(repairStates(fds), [0]);
  pair.close();
});

t.test('the real helper: requests queued back to back, a failure in the middle one', async (t) => {
  const [a, b, c, d] = loopback.fds.slice(6, 10) as [number, number, number, number];
  const session = await startSession();
  // Sent before any reply is read, as a passt that does not wait would.
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), [a, b]);
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), [c, listeningFd]);
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), [d]);
  t.equal(await awaitReply(session.sock), TCP_REPAIR_ON, 'the first is confirmed');
  t.equal(await awaitReply(session.sock), FAILURE_BYTE, 'the second is answered with the failure byte');
  t.equal(await awaitReply(session.sock), null, 'then the connection closes');
  const { code, stderr } = await session.helper.exited;
  t.equal(code, 1);
  t.match(stderr, /^passt-repair: TCP_REPAIR_ON: 1 request\(s\), 2 socket\(s\), /m, 'the confirmed request is in the audit log');
  t.match(stderr, /TCP_REPAIR_ON failed on descriptor 2 of 2 \(TCP state LISTEN\): .*; rolled back 1 socket\(s\) already switched/);
  t.match(stderr, /end: .*1 request\(s\), 2 socket\(s\)/, 'and in the end line');
  t.same(repairStates([a, b, c, d]), [1, 1, 0, 0], 'a and b on; c rolled back; d never touched');
  fs.closeSync(session.sock);
  fs.rmSync(session.dir, { recursive: true });
  reset([a, b]);
});

t.test('the real helper: a long run of queued requests, then passt closes', async (t) => {
  const fds = loopback.fds.slice(10, 12);
  const session = await startSession();
  // More than one turn of the event loop's worth (64), alternating in runs of 50.
  const commands = Array.from({ length: 150 }, (_, i) => (Math.floor(i / 50) % 2 === 0 ? TCP_REPAIR_ON : TCP_REPAIR_OFF));
  for (const command of commands) passt.sendRequest(session.sock, Buffer.from([command]), fds);
  const got: (number | null | undefined)[] = [];
  for (let i = 0; i < commands.length; i++) got.push(await awaitReply(session.sock));
  t.same(got, commands, 'every request confirmed in order');
  fs.closeSync(session.sock);
  const { code, stderr } = await session.helper.exited;
  t.equal(code, 0);
  const summaries = stderr.match(/^passt-repair: TCP_REPAIR_(ON|OFF): \d+ request\(s\)/gm);
  t.same(summaries, ['passt-repair: TCP_REPAIR_ON: 50 request(s)', 'passt-repair: TCP_REPAIR_OFF: 50 request(s)', 'passt-repair: TCP_REPAIR_ON: 50 request(s)'], 'one line a run of the same command');
  t.same(repairStates(fds), [1, 1]);
  reset(fds);
});

// ---------------------------------------------------------------------------
// Full batches shared with the worker thread (native/worker.cc): pieces of
// 16 descriptors go to whichever thread asks next, so a failure may be met on
// either; the outcome must be the one a single thread going in order gives.

/** This process's threads named `name` (/proc/self/task/TID/comm). */
function threadsNamed(pid: number | 'self', name: string): number[] {
  return fs.readdirSync(`/proc/${pid}/task`).filter((tid) => fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() === name).map(Number);
}

t.test('full batches on two threads: every check before any change, the first failure reported, everything put back', async (t) => {
  t.equal(native.startWorker(), true, 'the worker runs');
  t.equal(native.startWorker(), true, 'a second call changes nothing');
  t.equal(threadsNamed('self', 'repair-worker').length, 1, 'one worker thread');
  const sockets = Array.from({ length: 253 }, () => passt.tcpSocket(4));
  t.teardown(() => sockets.forEach((fd) => fs.closeSync(fd)));
  const [udp, pipeEnds] = [passt.otherSocket('udp'), passt.socketPair()];
  t.teardown(() => [udp, ...pipeEnds].forEach((fd) => fs.closeSync(fd)));
  const off = () => sockets.map(() => 0);
  const withAt = (replacements: Record<number, number>) => sockets.map((fd, i) => replacements[i] ?? fd);

  // Served whole, many times over: pieces race between the threads.
  for (let round = 0; round < 20; round++) {
    for (const command of [TCP_REPAIR_ON, TCP_REPAIR_OFF]) {
      const pair = queued([[command, sockets]]);
      t.match(serve(pair).runs, [{ command, requests: 1, sockets: 253 }]);
      pair.close();
    }
  }
  t.same(repairStates(sockets), off(), 'all off after the last OFF');

  // A check failing near the end, and one earlier: the earlier is named.
  let pair = queued([[TCP_REPAIR_ON, withAt({ 240: udp })]]);
  let failure = failureOf(() => serve(pair));
  t.match(failure, { code: 'NOT_TCP', index: 240, descriptors: 253 });
  pair.close();
  pair = queued([[TCP_REPAIR_ON, withAt({ 20: pipeEnds[0]!, 200: udp })]]);
  failure = failureOf(() => serve(pair));
  t.match(failure, { code: 'NOT_TCP', index: 20 }, 'the first descriptor at fault, whichever thread met the later one');
  pair.close();
  t.same(repairStates(sockets), off(), 'a refused batch touches nothing');

  // A change failing in two places: the first is named, every switched socket put back.
  for (const at of [[200], [40, 200], [250]]) {
    pair = queued([[TCP_REPAIR_ON, withAt(Object.fromEntries(at.map((i) => [i, listeningFd])))]]);
    failure = failureOf(() => serve(pair));
    t.match(failure, { code: 'REPAIR_FAILED', index: at[0], unrestored: 0 }, `failing at ${at.join(' and ')}: the first is named`);
    t.ok((failure.rolledBack as number) >= at[0]!, `at least the ${at[0]} sockets before it were switched and put back (${failure.rolledBack as number})`);
    t.same(repairStates(sockets), off(), 'every socket back as it was');
    pair.close();
  }
  // Some sockets already on: a rollback puts those back on, not off.
  const onFirst = queued([[TCP_REPAIR_ON, sockets.slice(0, 100)]]);
  serve(onFirst);
  onFirst.close();
  pair = queued([[TCP_REPAIR_OFF, withAt({ 230: listeningFd })]]);
  failure = failureOf(() => serve(pair));
  t.match(failure, { code: 'REPAIR_FAILED', index: 230 });
  t.same(repairStates(sockets), sockets.map((_, i) => (i < 100 ? 1 : 0)), 'each socket back to its own state');
  pair.close();
  reset(sockets);
});

/** The real helper, sent a full batch of fresh TCP sockets (TCP_REPAIR_ON) and confirmed: its worker has had a job. */
async function helperAfterFullBatch(t: Test) {
  const session = await startSession();
  const pid = session.helper.child.pid!;
  const fds = Array.from({ length: 253 }, () => passt.tcpSocket(4));
  t.teardown(() => fds.forEach((fd) => fs.closeSync(fd)));
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), fds);
  t.equal(await awaitReply(session.sock), TCP_REPAIR_ON);
  return { session, pid, fds };
}

t.test('the real helper: its worker thread has what its main thread has, the filter included, and serves full batches', async (t) => {
  const { session, pid, fds } = await helperAfterFullBatch(t);
  // The launcher execs the runtime: the child's pid is the helper's.
  const workers = threadsNamed(pid, 'repair-worker');
  t.equal(workers.length, 1, 'one worker thread');
  const status = (tid: number | string) => fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
  const field = (text: string, name: string) => text.match(new RegExp(`^${name}:\\s+(.*)$`, 'm'))?.[1];
  for (const name of ['Uid', 'Gid', 'Groups', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp', 'Seccomp_filters'])
    t.equal(field(status(workers[0]!), name), field(status(pid), name), `${name} as the main thread's`);
  t.equal(field(status(workers[0]!), 'Seccomp'), '2', 'under the filter');
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const listening = (listener as unknown as { _handle: { fd: number } })._handle.fd;
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_OFF]), fds.map((fd, i) => (i === 200 ? listening : fd)));
  t.equal(await awaitReply(session.sock), FAILURE_BYTE);
  const { code, stderr } = await session.helper.exited;
  t.equal(code, 1);
  t.match(stderr, /TCP_REPAIR_OFF failed on descriptor 201 of 253 \(TCP state LISTEN\)/);
  t.same(repairStates(fds.filter((_, i) => i !== 200)), fds.slice(1).map(() => 1), 'every other socket back on');
  await new Promise((resolve) => listener.close(resolve));
  fs.closeSync(session.sock);
  fs.rmSync(session.dir, { recursive: true });
});

/** A thread's scheduler state (R, S, ...) and the CPU time it has used, in clock ticks (/proc/PID/task/TID/stat). */
function threadActivity(pid: number, tid: number): { state: string; cpuTicks: number } {
  const text = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
  // After "pid (comm) ": field 3 (state) first, fields 14 and 15 (utime, stime) at 11 and 12.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0]!, cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

/**
 * Waits for the helper's worker to sleep (it looks for a next job for at
 * most 200 µs after each one: native/worker.cc, kSpinNs; 10 s is a deadline
 * for a worker that never sleeps, not a measure of speed), then checks that
 * it stays asleep and uses no CPU for half a second.
 */
async function workerStaysAsleep(t: Test, pid: number): Promise<void> {
  let workers: number[] = [];
  let state = '';
  for (const deadline = Date.now() + 10_000; state !== 'S' && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    workers = threadsNamed(pid, 'repair-worker');
    state = workers.length === 1 ? threadActivity(pid, workers[0]!).state : '';
  }
  t.equal(workers.length, 1, 'one worker thread');
  const before = threadActivity(pid, workers[0]!);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const after = threadActivity(pid, workers[0]!);
  t.equal(after.state, 'S', 'the worker sleeps');
  t.equal(after.cpuTicks, before.cpuTicks, 'and uses no CPU while passt sends nothing');
}

t.test('the real helper: between batches its worker sleeps, and is woken for the next', async (t) => {
  const { session, pid, fds } = await helperAfterFullBatch(t);
  // (The loop's thread is not watched: it returns to the event loop every
  // 100 ms in which passt sends nothing.)
  await workerStaysAsleep(t, pid);
  // The next batch wakes it (or, if it wakes too late, is done by the loop's thread alone).
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_OFF]), fds);
  t.equal(await awaitReply(session.sock), TCP_REPAIR_OFF);
  t.same(repairStates(fds), fds.map(() => 0), 'every socket switched off');
  fs.closeSync(session.sock);
  const { code } = await session.helper.exited;
  t.equal(code, 0);
  fs.rmSync(session.dir, { recursive: true });
});

t.test('the real helper waiting in a directory for passt: its worker sleeps from the start', async (t) => {
  const dir = temporaryDirectory();
  const helper = startTestHelper([dir]);
  await workerStaysAsleep(t, helper.child.pid!);
  t.equal(helper.child.exitCode, null, 'the helper still waits');
  helper.child.kill('SIGTERM');
  await helper.exited;
});

t.test('the real helper: the worker meets a failure at the top while the loop\'s thread meets one lower down; the lower is named, and every switched socket is put back', { skip: straceMissing() }, async (t) => {
  // strace holds every setsockopt for 2 ms, so that both threads are well
  // into the apply step when they meet their failures: the worker at its
  // 11th call (index 250, in the last piece, where it starts), the loop's
  // thread at its 41st (index 40).
  // One log a thread (-ff: strace.log.TID), so that calls are not interleaved.
  const logs = temporaryDirectory();
  const session = await startSession(undefined, ['strace', '-ff', '-qq', '-o', path.join(logs, 'strace.log'), '-e', 'trace=setsockopt', '-e', 'inject=setsockopt:delay_enter=2000', HELPER]);
  const stracePid = session.helper.child.pid!;
  const pid = Number(fs.readFileSync(`/proc/${stracePid}/task/${stracePid}/children`, 'utf8').trim());
  const [worker] = threadsNamed(pid, 'repair-worker');
  const fds = Array.from({ length: 253 }, () => passt.tcpSocket(4));
  t.teardown(() => fds.forEach((fd) => fs.closeSync(fd)));
  // A listening socket is TCP, so it passes the checks, but the kernel refuses repair mode on it.
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), fds.map((fd, i) => (i === 40 || i === 250 ? listeningFd : fd)));
  t.equal(await awaitReply(session.sock), FAILURE_BYTE);
  const { code, stderr } = await session.helper.exited;
  t.equal(code, 1);
  t.match(stderr, /TCP_REPAIR_ON failed on descriptor 41 of 253/, 'the lower failure is named');
  t.same(repairStates(fds.filter((_, i) => i !== 40 && i !== 250)), fds.slice(2).map(() => 0), 'every other socket back off');
  // strace.log.TID: "setsockopt(FD, SOL_TCP, TCP_REPAIR, [VALUE], 4) = RESULT ..."
  const calls = fs.readdirSync(logs).flatMap((name) => {
    const tid = Number(name.slice('strace.log.'.length));
    return fs.readFileSync(path.join(logs, name), 'utf8').split('\n').flatMap((line) => {
      const call = line.match(/^setsockopt\(\d+, SOL_TCP, TCP_REPAIR, \[(-?\d+)\], 4\) += (-?\d+)/);
      return call ? [{ tid, value: Number(call[1]), failed: call[2] === '-1' }] : [];
    });
  });
  const failed = calls.filter((call) => call.failed);
  t.same(failed.map((call) => call.tid).sort(), [pid, worker!].sort(), 'one failure met by each thread');
  const switchedBy = (tid: number) => calls.filter((call) => call.tid === tid && call.value === TCP_REPAIR_ON && !call.failed).length;
  t.ok(switchedBy(worker!) > 0 && switchedBy(pid) > 0, `both threads switched sockets (the worker ${switchedBy(worker!)}, the loop's thread ${switchedBy(pid)})`);
  // The rollback (on the loop's thread) puts back every socket either thread switched.
  const restored = calls.filter((call) => call.value === TCP_REPAIR_OFF_NO_WP && !call.failed);
  t.equal(restored.length, switchedBy(worker!) + switchedBy(pid), 'every switched socket restored');
  t.ok(restored.every((call) => call.tid === pid), "by the loop's thread");
  fs.closeSync(session.sock);
  fs.rmSync(session.dir, { recursive: true });
});
