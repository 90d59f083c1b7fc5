// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 1 through another process's root, as current KubeVirt starts the
// helper: /proc/<virt-launcher pid>/root/var/run/libvirt/qemu/run/passt (the
// target's directory, before passt creates its socket) and the
// *.socket.repair in it (the source). The launcher is emulated for real: its
// own mount namespace with a /run the host does not see, passt's side as
// uid/gid 107, the installed policy/examples/kubevirt.json. The attacker's
// side: an unprivileged user's namespace presenting the same inside path, a
// host symlink into a process's root, a PID that does not exist or exits
// half-way.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HELPER, openDescriptors, ROOT, startHelper, writePolicy } from './passt-double/passt-double';
import { temporaryDirectory, unusualLines as allUnusualLines } from './lib';

import { installPolicy, QEMU, startStoppedHelper, startUserNamespace, startVirtLauncher, type Pod } from './pods';

/**
 * The installed KubeVirt example names no sandbox account, so on a machine
 * without the "passt-repair" account the helper warns that it falls back to
 * "nobody" (test/account.test.ts tests that warning): here it is routine.
 */
function unusualLines(stderr: string): string[] {
  return allUnusualLines(stderr).filter((line) => !/^passt-repair: WARNING: no "passt-repair" account: running as "nobody"/.test(line));
}

const KUBEVIRT = installPolicy(path.join(ROOT, 'policy/examples/kubevirt.json'));
const PASST_DIR = '/run/libvirt/qemu/run/passt';
const SOCKET = `${PASST_DIR}/vm-net0.socket.repair`;
const SERVED = { on: 1, statesOn: [1, 1, 1], off: 0, statesOff: [0, 0, 0] };

function stopOnTeardown(t: Test, pod: Pod): void {
  t.teardown(() => {
    if (pod.child.exitCode === null && pod.child.signalCode === null) pod.child.kill('SIGKILL');
  });
}

function jsonLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

t.test('KubeVirt as installed: the target directory before its socket exists, then the source socket, inside a uid 107 launcher', async (t) => {
  const pod = await startVirtLauncher(`/var/run/libvirt/qemu/run/passt/vm-net0.socket.repair`);
  stopOnTeardown(t, pod);
  const root = `/proc/${pod.pid}/root`;
  t.not(fs.statSync(`${root}/run`).dev, fs.statSync('/run').dev, "the launcher's /run is a mount the host does not see");
  t.equal(fs.readlinkSync(`${root}/var/run`), '../run', 'var/run -> ../run, relative');

  // Target: virt-handler starts the helper before passt creates the socket.
  const target = startHelper(['--policy', KUBEVIRT, `${root}/var/run/libvirt/qemu/run/passt`]);
  await sleep(300);
  t.equal(target.child.exitCode, null, 'the helper waits in the directory');
  await pod.listen();
  const first = await target.exited;
  t.equal(first.code, 0, first.stderr);
  t.same(unusualLines(first.stderr), []);
  t.match(
    first.stderr,
    `connected to ${SOCKET} inside the root of pid ${pod.pid}, allowed by rule "kubevirt-virt-launcher": peer pid ${pod.pid}, uid ${QEMU}, gid ${QEMU}`,
  );

  // Source: the socket itself, audit log in JSON.
  const source = startHelper(['--policy', KUBEVIRT, '--log-format', 'json', `${root}/var/run/libvirt/qemu/run/passt/vm-net0.socket.repair`]);
  const second = await source.exited;
  t.equal(second.code, 0, second.stderr);
  t.match(jsonLines(second.stderr).find((line) => line.event === 'connected'), {
    socket: `${root}${SOCKET}`,
    rootPid: pod.pid,
    insidePath: SOCKET,
    rule: 'kubevirt-virt-launcher',
    peerUid: QEMU,
  });
  t.same(await pod.end(), { served: [SERVED, SERVED], uid: QEMU, gid: QEMU }, 'ON and OFF batches of real TCP sockets, both runs');
});

