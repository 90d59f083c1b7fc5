// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 3: the seccomp filter, from its data to a helper serving under it.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../src/addon';
import { loadAllowlist, parseSeccompPolicy, seccompFile } from '../src/sandbox/seccomp';
import { HelperError } from '../src/errors';
import { acceptHelper, awaitReply, HELPER, passt, ROOT, startHelper, TCP_REPAIR_OFF, TCP_REPAIR_ON, writePolicy, NODE, RUNTIME_LAUNCHER } from './passt-double/passt-double';
import { loopbackConnections, repairStates, temporaryDirectory, unusualLines } from './lib';

// The helper's launcher runs only dist/src/main.js; this one runs a test's script in the same sandbox.
const PROBE = path.join(ROOT, 'dist/test/fixtures/seccomp-probe.js');

/**
 * Runs `command` in an empty environment. Through env -i (the launcher also
 * clears the environment it gives the runtime, as bin/passt-repair relies on): tap adds its own NODE_OPTIONS hooks to every child it sees spawned,
 * and those would make calls of their own under the filter.
 */
function runClean(command: readonly string[]) {
  return spawnSync('env', ['-i', ...command], { encoding: 'utf8' });
}

/** Runs the probe as the helper runs: same launcher, same runtime and flags. */
function probe(call: string, mode: 'kill' | 'log' = 'kill') {
  const result = runClean([RUNTIME_LAUNCHER, NODE, '--disable-sigusr1', '--disallow-code-generation-from-strings', PROBE, call, mode]);
  return { code: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

t.test('the allowlist: every line has a reason, every name is a system call of this platform', async (t) => {
  const rules = loadAllowlist();
  t.ok(rules.length > 20, `${rules.length} rules`);
  const names = new Set(rules.map((rule) => rule.syscall));
  for (const forbidden of ['socket', 'connect', 'bind', 'openat2', 'creat', 'execve', 'ptrace', 'io_uring_setup', 'io_uring_enter', 'clone', 'clone3'])
    t.notOk(names.has(forbidden), `${forbidden} is not allowed`);
  for (const refused of ['open', 'openat'])
    t.same(rules.filter((rule) => rule.syscall === refused).map((rule) => rule.deny), [13], `${refused} is only ever refused with EACCES`);
  const setsockopt = rules.filter((rule) => rule.syscall === 'setsockopt');
  t.same(setsockopt.map((rule) => rule.args), [[{ arg: 1, value: 6n }, { arg: 2, value: 19n }]], 'setsockopt: SOL_TCP, TCP_REPAIR only');
});

t.test('a line without a reason, a bad condition or an unknown constant is an error naming the line', async (t) => {
  t.throws(() => parseSeccompPolicy('read\n', 'x.policy'), new HelperError('x.policy:1: expected "NAME  # reason" or "NAME: argN == VALUE && ...  # reason"'));
  t.throws(() => parseSeccompPolicy('# c\nfcntl: arg1 > 3  # why\n', 'x.policy'), /x\.policy:2: "arg1 > 3" is not "argN == VALUE"/);
  t.throws(() => parseSeccompPolicy('fcntl: arg1 == F_DUPFD  # why\n', 'x.policy'), /x\.policy:1: unknown constant F_DUPFD/);
  t.throws(() => parseSeccompPolicy('openat: deny ENOPE  # why\n', 'x.policy'), /x\.policy:1: unknown error name ENOPE/);
});

t.test('building the filter fails loudly on a system call the platform does not know', async (t) => {
  // Fails while building, before anything is installed: safe in this process.
  t.throws(() => native.prepareSeccompFilter([{ syscall: 'frobnicate', args: [], line: 7 }], 'kill'), {
    code: 'UNKNOWN_SYSCALL',
    syscall: 'frobnicate',
    line: 7,
  });
});

t.test('preparing the filter (before connect) generates it without installing anything', async (t) => {
  const seccompMode = () => fs.readFileSync('/proc/self/status', 'utf8').match(/^Seccomp:\s+(\d)$/m)?.[1];
  const before = seccompMode();
  const prepared = native.prepareSeccompFilter(loadAllowlist(), 'kill');
  t.ok(prepared, 'a prepared filter');
  t.equal(seccompMode(), before, 'this process is still in the same seccomp mode');
});

const FORBIDDEN = [
  'socket', 'socketpair', 'connect', 'bind', 'listen', 'accept4',
  'openat2', 'creat',
  'execve', 'execveat', 'fork', 'clone3',
  'ptrace', 'process_vm_readv', 'process_vm_writev',
  'setuid', 'setresuid', 'setgid', 'setgroups', 'capset',
  'unshare', 'setns', 'mount', 'prctl',
  'bpf', 'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  'setsockopt SOL_SOCKET SO_REUSEADDR', 'setsockopt SOL_TCP TCP_NODELAY',
];

t.test('under the helper\'s filter, each forbidden call kills the process with SIGSYS', async (t) => {
  const control = probe('setsockopt SOL_TCP TCP_REPAIR');
  t.match(control, { code: 0, signal: null, stdout: /^survived setsockopt SOL_TCP TCP_REPAIR: 0\n$/ }, 'the allowed call is let through');
  for (const call of FORBIDDEN) {
    const result = probe(call);
    t.match(result, { signal: 'SIGSYS', stdout: '' }, `${call}: ${result.signal ?? `exit ${result.code} ${result.stdout}${result.stderr}`}`);
  }
});

t.test('under the helper\'s filter, an allowed call made through another ABI (i386 int 0x80) kills the process', async (t) => {
  const unfiltered = (require('../../test/build/Release/passt_syscall_probe.node') as { attemptSyscall(name: string, sock: number): number }).attemptSyscall(
    'getpid through the i386 ABI',
    -1,
  );
  if (unfiltered !== process.pid) {
    t.skip(`SKIPPED LOUDLY: this kernel has no i386 ABI (int 0x80 getpid gave ${unfiltered}), so there is no other door to test`, async () => {});
    return;
  }
  t.match(probe('getpid through the i386 ABI'), { signal: 'SIGSYS', stdout: '' }, 'the whole process ends with SIGSYS, not one thread');
});

t.test('under the helper\'s filter, open and openat are refused with EACCES and open nothing', async (t) => {
  for (const call of ['open', 'openat']) {
    const result = probe(call);
    t.match(result, { code: 0, signal: null, stdout: `survived ${call}: -13\n` }, `${call}: EACCES, no descriptor`);
  }
});

const SECCOMP_MODULE = JSON.stringify(path.join(ROOT, 'dist/src/sandbox/seccomp.js'));
const ADDON_MODULE = JSON.stringify(path.join(ROOT, 'dist/src/addon.js'));
const PROBE_ADDON = JSON.stringify(path.join(ROOT, 'test/build/Release/passt_syscall_probe.node'));

t.test('the helper refuses to install its filter with an io_uring instance open', async (t) => {
  // The runtime started without the launcher sets up io_uring rings. Gate
  // 3's own calls, with a filter that allows everything: loaded only without a ring.
  const script = `
    const gate = require(${SECCOMP_MODULE});
    const check = gate.refuseIoUring();
    gate.installSeccompFilter(require(${ADDON_MODULE}).native.prepareSeccompFilter([], 'allow'), check);
    process.stdout.write(JSON.stringify(check));`;
  const bare = runClean([NODE, '-e', script]);
  t.equal(bare.status, 1);
  t.match(bare.stderr, /is an io_uring instance, which seccomp cannot filter/);
  const launched = runClean([RUNTIME_LAUNCHER, NODE, '-e', script]);
  t.equal(launched.status, 0, launched.stderr);
  t.same(JSON.parse(launched.stdout), { creatable: false }, "under the launcher's filter none can be created: the load after connect need not look again");
});

t.test('an io_uring instance created after the check before connect, where one can be, is refused at the load', async (t) => {
  // A runtime without the launcher, libuv's rings closed (each number taken
  // by /dev/null, so that the attacker's ring is a new one): the check
  // before connecting passes, and io_uring_setup still works. The attacker's ring
  // comes after the check; the load must look again and find it.
  const script = `
    const fs = require('node:fs');
    const gate = require(${SECCOMP_MODULE});
    const probe = require(${PROBE_ADDON});
    for (const fd of fs.readdirSync('/proc/self/fd')) {
      let target = '';
      try { target = fs.readlinkSync('/proc/self/fd/' + fd); } catch {}
      if (target === 'anon_inode:[io_uring]') {
        fs.closeSync(Number(fd));
        fs.openSync('/dev/null', 'r');
      }
    }
    const check = gate.refuseIoUring();
    const ring = probe.attemptSyscall('io_uring_setup', -1);
    let outcome = 'loaded';
    try {
      gate.installSeccompFilter(require(${ADDON_MODULE}).native.prepareSeccompFilter([], 'allow'), check);
    } catch (error) {
      outcome = error.message;
    }
    fs.writeSync(1, JSON.stringify({ check, ring, outcome }));
    // libuv's exit would use the rings closed under it, and abort.
    process.kill(process.pid, 'SIGKILL');`;
  const run = runClean([NODE, '-e', script]);
  t.equal(run.signal, 'SIGKILL', run.stderr);
  const { check, ring, outcome } = JSON.parse(run.stdout) as { check: { creatable: boolean }; ring: number; outcome: string };
  t.same(check, { creatable: true }, 'without the launcher, io_uring_setup works: the check before connect cannot vouch for later');
  t.ok(ring >= 0, `a ring created after the check: descriptor ${ring}`);
  t.equal(outcome, `descriptor ${ring} is an io_uring instance, which seccomp cannot filter; start the helper through bin/passt-repair`, 'the load refuses it');
  // Under the launcher the same attempt fails: no ring can follow the check.
  const launched = runClean([RUNTIME_LAUNCHER, NODE, '-e', `process.stdout.write(String(require(${PROBE_ADDON}).attemptSyscall('io_uring_setup', -1)))`]);
  t.equal(launched.stdout, '-38', 'io_uring_setup: ENOSYS under the launcher');
});

t.test('the helper runs the whole protocol under its filter: thousands of sockets, several rounds', async (t) => {
  const COUNT = 3000;
  const ROUNDS = 3;
  const loopback = await loopbackConnections(COUNT);
  t.teardown(() => loopback.close());
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'passt.repair');
  const policy = writePolicy(dir, { version: 1, rules: [{ name: 'test', sockets: [`${dir}/*.repair`], peer: { sameOwner: true } }] });
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', policy, socketPath]);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  let failures = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const command of [TCP_REPAIR_ON, TCP_REPAIR_OFF]) {
      for (let i = 0; i < COUNT; i += 253) {
        const [reply] = passt.roundTrip(sock, command, loopback.fds.slice(i, i + 253));
        if (reply !== command) failures++;
      }
      const states = repairStates(loopback.fds);
      t.equal(states.filter((state) => state === command).length, COUNT, `round ${round + 1}: every socket is in repair state ${command}`);
      if (round === 0 && command === TCP_REPAIR_ON) {
        for (const task of fs.readdirSync(`/proc/${helper.child.pid}/task`)) {
          const status = fs.readFileSync(`/proc/${helper.child.pid}/task/${task}/status`, 'utf8');
          t.match(status, /^Seccomp:\t2$/m, `thread ${task} is under the filter`);
        }
      }
    }
  }
  t.equal(failures, 0, 'every request was confirmed');
  fs.closeSync(sock);
  const exit = await helper.exited;
  t.same({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, exit.stderr);
  t.same(unusualLines(exit.stderr), [], 'only the routine audit log on stderr');
});

