// SPDX-License-Identifier: GPL-2.0-or-later
// The sandboxed helper holds only what it needs: descriptors its caller
// leaked (a regular file, an rtnetlink socket, which CAP_NET_ADMIN would make
// powerful) are closed before the gates, and a helper started without the
// launcher that closes them refuses to run.
import t from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, awaitReply, HELPER, openDescriptors, passt, ROOT, TCP_REPAIR_ON, NODE } from './passt-double/passt-double';
import { loopbackConnections, temporaryDirectory, TEST_POLICY, type Loopback } from './lib';

let loopback: Loopback;
let leakedFile: number;
let rtnetlink: number;
let secret: string;
t.before(async () => {
  loopback = await loopbackConnections(1);
  secret = path.join(temporaryDirectory(), 'secret');
  fs.writeFileSync(secret, 'not for the helper\n');
  leakedFile = fs.openSync(secret, 'r');
  rtnetlink = passt.otherSocket('rtnetlink');
});
t.teardown(async () => {
  fs.closeSync(leakedFile);
  fs.closeSync(rtnetlink);
  fs.rmSync(path.dirname(secret), { recursive: true });
  await loopback.close();
});

/** Runs `command` with the leaked file and rtnetlink socket as its descriptors 3 and 4, as a careless caller would. */
function startLeaking(command: readonly string[]) {
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe', leakedFile, rtnetlink] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  return { child, exited };
}

t.test('bin/passt-repair: a leaked file and rtnetlink socket are not held while the helper serves', async (t) => {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true }));
  const socketPath = path.join(dir, 'passt.repair');
  const listener = passt.listenUnix(socketPath);
  const helper = startLeaking([HELPER, '--policy', TEST_POLICY, socketPath]);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  passt.sendRequest(sock, Buffer.from([TCP_REPAIR_ON]), loopback.fds);
  t.equal(await awaitReply(sock), TCP_REPAIR_ON, 'served');
  // Past every gate, serving: what does it hold?
  const held = [...openDescriptors(helper.child.pid!).values()];
  const netlinkInode = fs.readlinkSync(`/proc/self/fd/${rtnetlink}`);
  t.notOk(held.includes(secret), `the leaked file is not held (${held.join(', ')})`);
  t.notOk(held.includes(netlinkInode), 'the leaked rtnetlink socket is not held');
  fs.closeSync(sock);
  const { code } = await helper.exited;
  t.equal(code, 0);
});

t.test('without the launcher: a leaked descriptor makes the helper refuse to run, before connecting', async (t) => {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true }));
  const socketPath = path.join(dir, 'passt.repair');
  const listener = passt.listenUnix(socketPath);
  t.teardown(() => fs.closeSync(listener));
  const helper = startLeaking([NODE, path.join(ROOT, 'dist/src/main.js'), '--policy', TEST_POLICY, socketPath]);
  const { code, stderr } = await helper.exited;
  t.equal(code, 1, 'exit 1');
  const netlinkInode = fs.readlinkSync(`/proc/self/fd/${rtnetlink}`);
  t.ok(
    stderr.includes(`passt-repair: descriptors 3 (${secret}), 4 (${netlinkInode}) left open by the caller; refusing to run with them: start the helper through bin/passt-repair, which closes them\n`),
    stderr,
  );
  t.equal(passt.accept(listener, 0), -1, 'nothing connected');
});
