// SPDX-License-Identifier: GPL-2.0-or-later
// Every malformed request the issue names: the exit code, the one line on
// stderr, no reply, and every socket in the state passt last got confirmed.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { acceptHelper, awaitReply, HELPER, passt, TCP_REPAIR_OFF, TCP_REPAIR_ON, type HelperRun, FAILURE_BYTE } from './passt-double/passt-double';
import type { RequestShape } from './passt-double/native.d';
import { loopbackConnections, repairStates, startSession, startTestHelper, straceMissing, temporaryDirectory, unusualLines, type Loopback } from './lib';

let loopback: Loopback;
t.before(async () => {
  loopback = await loopbackConnections(260);
});
t.teardown(() => loopback.close());


interface Refusal {
  bytes: number[];
  fds: () => number[];
  shape?: RequestShape;
  message: RegExp;
}

/** Confirms a known state first, then sends the bad request and checks that nothing moved. */
async function expectRefusal(t: Test, refusal: Refusal) {
  const session = await startSession();
  const known = loopback.fds.slice(0, 4);
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), known.slice(0, 2));
  t.equal(await awaitReply(session.sock), TCP_REPAIR_ON, 'a good request first');
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_OFF]), known.slice(2));
  t.equal(await awaitReply(session.sock), TCP_REPAIR_OFF);
  const before = repairStates(known);

  passt.sendRequest(session.sock, Buffer.from(refusal.bytes), refusal.fds(), refusal.shape);
  t.equal(await awaitReply(session.sock), FAILURE_BYTE, 'the failure byte, not the command');
  t.equal(await awaitReply(session.sock), null, 'then the connection closes');
  const { code, stderr } = await session.helper.exited;
  t.equal(code, 1, 'exit 1');
  t.match(stderr, refusal.message);
  const unusual = unusualLines(stderr);
  t.equal(unusual.length, 2, 'two unusual lines: the refusal (or failure), then the end line');
  t.match(unusual[0], refusal.message);
  t.match(unusual[1], /^passt-repair: end: (refused|error) \(exit 1\); /);
  t.same(repairStates(known), before, 'no socket changed state');
  fs.closeSync(session.sock);
}


const tcp = (i: number) => loopback.fds[i]!;

t.test('no control message', (t) =>
  expectRefusal(t, { bytes: [TCP_REPAIR_ON], fds: () => [], message: /request refused: command 1 came without an SCM_RIGHTS control message/ }));

t.test('wrong control type: SCM_CREDENTIALS alone (the kernel delivers nothing the helper did not ask for)', (t) =>
  expectRefusal(t, {
    bytes: [TCP_REPAIR_ON],
    fds: () => [],
    shape: { credentials: true },
    message: /without an SCM_RIGHTS control message/,
  }));

t.test('too many bytes: two command bytes with the descriptors', (t) =>
  expectRefusal(t, { bytes: [TCP_REPAIR_ON, TCP_REPAIR_ON], fds: () => [tcp(0), tcp(2)], message: /more than one byte where exactly one command byte is expected/ }));

t.test('unknown commands: 2 (the manual page misprint of TCP_REPAIR_OFF) and -128', async (t) => {
  await expectRefusal(t, { bytes: [2], fds: () => [tcp(2)], message: /unknown command 2 \(expected 1 TCP_REPAIR_ON, 0 TCP_REPAIR_OFF or -1 TCP_REPAIR_OFF_NO_WP\)/ });
  await expectRefusal(t, { bytes: [0x80], fds: () => [tcp(2)], message: /unknown command -128/ });
});

t.test('a pipe among TCP sockets', async (t) => {
  const fifo = path.join(temporaryDirectory(), 'pipe');
  execFileSync('mkfifo', [fifo]);
  // O_RDWR opens a FIFO without waiting for a writer (Linux).
  const pipe = fs.openSync(fifo, fs.constants.O_RDWR);
  await expectRefusal(t, { bytes: [TCP_REPAIR_ON], fds: () => [tcp(2), pipe], message: /descriptor 2 of 2 is not a socket; no socket was changed/ });
  fs.closeSync(pipe);
});

