// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 1 under attack, with the helper held still between two of its steps
// (strace's SIGSTOP injection, test/pods.ts) so that each interleaving is
// forced, not hoped for: the namespace spoof from the issue (a directory
// swapped with a symlink into another mount namespace), a socket deleted or
// replaced between open and connect; and directory mode against stray
// sockets planted by someone else.
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { acceptHelper, HELPER, passt, startHelper, writePolicy } from './passt-double/passt-double';
import { NOBODY, nobodyDirectory, startTestHelper, temporaryDirectory, unusualLines } from './lib';
import { startNobodyPasst, startStoppedHelper, startUserNamespace, walkStep, type Pod } from './pods';

const LIBVIRT_DIR = '/run/libvirt/qemu/passt';

function killOnTeardown(t: Test, pod: Pod): void {
  t.teardown(() => {
    if (pod.child.exitCode === null && pod.child.signalCode === null) pod.child.kill('SIGKILL');
  });
}

/**
 * The issue's attacker, uid 65534: its own user+mount namespace listening on
 * /run/libvirt/qemu/passt/evil.repair, and on the host a directory it owns
 * with d/ (a real directory with its own evil.repair listening) and `link`
 * (a symlink to /proc/ITS_PID/root/run/libvirt/qemu/passt), swapped at will.
 */
async function attacker(t: Test) {
  const namespace = await startUserNamespace(`${LIBVIRT_DIR}/evil.repair`);
  killOnTeardown(t, namespace);
  await namespace.listen();
  const home = nobodyDirectory('att');
  const d = path.join(home, 'd');
  fs.mkdirSync(d);
  fs.chownSync(d, NOBODY, NOBODY);
  const onHost = await startNobodyPasst(path.join(d, 'evil.repair'));
  killOnTeardown(t, onHost);
  const link = path.join(home, 'link');
  fs.symlinkSync(`/proc/${namespace.pid}/root${LIBVIRT_DIR}`, link);
  fs.lchownSync(link, NOBODY, NOBODY);
  const policy = writePolicy(temporaryDirectory(), { version: 1, rules: [{ name: 'libvirt', sockets: [`${LIBVIRT_DIR}/*.repair`], peer: {} }] });
  return {
    home,
    d,
    link,
    target: path.join(d, 'evil.repair'),
    policy,
    swap: () => passt.renameExchange(d, link),
    /** Every helper connection either side saw, served or not. */
    connections: async () => [...(await namespace.end()).served, ...(await onHost.end()).served],
  };
}

t.test('namespace spoof, forced interleavings: a directory swapped with a symlink into another namespace is never served', async (t) => {
  const a = await attacker(t);
  // Swapped right after the helper opened the attacker's directory: "d" is
  // then the symlink, which leads through /proc/PID/root, a magic link.
  const before = startStoppedHelper(['--policy', a.policy, a.target], walkStep(a.home));
  await before.stopped;
  a.swap();
  await before.resume();
  const first = await before.exited;
  t.equal(first.code, 1);
  t.match(unusualLines(first.stderr)[0], `gate 1 (path) refused: /proc/`);
  t.match(unusualLines(first.stderr)[0], 'is a symlink on /proc (a magic link');
  a.swap();

  // Swapped right after "d" was opened as the real directory: the helper
  // goes on in the directory it holds, and names it by the path it built.
  const after = startStoppedHelper(['--policy', a.policy, a.target], walkStep(a.d));
  await after.stopped;
  a.swap();
  await after.resume();
  const second = await after.exited;
  t.equal(second.code, 1);
  t.same(unusualLines(second.stderr).slice(0, 1), [`passt-repair: gate 1 (path) refused: ${a.target}: no rule of ${a.policy} allows connecting to this socket`]);
  a.swap();

  // A policy that does allow the attacker's host directory: swapped after
  // the socket was opened and matched, the re-check finds a symlink where
  // the checked path had a directory.
  const lenient = writePolicy(temporaryDirectory(), { version: 1, rules: [{ name: 'attacker-home', sockets: [`${a.d}/*.repair`], peer: {} }] });
  const recheck = startStoppedHelper(['--policy', lenient, a.target], walkStep(a.target));
  await recheck.stopped;
  a.swap();
  await recheck.resume();
  const third = await recheck.exited;
  t.equal(third.code, 1);
  t.same(unusualLines(third.stderr).slice(0, 1), [`passt-repair: gate 1 (path) refused: ${a.d} is a symlink now: the path checked has changed since`]);
  a.swap();

  t.same(await a.connections(), [], 'neither the namespace nor the host directory saw a connection');
});

