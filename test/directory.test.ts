// SPDX-License-Identifier: GPL-2.0-or-later
// Reaching passt's socket: directory mode (the socket appears later, exists
// already, or refuses before passt listens), paths longer than sun_path,
// symlinks to the directory (KubeVirt's shortening links), and --timeout.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { acceptHelper, awaitReply, passt, TCP_REPAIR_ON, type HelperRun } from './passt-double/passt-double';
import { loopbackConnections, startTestHelper, temporaryDirectory, unusualLines, type Loopback } from './lib';

const O_PATH = 0o10000000;
let loopback: Loopback;
t.before(async () => {
  loopback = await loopbackConnections(2);
});
t.teardown(() => loopback.close());

/** One request and a clean end: proves the helper is connected to this listener. */
async function serveOnce(t: Test, listener: number, helper: HelperRun) {
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  passt.sendRequest(sock, Buffer.from([TCP_REPAIR_ON]), loopback.fds);
  t.equal(await awaitReply(sock), TCP_REPAIR_ON, 'the request is answered');
  fs.closeSync(sock);
  const { code, stderr } = await helper.exited;
  t.equal(code, 0, 'exit 0');
  t.same(unusualLines(stderr), [], 'only the routine audit log on stderr');
}

/** A listening socket at `socketPath`, whatever its length: bound through a held directory descriptor. */
function listenAnywhere(socketPath: string, listen = true): number {
  const dirFd = fs.openSync(path.dirname(socketPath), O_PATH | fs.constants.O_DIRECTORY);
  try {
    const via = `/proc/self/fd/${dirFd}/${path.basename(socketPath)}`;
    return listen ? passt.listenUnix(via) : passt.bindUnix(via);
  } finally {
    fs.closeSync(dirFd);
  }
}

function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 1/100 s
}

t.test('directory mode: a socket created after the helper started', async (t) => {
  const dir = temporaryDirectory();
  const helper = startTestHelper([dir]);
  await sleep(300);
  t.equal(helper.child.exitCode, null, 'the helper waits');
  await serveOnce(t, passt.listenUnix(path.join(dir, 'vm.socket.repair')), helper);
});

t.test('directory mode: a socket that exists before the helper starts', async (t) => {
  const dir = temporaryDirectory();
  const listener = passt.listenUnix(path.join(dir, 'vm.socket.repair'));
  await serveOnce(t, listener, startTestHelper([dir]));
});

t.test('directory mode: refused while passt has bound but not listened, accepted once it listens; no busy loop', async (t) => {
  const dir = temporaryDirectory();
  const bound = passt.bindUnix(path.join(dir, 'vm.socket.repair'));
  const helper = startTestHelper([dir]);
  await sleep(400); // let it start and reach its retries
  const before = cpuSeconds(helper.child.pid!);
  await sleep(1000);
  const spent = cpuSeconds(helper.child.pid!) - before;
  t.ok(spent < 0.25, `retrying with backoff costs little CPU (${spent.toFixed(2)} s in 1 s)`);
  t.equal(helper.child.exitCode, null, 'still waiting');
  passt.startListening(bound);
  await serveOnce(t, bound, helper);
});

t.test('directory mode: names not ending in .repair and files that are not sockets are passed over', async (t) => {
  const dir = temporaryDirectory();
  const decoy = passt.listenUnix(path.join(dir, 'passt.socket'));
  fs.writeFileSync(path.join(dir, 'file.repair'), '');
  fs.symlinkSync('/etc/hostname', path.join(dir, 'link.repair'));
  const helper = startTestHelper([dir]);
  await sleep(300);
  t.equal(passt.accept(decoy, 0), -1, 'the decoy socket was not connected to');
  await serveOnce(t, passt.listenUnix(path.join(dir, 'vm.repair')), helper);
  fs.closeSync(decoy);
});

t.test('--timeout bounds the wait in directory mode', async (t) => {
  const dir = temporaryDirectory();
  const { code, stderr } = await startTestHelper(['--timeout', '0.5', dir]).exited;
  t.equal(code, 1);
  t.match(stderr, new RegExp(`no socket named \\*\\.repair in ${dir} accepted a connection within 0\\.5 s`));
});

t.test('socket mode: passt not listening is an error at once, as with the C helper', async (t) => {
  const dir = temporaryDirectory();
  const bound = passt.bindUnix(path.join(dir, 'passt.repair'));
  const { code, stderr } = await startTestHelper([path.join(dir, 'passt.repair')]).exited;
  t.equal(code, 1);
  t.match(stderr, /cannot connect to .*passt\.repair: connection refused/);
  fs.closeSync(bound);
});

function longDirectory(): string {
  let dir = temporaryDirectory();
  while (dir.length < 180) {
    dir = path.join(dir, 'a-rather-long-pod-directory-name');
    fs.mkdirSync(dir);
  }
  return dir;
}

t.test('a socket path longer than sun_path (108 bytes) works in socket mode', async (t) => {
  const socketPath = path.join(longDirectory(), 'vm.socket.repair');
  t.ok(socketPath.length > 108, `path of ${socketPath.length} bytes`);
  const listener = listenAnywhere(socketPath);
  await serveOnce(t, listener, startTestHelper([socketPath]));
});

t.test('a directory path longer than sun_path works in directory mode', async (t) => {
  const dir = longDirectory();
  const helper = startTestHelper([dir]);
  await sleep(200);
  await serveOnce(t, listenAnywhere(path.join(dir, 'vm.socket.repair')), helper);
});

t.test('a symlink to the directory (KubeVirt shortens long paths this way) is followed', async (t) => {
  const dir = longDirectory();
  const link = path.join(temporaryDirectory(), 'short');
  fs.symlinkSync(dir, link);
  const helper = startTestHelper([link]);
  await sleep(200);
  await serveOnce(t, listenAnywhere(path.join(dir, 'vm.socket.repair')), helper);
});