t.test('a UDP socket', async (t) => {
  const udp = passt.otherSocket('udp');
  await expectRefusal(t, { bytes: [TCP_REPAIR_ON], fds: () => [tcp(2), tcp(3), udp], message: /descriptor 3 of 3 is not a TCP socket \(AF_INET, SOCK_DGRAM, protocol UDP\); no socket was changed/ });
  fs.closeSync(udp);
});

t.test('a UNIX socket', async (t) => {
  const unix = passt.otherSocket('unix');
  await expectRefusal(t, { bytes: [TCP_REPAIR_OFF], fds: () => [unix, tcp(0)], message: /descriptor 1 of 2 is not a TCP socket \(AF_UNIX, SOCK_STREAM, protocol default\)/ });
  fs.closeSync(unix);
});

t.test('a raw socket of protocol TCP is not a TCP stream socket', async (t) => {
  const raw = passt.otherSocket('raw-tcp');
  await expectRefusal(t, { bytes: [TCP_REPAIR_ON], fds: () => [tcp(2), raw], message: /descriptor 2 of 2 is not a TCP socket \(AF_INET, SOCK_RAW, protocol TCP\)/ });
  fs.closeSync(raw);
});

/** Why MPTCP cannot be tested here (the kernel lacks it), or false when it can. */
function mptcpMissing(): string | false {
  try {
    fs.closeSync(passt.otherSocket('mptcp'));
    return false;
  } catch (error) {
    return `SKIPPED: this kernel cannot create MPTCP sockets (${(error as Error).message})`;
  }
}

t.test('an MPTCP socket (AF_INET, SOCK_STREAM, IPPROTO_MPTCP) is not a TCP socket', { skip: mptcpMissing() }, async (t) => {
  const mptcp = passt.otherSocket('mptcp');
  await expectRefusal(t, { bytes: [TCP_REPAIR_ON], fds: () => [tcp(2), mptcp], message: /descriptor 2 of 2 is not a TCP socket \(AF_INET, SOCK_STREAM, protocol MPTCP\)/ });
  fs.closeSync(mptcp);
});

function smcMissing(): string | false {
  try {
    fs.closeSync(passt.otherSocket('smc'));
    return false;
  } catch (error) {
    const errno = (error as { errno?: number }).errno;
    const name = Object.entries(os.constants.errno).find(([, value]) => value === errno)?.[0] ?? `errno ${errno}`;
    return `SKIPPED: this kernel (${os.release()}) cannot create IPPROTO_SMC sockets: socket(AF_INET, SOCK_STREAM, 256) failed with ${name} (${(error as Error).message}); it needs Linux 6.11+ with CONFIG_SMC`;
  }
}

t.test('an IPPROTO_SMC socket (AF_INET, SOCK_STREAM, 256) answers SOL_TCP but is not a TCP socket', { skip: smcMissing() }, async (t) => {
  const smc = passt.otherSocket('smc');
  await expectRefusal(t, { bytes: [TCP_REPAIR_ON], fds: () => [tcp(2), smc], message: /descriptor 2 of 2 is not a TCP socket \(AF_INET, SOCK_STREAM, protocol SMC\)/ });
  fs.closeSync(smc);
});

t.test('a listening TCP socket: the kernel refuses it, and the sockets already switched are rolled back', async (t) => {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const listening = (server as unknown as { _handle: { fd: number } })._handle.fd;
  // tcp(0), tcp(1) are in repair mode, tcp(2), tcp(3) are not: turning all on
  // and failing at the end must leave exactly that.
  await expectRefusal(t, {
    bytes: [TCP_REPAIR_ON],
    fds: () => [tcp(2), tcp(0), tcp(3), listening],
    message: /TCP_REPAIR_ON failed on descriptor 4 of 4 \(TCP state LISTEN\): operation not permitted; rolled back 3 socket\(s\) already switched/,
  });
  await expectRefusal(t, {
    bytes: [TCP_REPAIR_OFF],
    fds: () => [tcp(0), tcp(1), listening, tcp(2)],
    message: /TCP_REPAIR_OFF failed on descriptor 3 of 4 \(TCP state LISTEN\): operation not permitted; rolled back 2 socket\(s\)/,
  });
  await new Promise((resolve) => server.close(resolve));
});

