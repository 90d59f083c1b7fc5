// SPDX-License-Identifier: GPL-2.0-or-later
// A rule's limits (policy "limits"): which commands, how many sockets per
// request and per session, idle and session timeouts. Each is enforced on the
// real helper before any socket is touched: the refusal names the limit,
// passt reads the failure byte, and every socket stays as last confirmed.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, awaitReply, FAILURE_BYTE, HELPER, passt, startHelper, TCP_REPAIR_OFF, TCP_REPAIR_ON, writePolicy, type HelperRun } from './passt-double/passt-double';
import { loopbackConnections, repairStates, temporaryDirectory, type Loopback } from './lib';

let loopback: Loopback;
t.before(async () => {
  loopback = await loopbackConnections(40);
});
t.teardown(() => loopback.close());

interface LimitedSession {
  helper: HelperRun;
  sock: number;
  dir: string;
  policy: string;
}

/** A helper under a policy whose one rule has `limits`, connected to passt's double. */
async function startLimited(limits: object): Promise<LimitedSession> {
  const dir = temporaryDirectory();
  const policy = writePolicy(dir, { version: 1, rules: [{ name: 'limited', sockets: [`${dir}/*.repair`], peer: {}, limits }] });
  const socketPath = path.join(dir, 'passt.repair');
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', policy, socketPath]);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  return { helper, sock, dir, policy };
}

/** The session ends refused: the failure byte, EOF, exit 1, the refusal matching `message`. */
async function expectEnded(t: Test, session: LimitedSession, message: RegExp): Promise<string> {
  t.equal(await awaitReply(session.sock), FAILURE_BYTE, 'passt reads the failure byte');
  t.equal(await awaitReply(session.sock), null, 'then the connection closes');
  const { code, stderr } = await session.helper.exited;
  t.equal(code, 1, 'exit 1');
  t.match(stderr, message, 'the refusal names the limit');
  t.match(stderr, /passt-repair: end: refused \(exit 1\); /);
  fs.closeSync(session.sock);
  fs.rmSync(session.dir, { recursive: true });
  return stderr;
}

t.test('"commands": a command the rule does not allow is refused before any socket is touched', async (t) => {
  const session = await startLimited({ commands: ['TCP_REPAIR_ON'] });
  const fds = loopback.fds.slice(0, 3);
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), fds);
  t.equal(await awaitReply(session.sock), TCP_REPAIR_ON, 'an allowed command is served');
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_OFF]), fds);
  const stderr = await expectEnded(t, session, /request refused: TCP_REPAIR_OFF is not among the rule's "commands" \(TCP_REPAIR_ON\); no socket was changed/);
  t.match(stderr, /allowed by rule "limited": .*; limits: commands TCP_REPAIR_ON\n/, 'the connected line names the limits in force');
  t.same(repairStates(fds), [1, 1, 1], 'the sockets stay as confirmed');
});

t.test('"maxSocketsPerRequest": a larger request is refused whole', async (t) => {
  const session = await startLimited({ maxSocketsPerRequest: 2 });
  const fds = loopback.fds.slice(3, 6);
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), fds.slice(0, 2));
  t.equal(await awaitReply(session.sock), TCP_REPAIR_ON, 'two sockets: served');
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), fds);
  await expectEnded(t, session, /request refused: 3 sockets, over the rule's "maxSocketsPerRequest" of 2; no socket was changed/);
  t.same(repairStates(fds), [1, 1, 0], 'the third socket was never touched');
});

t.test('"maxSocketsPerSession": the request that would pass the total is refused whole', async (t) => {
  const session = await startLimited({ maxSocketsPerSession: 5 });
  const fds = loopback.fds.slice(6, 10);
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), fds.slice(0, 3));
  t.equal(await awaitReply(session.sock), TCP_REPAIR_ON, 'three of five: served');
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_OFF]), fds.slice(0, 2));
  t.equal(await awaitReply(session.sock), TCP_REPAIR_OFF, 'five of five: served (a socket sent twice counts twice)');
  passt.sendRequest(session.sock, Buffer.from([TCP_REPAIR_ON]), fds.slice(3, 4));
  await expectEnded(t, session, /request refused: 1 sockets, over what the rule's "maxSocketsPerSession" leaves this session \(0\); no socket was changed/);
  t.same(repairStates(fds), [0, 0, 1, 0], 'every socket as last confirmed');
});