t.test('inside the root: ".." and absolute symlinks stay in it; the helper keeps no descriptor of it once connected', async (t) => {
  const pod = await startVirtLauncher(SOCKET, true);
  stopOnTeardown(t, pod);
  const root = `/proc/${pod.pid}/root`;
  await pod.listen();
  // Absolute, as the pod sees it: resolved in the pod's root, never the host's.
  fs.symlinkSync(PASST_DIR, `${root}/run/passt-link`);
  t.notOk(fs.existsSync(PASST_DIR), 'the host has no such directory: only the pod root can satisfy the link');
  const explained = startHelper(['--policy', KUBEVIRT, '--explain', `${root}/run/passt-link/`]);
  let stdout = '';
  explained.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  t.equal((await explained.exited).code, 0, stdout);
  t.match(stdout, `${root}/run/passt-link/ resolves to ${PASST_DIR} in the root of pid ${pod.pid}`);

  // ".." above the root stays at the root; after a symlink it goes to the parent of the link's target.
  const helper = startHelper(['--policy', KUBEVIRT, `${root}/../../../run/passt-link/../passt/vm-net0.socket.repair`]);
  await Promise.race([pod.accepted(), helper.exited.then(({ stderr }) => Promise.reject(new Error(`the helper exited: ${stderr}`)))]);
  // Ready for requests once its seccomp filter is on (the last step): by
  // then gate 1's descriptors are closed and gate 2 has dropped CAP_SYS_PTRACE.
  // Gate 3's filter is every thread's second: the launcher's own (io_uring
  // unavailable) makes "Seccomp: 2" true from the start.
  const status = (tid: string) => fs.readFileSync(`/proc/${helper.child.pid}/task/${tid}/status`, 'utf8');
  const threads = () => fs.readdirSync(`/proc/${helper.child.pid}/task`);
  while (!threads().every((tid) => Number(/^Seccomp_filters:\s*(\d+)$/m.exec(status(tid))?.[1]) >= 2)) await sleep(5);
  for (const tid of threads())
    t.same(/^CapPrm:\s*(\w+)$/m.exec(status(tid))![1], '0000000000001000', `thread ${tid}: CAP_NET_ADMIN alone, CAP_SYS_PTRACE dropped`);
  const held = [...openDescriptors(helper.child.pid!).values()];
  t.same(
    held.filter((target) => !/^(socket|pipe|anon_inode):/.test(target) && target !== '/dev/null'),
    [],
    'connected: no path, directory or /proc descriptor left from gate 1',
  );
  pod.serve();
  const { code, stderr } = await helper.exited;
  t.equal(code, 0, stderr);
  t.match(stderr, `connected to ${SOCKET} inside the root of pid ${pod.pid}`);
  t.same((await pod.end()).served, [SERVED]);
});

t.test("--explain resolves inside the process's root and names the process", async (t) => {
  const pod = await startVirtLauncher(SOCKET);
  stopOnTeardown(t, pod);
  const root = `/proc/${pod.pid}/root`;
  const run = async (given: string) => {
    const helper = startHelper(['--policy', KUBEVIRT, '--explain', given]);
    let stdout = '';
    helper.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    const { code } = await helper.exited;
    return { code, stdout };
  };
  const directory = await run(`${root}/var/run/libvirt/qemu/run/passt`);
  t.equal(directory.code, 0, directory.stdout);
  t.match(directory.stdout, `process ${pod.pid}: uids 107/107/107/107, gids 107/107/107/107`);
  t.match(directory.stdout, `${root}/var/run/libvirt/qemu/run/passt resolves to ${PASST_DIR} in the root of pid ${pod.pid}`);
  t.match(directory.stdout, `${PASST_DIR} in the root of pid ${pod.pid}: allowed as a directory by rule "kubevirt-virt-launcher"`);
  const socket = await run(`${root}/var/run/libvirt/qemu/run/passt/vm-net0.socket.repair`);
  t.equal(socket.code, 0, socket.stdout);
  t.match(socket.stdout, `${PASST_DIR} in the root of pid ${pod.pid} exists; vm-net0.socket.repair does not exist yet: matched as ${SOCKET}`);
  t.match(socket.stdout, 'rule "kubevirt-shortening-symlink": has no "processRoot": it applies only to host paths');
  t.same((await pod.end()).served, []);
});

t.test("an unprivileged user's own namespace presenting the same inside path is refused by gate 1", async (t) => {
  const pod = await startUserNamespace(SOCKET);
  stopOnTeardown(t, pod);
  await pod.listen();
  const root = `/proc/${pod.pid}/root`;
  for (const given of [`${root}${PASST_DIR}`, `${root}/run/libvirt/qemu/run/passt/vm-net0.socket.repair`]) {
    const { code, stderr } = await startHelper(['--policy', KUBEVIRT, '--timeout', '2', given]).exited;
    t.equal(code, 1, given);
    t.same(unusualLines(stderr).slice(0, 1), [
      `passt-repair: gate 1 (path) refused: ${root}: process ${pod.pid} (uids 65534/65534/65534/65534, gids 65534/65534/65534/65534) may not lend its root: rule "kubevirt-virt-launcher": its uid 65534 is not in uids [107]`,
    ]);
  }
  const { served } = await pod.end();
  t.same(served, [], 'nothing connected');
});

