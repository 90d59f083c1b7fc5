// SPDX-License-Identifier: GPL-2.0-or-later
// The wire protocol end to end: the real helper, real loopback TCP sockets,
// real SCM_RIGHTS. Each command, batch sizes up to SCM_MAX_FD, mixed
// sequences, and no descriptor kept between requests.
import t from 'tap';
import * as fs from 'node:fs';
import { awaitReply, openDescriptors, passt, TCP_REPAIR_OFF, TCP_REPAIR_OFF_NO_WP, TCP_REPAIR_ON } from './passt-double/passt-double';
import { loopbackConnections, repairStates, startSession, unusualLines, type Loopback } from './lib';

let loopback: Loopback;
t.before(async () => {
  loopback = await loopbackConnections(300);
});
t.teardown(() => loopback.close());

function expected(command: number): number {
  return command === TCP_REPAIR_ON ? 1 : 0;
}

t.test('each command value is applied, confirmed with the same byte, and reported by getsockopt', async (t) => {
  const session = await startSession();
  const fds = loopback.fds.slice(0, 3);
  for (const command of [TCP_REPAIR_ON, TCP_REPAIR_OFF, TCP_REPAIR_ON, TCP_REPAIR_OFF_NO_WP]) {
    passt.sendRequest(session.sock, Buffer.from([command & 0xff]), fds);
    t.equal(await awaitReply(session.sock), command, `reply to ${command} is the same byte`);
    t.same(repairStates(fds), fds.map(() => expected(command)), `state after ${command}`);
  }
  fs.closeSync(session.sock);
  const { code, stderr } = await session.helper.exited;
  t.equal(code, 0, 'EOF from passt: exit 0');
  t.same(unusualLines(stderr), [], 'only the routine audit log on stderr');
});

t.test('batches of 1, 2, 252 and 253 descriptors', async (t) => {
  const session = await startSession();
  for (const size of [1, 2, 252, 253]) {
    const fds = loopback.fds.slice(0, size);
    for (const command of [TCP_REPAIR_ON, TCP_REPAIR_OFF]) {
      passt.sendRequest(session.sock, Buffer.from([command & 0xff]), fds);
      t.equal(await awaitReply(session.sock), command, `batch of ${size}, command ${command}`);
      t.ok(repairStates(fds).every((state) => state === expected(command)), `all ${size} sockets in state ${expected(command)}`);
    }
  }
  fs.closeSync(session.sock);
  t.equal((await session.helper.exited).code, 0);
});

t.test('mixed sequences of sizes and commands; no descriptor kept between requests', async (t) => {
  const session = await startSession();
  const pid = session.helper.child.pid!;
  const sizes = [253, 1, 17, 253, 2, 200, 1, 252, 64, 253, 3];
  const commands = [TCP_REPAIR_ON, TCP_REPAIR_OFF, TCP_REPAIR_ON, TCP_REPAIR_OFF_NO_WP];
  const state = new Map<number, number>(loopback.fds.map((fd) => [fd, 0]));
  let baseline: number | undefined;
  for (let round = 0; round < sizes.length * 2; round++) {
    const size = sizes[round % sizes.length]!;
    const command = commands[round % commands.length]!;
    const offset = (round * 37) % (loopback.fds.length - size + 1);
    const fds = loopback.fds.slice(offset, offset + size);
    passt.sendRequest(session.sock, Buffer.from([command & 0xff]), fds);
    t.equal(await awaitReply(session.sock), command, `request ${round}: ${size} sockets, command ${command}`);
    for (const fd of fds) state.set(fd, expected(command));
    const held = openDescriptors(pid).size;
    baseline ??= held;
    t.equal(held, baseline, `request ${round}: the helper holds ${baseline} descriptors, none of passt's`);
  }
  t.same(repairStates(loopback.fds), loopback.fds.map((fd) => state.get(fd)), 'every socket in the state last confirmed');
  const passtSockets = new Set(loopback.fds.map((fd) => fs.readlinkSync(`/proc/self/fd/${fd}`)));
  const kept = [...openDescriptors(pid).values()].filter((target) => passtSockets.has(target));
  t.same(kept, [], 'the helper holds none of the TCP sockets it was sent');
  fs.closeSync(session.sock);
  t.equal((await session.helper.exited).code, 0);
});

t.test('ECONNRESET from passt also means done', async (t) => {
  const session = await startSession();
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), loopback.fds.slice(0, 1));
  t.equal(await awaitReply(session.sock), TCP_REPAIR_ON);
  // Closing with unread data queued makes the kernel reset the connection.
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_OFF]), loopback.fds.slice(0, 1));
  t.equal(await awaitReply(session.sock), TCP_REPAIR_OFF);
  fs.closeSync(session.sock);
  const { code } = await session.helper.exited;
  t.equal(code, 0);
});