t.test('"idleTimeout": no request for that long ends the session, logged', async (t) => {
  const session = await startLimited({ idleTimeout: 0.2 });
  await expectEnded(t, session, /passt-repair: session ended: no request for 0\.2 s \(the rule's "idleTimeout"\)/);
});

t.test('"idleTimeout" counts from each reply: a session that keeps asking is served', async (t) => {
  const session = await startLimited({ idleTimeout: 5 });
  const fds = loopback.fds.slice(10, 12);
  for (let i = 0; i < 5; i++) {
    passt.sendRequest(session.sock, Buffer.from([i % 2 === 0 ? TCP_REPAIR_ON : TCP_REPAIR_OFF]), fds);
    t.equal(await awaitReply(session.sock), i % 2 === 0 ? TCP_REPAIR_ON : TCP_REPAIR_OFF);
  }
  fs.closeSync(session.sock);
  t.equal((await session.helper.exited).code, 0, 'passt closing still means done');
  fs.rmSync(session.dir, { recursive: true });
});

t.test('"sessionTimeout": the session ends at its deadline even while requests keep coming', async (t) => {
  const session = await startLimited({ sessionTimeout: 0.5, idleTimeout: 60 });
  const fds = loopback.fds.slice(12, 14);
  let confirmed = 0;
  let reply: number | null | undefined;
  for (let i = 0; ; i++) {
    const command = i % 2 === 0 ? TCP_REPAIR_ON : TCP_REPAIR_OFF;
    try {
      passt.sendRequest(session.sock, Buffer.from([command]), fds);
    } catch (error) {
      // The deadline passed while passt was between requests: the helper
      // has already sent the failure byte and closed.
      t.equal((error as { errno?: number }).errno, 32, 'EPIPE: the helper closed');
    }
    reply = await awaitReply(session.sock);
    if (reply !== command) break;
    confirmed = command;
  }
  t.equal(reply, FAILURE_BYTE, 'the request after the deadline gets the failure byte');
  t.equal(await awaitReply(session.sock), null);
  const { code, stderr } = await session.helper.exited;
  t.equal(code, 1);
  t.match(stderr, /session ended: the rule's "sessionTimeout" of 0\.5 s has passed since connecting/);
  t.same(repairStates(fds), [confirmed, confirmed], 'the sockets as last confirmed');
  fs.closeSync(session.sock);
  fs.rmSync(session.dir, { recursive: true });
});

t.test('the schema refuses malformed limits with a located error (exit 2)', async (t) => {
  const dir = temporaryDirectory();
  for (const [limits, message] of [
    [{ commands: ['TCP_REPAIR_FLIP'] }, /\/rules\/0\/limits\/commands\/0: expected one of "TCP_REPAIR_ON", "TCP_REPAIR_OFF", "TCP_REPAIR_OFF_NO_WP"/],
    [{ maxSocketsPerRequest: 254 }, /\/rules\/0\/limits\/maxSocketsPerRequest: expected at most 253, found 254/],
    [{ idleTimeout: 0 }, /\/rules\/0\/limits\/idleTimeout: expected more than 0, found 0/],
    [{ sessionTimeouts: 1 }, /\/rules\/0\/limits\/sessionTimeouts: unknown key "sessionTimeouts"/],
  ] as const) {
    const policy = writePolicy(dir, { version: 1, rules: [{ name: 'limited', sockets: [`${dir}/*.repair`], peer: {}, limits }] });
    const result = spawnSync(HELPER, ['--check-policy', '--policy', policy], { encoding: 'utf8' });
    t.equal(result.status, 1, `${JSON.stringify(limits)}: --check-policy says invalid`);
    t.match(result.stderr, message);
  }
  fs.rmSync(dir, { recursive: true });
});

t.test('--explain shows each matching rule\'s limits', async (t) => {
  const dir = temporaryDirectory();
  const policy = writePolicy(dir, {
    version: 1,
    rules: [{ name: 'limited', sockets: [`${dir}/*.repair`], peer: {}, limits: { commands: ['TCP_REPAIR_ON', 'TCP_REPAIR_OFF'], maxSocketsPerRequest: 64, maxSocketsPerSession: 4096, idleTimeout: 30, sessionTimeout: 120 } }],
  });
  const result = spawnSync(HELPER, ['--policy', policy, '--explain', `${dir}/a.repair`], { encoding: 'utf8' });
  t.equal(result.status, 0);
  t.match(
    result.stdout,
    '  its limits: commands TCP_REPAIR_ON, TCP_REPAIR_OFF, at most 64 socket(s) per request, at most 4096 socket(s) per session, idle timeout 30 s, session timeout 120 s\n',
  );
  fs.rmSync(dir, { recursive: true });
});