t.test('namespace spoof, raced: 50 helpers against a swapper looping RENAME_EXCHANGE, zero served', async (t) => {
  const a = await attacker(t);
  const swapper = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, path.join(__dirname, 'fixtures/swapper.js'), a.d, a.link], {
    stdio: 'inherit',
  });
  t.teardown(() => swapper.kill('SIGKILL'));
  const reasons = new Map<string, number>();
  for (let attempt = 0; attempt < 50; attempt++) {
    const { code, stderr } = await startHelper(['--policy', a.policy, a.target]).exited;
    const refusal = unusualLines(stderr)[0] ?? '';
    const reason = /gate 1 \(path\) refused: .*?(is a symlink on \/proc|no rule of|No such file|Not a directory|now names another|is a symlink now)/.exec(refusal)?.[1] ?? refusal;
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    if (code !== 1 || !refusal.includes('gate 1 (path) refused')) t.fail(`attempt ${attempt}: exit ${code}: ${stderr}`);
  }
  swapper.kill('SIGKILL');
  t.comment(`refusals: ${[...reasons].map(([reason, count]) => `${count} x "${reason}"`).join(', ')}`);
  t.same(await a.connections(), [], 'zero served, zero connections');
});

t.test('a socket deleted, or replaced, between open and connect is refused; replaced after the re-check, the original is reached', async (t) => {
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'passt.repair');
  const policy = writePolicy(dir, { version: 1, rules: [{ name: 'r', sockets: [`${dir}/*.repair`], peer: {} }] });

  let listener = passt.listenUnix(socketPath);
  const deleted = startStoppedHelper(['--policy', policy, socketPath], walkStep(socketPath));
  await deleted.stopped;
  fs.unlinkSync(socketPath);
  await deleted.resume();
  const gone = await deleted.exited;
  t.equal(gone.code, 1);
  t.same(unusualLines(gone.stderr).slice(0, 1), [`passt-repair: gate 1 (path) refused: ${socketPath} is deleted (unlinked after it was opened)`]);
  t.equal(passt.accept(listener, 0), -1, 'the deleted socket saw no connection');
  fs.closeSync(listener);

  listener = passt.listenUnix(socketPath);
  const replaced = startStoppedHelper(['--policy', policy, socketPath], walkStep(socketPath));
  await replaced.stopped;
  fs.renameSync(socketPath, path.join(dir, 'moved.repair'));
  let replacement = passt.listenUnix(socketPath);
  await replaced.resume();
  const swapped = await replaced.exited;
  t.equal(swapped.code, 1);
  t.same(unusualLines(swapped.stderr).slice(0, 1), [`passt-repair: gate 1 (path) refused: ${socketPath} now names another object than the one opened: replaced after it was opened`]);
  t.equal(passt.accept(listener, 0), -1, 'the socket opened saw no connection');
  t.equal(passt.accept(replacement, 0), -1, 'nor did its replacement');
  fs.closeSync(listener);
  fs.closeSync(replacement);
  fs.unlinkSync(path.join(dir, 'moved.repair'));
  fs.unlinkSync(socketPath);

  // The re-check walks the path again from the root it holds: its last
  // openat2() comes that many calls after the first walk's.
  listener = passt.listenUnix(socketPath);
  const late = startStoppedHelper(['--policy', policy, socketPath], 2 * walkStep(socketPath) - 1);
  await late.stopped;
  fs.renameSync(socketPath, path.join(dir, 'moved.repair'));
  replacement = passt.listenUnix(socketPath);
  await late.resume();
  fs.closeSync(await acceptHelper(listener));
  const reached = await late.exited;
  t.equal(reached.code, 0, reached.stderr);
  t.equal(passt.accept(replacement, 0), -1, 'the replacement saw no connection: the object checked is the one connected');
  fs.closeSync(listener);
  fs.closeSync(replacement);
});

t.test('directory mode: a stray socket whose peer fails gate 4 is skipped with a warning, and the real passt is served', async (t) => {
  const dir = nobodyDirectory();
  const stray = await startNobodyPasst(path.join(dir, 'a.repair'));
  killOnTeardown(t, stray);
  const policy = writePolicy(temporaryDirectory(), {
    version: 1,
    rules: [{ name: 'root-passt', sockets: [`${dir}/*.repair`], directories: [dir], peer: { uids: [0] } }],
  });
  const helper = startHelper(['--policy', policy, '--timeout', '10', dir]);
  await sleep(300);
  const real = passt.listenUnix(path.join(dir, 'vm.repair'));
  fs.closeSync(await acceptHelper(real));
  fs.closeSync(real);
  const { code, stderr } = await helper.exited;
  t.equal(code, 0, stderr);
  t.match(stderr, `passt-repair: skipping ${dir}/a.repair: gate 4 (peer) refused: peer refused on ${dir}/a.repair: pid ${stray.pid}, uid ${NOBODY}, gid ${NOBODY}; rule "root-passt": uid ${NOBODY} is not in uids [0]`);
  t.match(stderr, `connected to ${dir}/vm.repair, allowed by rule "root-passt"`);
  const { served } = await stray.end();
  t.notOk(served.some((request) => request.on !== null), 'the stray peer got no reply to anything it sent');
});

