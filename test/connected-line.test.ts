// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 4 judges the peer by the credentials it had when it called listen():
// the "connected" line says so when that process has exited since.
import t from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, awaitReply, passt, ROOT, TCP_REPAIR_ON } from './passt-double/passt-double';
import { loopbackConnections, startTestHelper, temporaryDirectory } from './lib';

t.test('a peer that listened and exited: served, and the connected line says "exited since it listened"', async (t) => {
  const loopback = await loopbackConnections(1);
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'passt.repair');
  // Bound here; listen() is called by a child that then exits, while this
  // process keeps the socket: its credentials are the child's.
  const bound = passt.bindUnix(socketPath);
  t.teardown(async () => {
    fs.closeSync(bound);
    fs.rmSync(dir, { recursive: true });
    await loopback.close();
  });
  const double = path.join(ROOT, 'test/build/Release/passt_double.node');
  const child = spawn(process.execPath, ['-e', `require(${JSON.stringify(double)}).startListening(3)`], { stdio: ['ignore', 'inherit', 'inherit', bound] });
  const listenerPid = child.pid!;
  t.equal(await new Promise((resolve) => child.on('close', resolve)), 0, 'the child listened and exited');

  const helper = startTestHelper([socketPath]);
  const sock = await acceptHelper(bound);
  passt.sendRequest(sock, Buffer.from([TCP_REPAIR_ON]), loopback.fds);
  t.equal(await awaitReply(sock), TCP_REPAIR_ON, 'served');
  fs.closeSync(sock);
  const { code, stderr } = await helper.exited;
  t.equal(code, 0);
  t.match(stderr, new RegExp(`^passt-repair: connected to ${socketPath}, allowed by rule "tests": peer pid ${listenerPid} \\(exited since it listened\\), uid 0, gid 0, executable unknown$`, 'm'));
});