t.test('passt\'s repair_flush() hazard: a failed batch right after a confirmed one with the same command reads as a failure', async (t) => {
  // passt compares the byte it reads with the command it sent and does not
  // treat EOF as an error: after a bare close it would compare the previous
  // reply (1) with this command (1) and call the failed batch a success.
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const listening = (server as unknown as { _handle: { fd: number } })._handle.fd;
  const session = await startSession();
  const fds = loopback.fds.slice(30, 33);
  const before = repairStates(fds);
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), fds.slice(0, 1));
  t.equal(await awaitReply(session.sock), TCP_REPAIR_ON, 'the first TCP_REPAIR_ON is confirmed');
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), [...fds.slice(1), listening]);
  const reply = await awaitReply(session.sock);
  t.equal(reply, FAILURE_BYTE, 'the second gets the failure byte');
  t.not(reply, TCP_REPAIR_ON, 'which never equals the command passt sent');
  t.equal(await awaitReply(session.sock), null, 'then EOF');
  t.equal((await session.helper.exited).code, 1);
  t.same(repairStates(fds), [1, ...before.slice(1)], 'the failed batch was rolled back; the confirmed one stays');
  fs.closeSync(session.sock);
  await new Promise((resolve) => server.close(resolve));
});

t.test('a peer that closes mid-batch: the batch is applied, the reply fails, and the batch is rolled back', { skip: straceMissing() }, async (t) => {
  // strace holds the reply's send(2) for 500 ms, so passt has closed by then
  // whatever the scheduler does: without it, a helper quick enough could
  // reply before the close, and the batch would rightly stay confirmed.
  const session = await startSession(undefined, ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=sendto', '-e', 'inject=sendto:delay_enter=500000', HELPER]);
  const fds = loopback.fds.slice(10, 263 - 10);
  const states = repairStates(fds);
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), fds);
  fs.closeSync(session.sock);
  const { code, stderr } = await session.helper.exited;
  t.equal(code, 1);
  t.match(stderr, new RegExp(`cannot send the reply to passt: (broken pipe|connection reset by peer); rolled back ${fds.length} socket\\(s\\) already switched`));
  t.same(repairStates(fds), states, 'every socket back to where it was');
});

t.test('descriptors truncated by the kernel (MSG_CTRUNC, RLIMIT_NOFILE too low) are refused', async (t) => {
  const limited = await startLimitedSession(48);
  const fds = loopback.fds.slice(0, 253);
  const states = repairStates(fds);
  passt.sendRequest(limited.sock, Buffer.from([TCP_REPAIR_ON]), fds);
  t.equal(await awaitReply(limited.sock), FAILURE_BYTE, 'the failure byte, no reply');
  const { code, stderr } = await limited.helper.exited;
  t.equal(code, 1);
  t.match(stderr, /request refused: the kernel truncated its descriptors \(MSG_CTRUNC, \d+ arrived; is RLIMIT_NOFILE too low\?\)/);
  t.same(repairStates(fds), states, 'no socket changed state');
  fs.closeSync(limited.sock);
});

t.test('several SCM_RIGHTS headers in one message reach the helper merged by the kernel: one batch', async (t) => {
  // The kernel (net/core/scm.c) appends every SCM_RIGHTS header of a message
  // to one list and delivers it as one: the helper cannot see, and need not
  // refuse, what passt split. SCM_CREDENTIALS is not delivered unless the
  // receiver asked for it (SO_PASSCRED), which the helper does not.
  const session = await startSession();
  const fds = loopback.fds.slice(20, 26);
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), fds, { rightsMessages: 3, credentials: true });
  t.equal(await awaitReply(session.sock), TCP_REPAIR_ON);
  t.same(repairStates(fds), fds.map(() => 1), 'all six sockets switched');
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_OFF]), fds, { rightsMessages: 2 });
  t.equal(await awaitReply(session.sock), TCP_REPAIR_OFF);
  fs.closeSync(session.sock);
  t.equal((await session.helper.exited).code, 0);
});

async function startLimitedSession(limit: number): Promise<{ helper: HelperRun; sock: number }> {
  const socketPath = path.join(temporaryDirectory(), 'passt.repair');
  const listener = passt.listenUnix(socketPath);
  const helper = startTestHelper([socketPath], ['prlimit', `--nofile=${limit}:${limit}`, HELPER]);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  return { helper, sock };
}