t.test('directory mode: a stray socket with a full backlog neither blocks the helper past --timeout nor stops the real passt', async (t) => {
  const dir = temporaryDirectory();
  const stray = passt.listenUnix(path.join(dir, 'a.repair'));
  const backlog = passt.fillBacklog(path.join(dir, 'a.repair'));
  t.ok(backlog.length > 0, `backlog full after ${backlog.length} connection(s)`);

  const alone = await startTestHelper(['--timeout', '1', dir]).exited;
  t.equal(alone.code, 1);
  t.match(alone.stderr, `no socket named *.repair in ${dir} accepted a connection within 1 s`);

  const helper = startTestHelper(['--timeout', '10', dir]);
  await sleep(300);
  const real = passt.listenUnix(path.join(dir, 'vm.repair'));
  fs.closeSync(await acceptHelper(real));
  const { code, stderr } = await helper.exited;
  t.equal(code, 0, stderr);
  t.match(stderr, `connected to ${dir}/vm.repair`);
  for (const fd of [real, stray, ...backlog]) fs.closeSync(fd);
});

t.test('--explain resolves the deepest existing ancestor as serving does; a trailing "/" asks about a directory', async (t) => {
  const dir = temporaryDirectory();
  fs.mkdirSync(path.join(dir, 'run'));
  fs.symlinkSync('run', path.join(dir, 'var-run')); // as /var/run -> /run
  const policy = writePolicy(dir, {
    version: 1,
    rules: [{ name: 'passt', sockets: [`${dir}/run/passt/*.repair`], directories: [`${dir}/run/passt`], peer: {} }],
  });
  const explain = (given: string) => {
    const result = spawnSync(HELPER, ['--policy', policy, '--explain', given], { encoding: 'utf8' });
    return { code: result.status, stdout: result.stdout };
  };

  const socket = explain(`${dir}/var-run/passt/x.repair`);
  t.equal(socket.code, 0, socket.stdout);
  t.match(socket.stdout, `${dir}/run exists; passt/x.repair does not exist yet: matched as ${dir}/run/passt/x.repair, as a socket (end PATH with "/" to ask about a directory)\n`);
  t.match(socket.stdout, `${dir}/run/passt/x.repair: allowed as a socket by rule "passt" of ${policy}\n`);

  const directory = explain(`${dir}/var-run/passt/`);
  t.equal(directory.code, 0, directory.stdout);
  t.match(directory.stdout, `${dir}/run exists; passt does not exist yet: matched as ${dir}/run/passt, as a directory\n`);
  t.match(directory.stdout, `${dir}/run/passt: allowed as a directory by rule "passt" of ${policy}\n`);
  const asSocket = explain(`${dir}/var-run/passt`);
  t.equal(asSocket.code, 1, 'without the "/", a socket path, which no rule allows');
  t.match(asSocket.stdout, `${dir}/run/passt: no rule of ${policy} allows it as a socket\n`);

  fs.mkdirSync(path.join(dir, 'run/passt'));
  const existing = explain(`${dir}/var-run/passt`);
  t.equal(existing.code, 0, existing.stdout);
  t.match(existing.stdout, `${dir}/var-run/passt resolves to ${dir}/run/passt\n`);
  t.match(existing.stdout, 'allowed as a directory');

  fs.symlinkSync(`/proc/self/root${dir}/run`, path.join(dir, 'magic'));
  const magic = explain(`${dir}/magic/passt/`);
  t.equal(magic.code, 1);
  t.match(magic.stdout, 'gate 1 (path) would refuse: /proc/self is a symlink on /proc (a magic link');
});

t.test('a socket with a second name (a hard link) is refused by gate 1 and sees no connection', async (t) => {
  const dir = temporaryDirectory();
  const original = path.join(dir, 'other.sock');
  const linked = path.join(dir, 'passt.repair');
  const policy = writePolicy(dir, { version: 1, rules: [{ name: 'r', sockets: [`${dir}/*.repair`], peer: {} }] });
  const listener = passt.listenUnix(original);
  fs.linkSync(original, linked);
  const { code, stderr } = await startHelper(['--policy', policy, linked]).exited;
  t.equal(code, 1);
  t.same(unusualLines(stderr).slice(0, 1), [`passt-repair: gate 1 (path) refused: ${linked} has 2 hard links: a socket reached through a second name is not served`]);
  t.equal(passt.accept(listener, 0), -1, 'the listener behind both names saw no connection');
  fs.closeSync(listener);
});