t.test('log mode is asked for by the policy only, and said loudly at every start', async (t) => {
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'passt.repair');
  const policy = writePolicy(dir, {
    version: 1,
    sandbox: { seccomp: 'log' },
    rules: [{ name: 'test', sockets: [`${dir}/*.repair`], peer: { sameOwner: true } }],
  });
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', policy, socketPath]);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  const loopback = await loopbackConnections(1);
  t.same(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON);
  fs.closeSync(sock);
  await loopback.close();
  const exit = await helper.exited;
  t.equal(exit.code, 0);
  t.match(exit.stderr, /WARNING: seccomp is in LOG mode/);
  t.ok(fs.existsSync(seccompFile('allowlist')));
  // In log mode the kernel lets a forbidden call through (and logs it).
  t.match(probe('socket', 'log'), { code: 0, signal: null, stdout: /^survived socket: \d+\n$/ });
});

t.test('on a terminal, the helper exits under its filter (Node restores the terminal at exit)', async (t) => {
  // script(1) gives the helper a terminal as stdin, stdout and stderr, and exits with its status.
  for (const [command, code] of [[TCP_REPAIR_ON, 0], [5, 1]] as const) {
    const dir = temporaryDirectory();
    const socketPath = path.join(dir, 'passt.repair');
    const policy = writePolicy(dir, { version: 1, rules: [{ name: 'test', sockets: [`${dir}/*.repair`], peer: { sameOwner: true } }] });
    const listener = passt.listenUnix(socketPath);
    const helper = startHelper([], ['script', '-qec', `${HELPER} --policy ${policy} ${socketPath}`, '/dev/null']);
    const sock = await acceptHelper(listener);
    fs.closeSync(listener);
    const loopback = await loopbackConnections(1);
    passt.sendRequest(sock, Buffer.from([command & 0xff]), loopback.fds);
    await awaitReply(sock);
    fs.closeSync(sock);
    await loopback.close();
    const exit = await helper.exited;
    t.same([exit.code, exit.signal], [code, null], `command ${command}: exit ${code}, not killed`);
  }
});

t.test("under the helper's filter, the runtime's warnings and a fatal error's stack still reach standard error", async (t) => {
  const script = path.join(ROOT, 'dist/test/fixtures/runtime-messages.js');
  const run = (mode: 'stand-in' | 'none') => runClean([RUNTIME_LAUNCHER, NODE, '--disable-sigusr1', '--disallow-code-generation-from-strings', script, mode]);
  // Without the stand-in, the runtime creates process.stderr (a pipe here)
  // with calls the filter forbids: the warning kills it.
  const bare = run('none');
  t.equal(bare.signal, 'SIGSYS', "the runtime's own process.stderr is killed by the filter");
  const served = run('stand-in');
  t.equal(served.signal, null, 'not killed');
  t.equal(served.status, 1, 'the uncaught exception ends it with 1');
  t.equal(served.stdout, 'warned\n');
  t.match(served.stderr, /^passt-repair: \(node:\d+\) Warning: a runtime warning after the filter$/m, 'the warning is an audit log line');
  t.match(served.stderr, /Error: a fatal error after the filter/, "the fatal error's stack is printed");
});
