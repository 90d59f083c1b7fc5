// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 4 with real peers of another uid and gid (setpriv): SO_PEERCRED
// against a rule's uids, gids and sameOwner, allowed and refused. After a
// refusal the listening side has seen no request answered.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, awaitReply, passt, startHelper, writePolicy, TCP_REPAIR_ON } from './passt-double/passt-double';
import { NOBODY, listenAsNobody, loopbackConnections, nobodyDirectory, temporaryDirectory } from './lib';

function policyFor(dir: string, peerRule: object): string {
  return writePolicy(temporaryDirectory(), { version: 1, rules: [{ name: 'vm', sockets: [`${dir}/*.repair`], peer: peerRule }] });
}

/** Runs passt's side as uid/gid 65534 and the helper as root against it. */
async function againstNobody(peerRule: object) {
  const dir = nobodyDirectory();
  const socketPath = path.join(dir, 'vm.repair');
  const listener = await listenAsNobody(socketPath);
  const helper = await startHelper(['--policy', policyFor(dir, peerRule), socketPath]).exited;
  const result = await listener.finished;
  return { helper, result };
}

t.test('a peer of uid/gid 65534 that owns its socket, named in uids and gids: served', async (t) => {
  const { helper, result } = await againstNobody({ uids: [NOBODY], gids: [NOBODY] });
  t.same({ uid: result.uid, gid: result.gid }, { uid: NOBODY, gid: NOBODY }, 'passt side ran as 65534');
  t.equal(result.reply, TCP_REPAIR_ON, 'its request was answered');
  t.equal(helper.code, 0);
  t.match(
    helper.stderr,
    new RegExp(`^passt-repair: connected to .*/vm\\.repair, allowed by rule "vm": peer pid \\d+, uid 65534, gid 65534, executable ${fs.realpathSync(process.execPath)}$`, 'm'),
    "the audit log names the peer and its executable (another uid's, read with CAP_SYS_PTRACE before the second drop)",
  );
});

t.test('uids that do not contain the peer: refused, exit 1, the peer named, nothing answered', async (t) => {
  const { helper, result } = await againstNobody({ uids: [12345] });
  t.equal(result.reply, null, 'the listening side saw the connection close without a reply');
  t.equal(helper.code, 1);
  t.match(helper.stderr, /^passt-repair: gate 4 \(peer\) refused: peer refused on .*vm\.repair: pid \d+, uid 65534, gid 65534; rule "vm": uid 65534 is not in uids \[12345\]$/m);
});

t.test('gids that do not contain the peer: refused', async (t) => {
  const { helper, result } = await againstNobody({ gids: [0, 12345] });
  t.equal(result.reply, null);
  t.equal(helper.code, 1);
  t.match(helper.stderr, /uid 65534, gid 65534; rule "vm": gid 65534 is not in gids \[0, ?12345\]/);
});

t.test('sameOwner: a peer that does not own the socket file is refused, and allowed with sameOwner false', async (t) => {
  const loopback = await loopbackConnections(1);
  for (const sameOwner of [true, false]) {
    const dir = nobodyDirectory();
    const socketPath = path.join(dir, 'vm.repair');
    // Root listens, the file belongs to 65534: the owner is not the peer.
    const listener = passt.listenUnix(socketPath);
    fs.chownSync(socketPath, NOBODY, NOBODY);
    const helper = startHelper(['--policy', policyFor(dir, sameOwner ? { uids: [0] } : { sameOwner: false, uids: [0] }), socketPath]);
    const sock = await acceptHelper(listener);
    fs.closeSync(listener);
    let reply: number | null | undefined = null;
    try {
      passt.sendRequest(sock, Buffer.from([TCP_REPAIR_ON]), loopback.fds);
      reply = await awaitReply(sock);
    } catch {
      // EPIPE: the helper refused and closed before the request went out
    }
    fs.closeSync(sock);
    const { code, stderr } = await helper.exited;
    if (sameOwner) {
      t.equal(reply, null, 'sameOwner (the default): no reply');
      t.equal(code, 1);
      t.match(stderr, /pid \d+, uid 0, gid 0; rule "vm": .*own/);
    } else {
      t.equal(reply, TCP_REPAIR_ON, 'sameOwner false: served');
      t.equal(code, 0);
    }
  }
  await loopback.close();
});