t.test('a host symlink into a process root (a magic link) is refused, whatever the policy allows on the host', async (t) => {
  const pod = await startVirtLauncher(SOCKET);
  stopOnTeardown(t, pod);
  await pod.listen();
  const dir = temporaryDirectory();
  const link = path.join(dir, 'short');
  fs.symlinkSync(`/proc/${pod.pid}/root${PASST_DIR}`, link);
  const policy = writePolicy(dir, {
    version: 1,
    rules: [{ name: 'host', sockets: [`${dir}/**`, `${PASST_DIR}/*.socket.repair`], directories: [`${dir}/**`, PASST_DIR], peer: { sameOwner: false } }],
  });
  for (const given of [link, `${link}/vm-net0.socket.repair`]) {
    const { code, stderr } = await startHelper(['--policy', policy, '--timeout', '1', given]).exited;
    t.equal(code, 1, given);
    t.match(unusualLines(stderr)[0], `passt-repair: gate 1 (path) refused: /proc/${pod.pid}/root is a symlink on /proc (a magic link`);
  }
  t.same((await pod.end()).served, [], 'nothing connected');
});

t.test('a helper without CAP_SYS_PTRACE cannot open another uid\'s process root: refused by gate 1, saying why', async (t) => {
  const pod = await startVirtLauncher(SOCKET);
  stopOnTeardown(t, pod);
  await pod.listen();
  const dir = temporaryDirectory();
  fs.chmodSync(dir, 0o755);
  const policy = path.join(dir, 'policy.json');
  fs.copyFileSync(KUBEVIRT, policy);
  const setprivNetAdmin = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all,+net_admin', '--ambient-caps=+net_admin', HELPER];
  const { code, stderr } = await startHelper(['--policy', policy, `/proc/${pod.pid}/root${SOCKET}`], setprivNetAdmin).exited;
  t.equal(code, 1);
  t.match(unusualLines(stderr)[0], `passt-repair: gate 1 (path) refused: cannot open the root of process ${pod.pid}: permission denied`);
  t.match(unusualLines(stderr)[0], "(another user's process root needs CAP_SYS_PTRACE)");
  t.same((await pod.end()).served, []);
});

t.test('a PID that does not exist, or exits half-way through pinning, is refused by gate 1', async (t) => {
  const missing = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8')) + 1;
  const none = await startHelper(['--policy', KUBEVIRT, `/proc/${missing}/root${SOCKET}`]).exited;
  t.equal(none.code, 1);
  t.same(unusualLines(none.stderr).slice(0, 1), [`passt-repair: gate 1 (path) refused: process ${missing} (in /proc/${missing}/root) does not exist or has exited`]);

  // Pinning makes four openat2() calls: /proc/PID, its mountinfo, its
  // root, its status. The process dies right after the first, or right
  // after the root is open (its status then cannot be read).
  for (const [step, reason] of [
    [1, 'does not exist or has exited'],
    [3, 'does not exist or has exited'],
  ] as const) {
    const pod = await startVirtLauncher(SOCKET);
    stopOnTeardown(t, pod);
    await pod.listen();
    const helper = startStoppedHelper(['--policy', KUBEVIRT, `/proc/${pod.pid}/root${SOCKET}`], step);
    await helper.stopped;
    const exited = new Promise((resolve) => pod.child.once('close', resolve));
    pod.child.kill('SIGKILL');
    await exited;
    await helper.resume();
    const { code, stderr } = await helper.exited;
    t.equal(code, 1, `died after step ${step}`);
    t.match(unusualLines(stderr)[0], `passt-repair: gate 1 (path) refused: process ${pod.pid}`);
    t.match(unusualLines(stderr)[0], reason);
  }
});

t.test('a PID beyond the kernel\'s PID_MAX_LIMIT is refused by gate 1, never wrapped to another process', async (t) => {
  // 2^32 + 1 would be pid 1 in a 32-bit pid.
  const { code, stderr } = await startHelper(['--policy', KUBEVIRT, `/proc/4294967297/root${SOCKET}`]).exited;
  t.equal(code, 1);
  t.same(unusualLines(stderr).slice(0, 1), ['passt-repair: gate 1 (path) refused: /proc/4294967297/root: 4294967297 is not a process id (at most 4194304)']);
});

t.test('a "processRoot" without "uids" is refused: any user could lend a namespace of their own', async (t) => {
  const dir = temporaryDirectory();
  const policy = writePolicy(dir, { version: 1, rules: [{ name: 'anyone', processRoot: { gids: [107] }, sockets: [`${PASST_DIR}/*.socket.repair`], peer: {} }] });
  const checked = await startHelper(['--check-policy', policy]).exited;
  t.equal(checked.code, 1);
  t.match(checked.stderr, /\/rules\/0\/processRoot: missing the required key "uids"/);
});
