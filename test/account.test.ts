// SPDX-License-Identifier: GPL-2.0-or-later
// The helper's own account: created by the install step, the default
// sandbox account when it exists; "nobody" only as a fallback, with a
// warning. Each test runs in a mount namespace of its own over a copy of
// /etc (unshare -m, bind mount), so that the real /etc/passwd is never
// touched: the account is created, used and gone with the namespace.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, HELPER, passt, ROOT, startHelper, TCP_REPAIR_ON, writePolicy } from './passt-double/passt-double';
import { NOBODY, loopbackConnections, temporaryDirectory } from './lib';

const INSTALL_POLICY = path.join(ROOT, 'bin/passt-repair-install-policy');
const WARNING = /^passt-repair: WARNING: no "passt-repair" account: running as "nobody", which other processes share/m;

/** A copy of /etc, and the command prefix that runs a program with it mounted over /etc in a new mount namespace. */
function etcCopy(t: Test): { etc: string; inNamespace: string[] } {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const etc = path.join(dir, 'etc');
  const copy = spawnSync('cp', ['-a', '/etc', etc], { encoding: 'utf8' });
  if (copy.status !== 0) throw new Error(`cannot copy /etc: ${copy.stderr}`);
  // Without the account in the copy, whatever the machine has.
  spawnSync('userdel', ['--root', dir, 'passt-repair'], { encoding: 'utf8' });
  return { etc, inNamespace: ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /etc && exec "$@"', etc] };
}

function accountLine(etc: string): string | undefined {
  return fs.readFileSync(path.join(etc, 'passwd'), 'utf8').split('\n').find((line) => line.startsWith('passt-repair:'));
}

/** Serves one request with a helper started by `command` under a policy naming no sandbox account; returns its uid while serving and its stderr. */
async function serveOnce(t: Test, command: readonly string[]): Promise<{ uid: number; code: number | null; stderr: string }> {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'passt.repair');
  // Written here: writePolicy would name an account.
  const policy = path.join(dir, 'policy.json');
  fs.writeFileSync(policy, JSON.stringify({ version: 1, rules: [{ name: 'test', sockets: [`${dir}/*.repair`], peer: {} }] }), { mode: 0o644 });
  const loopback = await loopbackConnections(1);
  t.teardown(() => loopback.close());
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', policy, socketPath], command);
  const sock = await acceptHelper(listener, 20_000);
  fs.closeSync(listener);
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'served');
  const uid = Number(/^Uid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${helper.child.pid}/status`, 'utf8'))![1]);
  fs.closeSync(sock);
  const { code, stderr } = await helper.exited;
  return { uid, code, stderr };
}

t.test('the install step creates the passt-repair system account, once; the helper then runs as it, without a warning', async (t) => {
  const realPasswd = fs.readFileSync('/etc/passwd', 'utf8');
  const { etc, inNamespace } = etcCopy(t);
  t.equal(accountLine(etc), undefined, 'no account to begin with');
  const first = spawnSync(inNamespace[0]!, [...inNamespace.slice(1), INSTALL_POLICY], { encoding: 'utf8' });
  t.equal(first.status, 0, first.stderr);
  t.match(first.stdout, /created the system account passt-repair/);
  const line = accountLine(etc);
  t.match(line, /^passt-repair:x:(\d+):(\d+)::\/nonexistent:\/usr\/sbin\/nologin$/, 'a system account: no home, no shell');
  const [, uid, gid] = /^passt-repair:x:(\d+):(\d+):/.exec(line!)!.map(Number);
  t.ok(uid! > 0 && uid! < 1000, `a system uid (${uid})`);
  t.match(fs.readFileSync(path.join(etc, 'group'), 'utf8'), new RegExp(`^passt-repair:x:${gid}:$`, 'm'), 'its own group');
  t.ok(fs.existsSync(path.join(etc, 'passt-repair/policy.json')), 'and the policy, in the copy');

  const passwdBefore = fs.readFileSync(path.join(etc, 'passwd'), 'utf8');
  const second = spawnSync(inNamespace[0]!, [...inNamespace.slice(1), INSTALL_POLICY], { encoding: 'utf8' });
  t.equal(second.status, 0, second.stderr);
  t.match(second.stdout, /the system account passt-repair exists: kept/);
  t.equal(fs.readFileSync(path.join(etc, 'passwd'), 'utf8'), passwdBefore, 'run again: nothing changes');

  const served = await serveOnce(t, [...inNamespace, HELPER]);
  t.equal(served.code, 0, served.stderr);
  t.equal(served.uid, uid, 'the helper served as passt-repair');
  t.notMatch(served.stderr, /WARNING/, 'no warning');
  t.equal(fs.readFileSync('/etc/passwd', 'utf8'), realPasswd, 'the real /etc/passwd is as it was');
});

t.test('without the account: "nobody", with a warning in the audit log', async (t) => {
  const { inNamespace } = etcCopy(t);
  const served = await serveOnce(t, [...inNamespace, HELPER]);
  t.equal(served.code, 0, served.stderr);
  t.equal(served.uid, NOBODY, 'the helper served as nobody');
  t.match(served.stderr, WARNING, 'the warning');
});

t.test('a policy that names an account: that one, without a warning', async (t) => {
  const { inNamespace } = etcCopy(t);
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'passt.repair');
  const policy = writePolicy(dir, { version: 1, sandbox: { user: 'nobody' }, rules: [{ name: 'test', sockets: [`${dir}/*.repair`], peer: {} }] });
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', policy, socketPath], [...inNamespace, HELPER]);
  const sock = await acceptHelper(listener, 20_000);
  fs.closeSync(listener);
  fs.closeSync(sock);
  const { code, stderr } = await helper.exited;
  t.equal(code, 0, stderr);
  t.notMatch(stderr, /WARNING/);
});
