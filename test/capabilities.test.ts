// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 2: what every thread of the running helper holds, read from
// /proc/PID/task/*/status while it is connected and serving.
import t, { type Test } from 'tap';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, HELPER, openDescriptors, passt, ROOT, startHelper, TCP_REPAIR_ON, writePolicy, type HelperRun, NODE, RUNTIME_LAUNCHER } from './passt-double/passt-double';
import { loopbackConnections, temporaryDirectory, unusualLines, straceMissing } from './lib';

const NET_ADMIN = 1n << 12n;
const DAC_OVERRIDE = 1n << 1n;
const NOBODY = 65534;
const SETPRIV_NET_ADMIN = [
  'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all,+net_admin', '--ambient-caps=+net_admin',
];
const SETPRIV_NOTHING = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all'];

interface Thread {
  tid: string;
  sets: Record<'CapInh' | 'CapPrm' | 'CapEff' | 'CapBnd' | 'CapAmb', bigint>;
  Uid: string;
  Gid: string;
  Groups: string;
  NoNewPrivs: string;
  Seccomp: string;
}

/** Every thread's status, parsed here independently of src/sandbox. */
function threadsOf(pid: number): Thread[] {
  return fs.readdirSync(`/proc/${pid}/task`).map((tid) => {
    const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    const line = (name: string) => (new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(status)?.[1] ?? '<missing>').trim();
    const hex = (name: string) => BigInt(`0x${line(name)}`);
    return {
      tid,
      sets: { CapInh: hex('CapInh'), CapPrm: hex('CapPrm'), CapEff: hex('CapEff'), CapBnd: hex('CapBnd'), CapAmb: hex('CapAmb') },
      Uid: line('Uid'),
      Gid: line('Gid'),
      Groups: line('Groups'),
      NoNewPrivs: line('NoNewPrivs'),
      Seccomp: line('Seccomp'),
    };
  });
}

interface Serving {
  helper: HelperRun;
  sock: number;
  threads: Thread[];
  finish(): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/**
 * Starts the helper on a socket in `socketDir` (prefixed by `wrapper`),
 * has it answer one request, then reads every thread while it still serves.
 */
async function serveOneRequest(t: Test, wrapper: string[], socketDir: string = temporaryDirectory()): Promise<Serving> {
  const policyDir = temporaryDirectory();
  fs.chmodSync(policyDir, 0o755);
  const socketPath = path.join(socketDir, 'passt.repair');
  const policy = writePolicy(policyDir, { version: 1, rules: [{ name: 'test', sockets: [`${socketDir}/*.repair`], peer: { sameOwner: false } }] });
  const listener = passt.listenUnix(socketPath);
  fs.chmodSync(socketPath, 0o777);
  const helper = startHelper(['--policy', policy, socketPath], [...wrapper, HELPER]);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  const loopback = await loopbackConnections(1);
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'a request was answered');
  const threads = threadsOf(helper.child.pid!);
  return {
    helper,
    sock,
    threads,
    async finish() {
      fs.closeSync(sock);
      await loopback.close();
      return helper.exited;
    },
  };
}

function checkSandboxed(t: Test, threads: Thread[], expected: { bounding: bigint; uid: number; gid: number }) {
  t.ok(threads.length >= 5, `${threads.length} threads, every one checked`);
  const ids = (id: number) => `${id}\t${id}\t${id}\t${id}`;
  for (const thread of threads) {
    t.same(
      thread,
      {
        tid: thread.tid,
        sets: { CapInh: 0n, CapPrm: NET_ADMIN, CapEff: NET_ADMIN, CapBnd: expected.bounding, CapAmb: 0n },
        Uid: ids(expected.uid),
        Gid: ids(expected.gid),
        Groups: thread.Groups,
        NoNewPrivs: '1',
        Seccomp: '2',
      },
      `thread ${thread.tid}`,
    );
    t.notOk(thread.Groups.split(/\s+/).includes('0'), `thread ${thread.tid} is in no group 0 (${thread.Groups || 'none'})`);
  }
}

t.test('started as root: every thread runs as nobody with CAP_NET_ADMIN alone, bounding set included', async (t) => {
  const serving = await serveOneRequest(t, []);
  checkSandboxed(t, serving.threads, { bounding: NET_ADMIN, uid: NOBODY, gid: NOBODY });
  // Not dumpable: the kernel then gives /proc/PID's files to root, not to the process's uid.
  t.equal(fs.statSync(`/proc/${serving.helper.child.pid}/status`).uid, 0, 'not dumpable');
  const held = [...openDescriptors(serving.helper.child.pid!).values()];
  t.notOk(held.includes('anon_inode:[io_uring]'), 'no io_uring instance, which seccomp could not filter');
  const exit = await serving.finish();
  t.same([exit.code, exit.signal, unusualLines(exit.stderr)], [0, null, []]);
});

t.test('started as non-root with ambient CAP_NET_ADMIN: it works and drops everything else', async (t) => {
  const socketDir = temporaryDirectory();
  fs.chmodSync(socketDir, 0o755);
  const serving = await serveOneRequest(t, SETPRIV_NET_ADMIN, socketDir);
  // Without CAP_SETPCAP the bounding set cannot shrink: it stays as given (NO_NEW_PRIVS makes it inert).
  const started = threadsOf(process.pid)[0]!.sets.CapBnd;
  checkSandboxed(t, serving.threads, { bounding: started, uid: NOBODY, gid: NOBODY });
  const exit = await serving.finish();
  t.same([exit.code, exit.signal, unusualLines(exit.stderr)], [0, null, []]);
});

t.test('started without CAP_NET_ADMIN: says so and exits 1 before connecting', async (t) => {
  const dir = temporaryDirectory();
  fs.chmodSync(dir, 0o755);
  const socketPath = path.join(dir, 'passt.repair');
  const policy = writePolicy(dir, { version: 1, rules: [{ name: 'test', sockets: [`${dir}/*.repair`], peer: { sameOwner: false } }] });
  const listener = passt.listenUnix(socketPath);
  fs.chmodSync(socketPath, 0o777);
  const helper = startHelper(['--policy', policy, socketPath], [...SETPRIV_NOTHING, HELPER]);
  const exit = await helper.exited;
  t.equal(exit.code, 1);
  t.match(exit.stderr, /^passt-repair: started without CAP_NET_ADMIN, which TCP_REPAIR needs/m);
  t.equal(passt.accept(listener, 0), -1, 'it never connected');
  fs.closeSync(listener);
});

t.test('a socket in another user\'s 0700 directory: reached as root, and no thread keeps CAP_DAC_OVERRIDE', async (t) => {
  const socketDir = temporaryDirectory();
  fs.chownSync(socketDir, 4242, 4242);
  fs.chmodSync(socketDir, 0o700);
  const serving = await serveOneRequest(t, [], socketDir);
  for (const thread of serving.threads) {
    for (const [set, mask] of Object.entries(thread.sets))
      t.equal(mask & DAC_OVERRIDE, 0n, `thread ${thread.tid}: no CAP_DAC_OVERRIDE in ${set}`);
  }
  checkSandboxed(t, serving.threads, { bounding: NET_ADMIN, uid: NOBODY, gid: NOBODY });
  const exit = await serving.finish();
  t.same([exit.code, exit.signal, unusualLines(exit.stderr)], [0, null, []]);
});

t.test('the sandbox account: looked up in passwd and group files, never one with uid or group 0', async (t) => {
  const { lookUpAccount } = await import('../src/sandbox/account');
  const dir = temporaryDirectory();
  const passwd = path.join(dir, 'passwd');
  const group = path.join(dir, 'group');
  fs.writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/sh\nhelper:x:990:990::/:/usr/sbin/nologin\nwheelie:x:991:0::/:/bin/sh\n');
  fs.writeFileSync(group, 'root:x:0:\nhelper:x:990:\nnet:x:995:other,helper\n');
  t.same(lookUpAccount('helper', passwd, group), { name: 'helper', uid: 990, gid: 990, groups: [990, 995] });
  t.throws(() => lookUpAccount('nosuch', passwd, group), /the sandbox account "nosuch" is not in/);
  t.throws(() => lookUpAccount('root', passwd, group), /has uid or group 0/);
  t.throws(() => lookUpAccount('wheelie', passwd, group), /has uid or group 0/);
});

t.test('every thread is reached, however many: libuv\'s thread pool and a worker thread included', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const capabilities = path.join(ROOT, 'dist/src/sandbox/capabilities.js');
  // Starts the thread pool (an fs promise: 4 threads) and a worker thread, then runs gate 2: 6 + 4 + 1 threads.
  const script = `
    const fs = require('node:fs');
    const { Worker } = require('node:worker_threads');
    const gate = require(${JSON.stringify(capabilities)});
    (async () => {
      await fs.promises.readFile('/etc/hostname');
      const worker = new Worker('setInterval(() => {}, 1000)', { eval: true });
      await new Promise((resolve) => worker.once('online', resolve));
      const privileges = gate.dropToReachSocket('nobody');
      gate.dropToNetAdmin(privileges);
      process.stdout.write(String(fs.readdirSync('/proc/self/task').length));
      process.exit(0);
    })();`;
  const result = spawnSync('env', ['-i', RUNTIME_LAUNCHER, NODE, '--disable-sigusr1', '-e', script], { encoding: 'utf8' });
  t.equal(result.status, 0, result.stderr);
  t.ok(Number(result.stdout) >= 11, `${result.stdout} threads, each verified from its /proc status`);
});

/** Runs `script` on the helper's runtime, in the sandbox its launcher gives it, prefixed by `wrapper`; resolves once it exits, with its stdout lines (JSON), each also handed to `onLine` as it comes. */
async function runOnRuntime(script: string, wrapper: string[] = [], onLine: (line: Record<string, unknown>, child: ChildProcess) => void = () => {}) {
  const [program, ...args] = [...wrapper, RUNTIME_LAUNCHER, NODE, '--disable-sigusr1', '-e', script];
  const child = spawn(program!, args, { stdio: ['pipe', 'pipe', 'pipe'], env: {} });
  const lines: Record<string, unknown>[] = [];
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    for (let end = stdout.indexOf('\n'); end >= 0; end = stdout.indexOf('\n')) {
      const line = JSON.parse(stdout.slice(0, end)) as Record<string, unknown>;
      stdout = stdout.slice(end + 1);
      lines.push(line);
      onLine(line, child);
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, stderr, lines };
}

/** A script's preamble: gate 2's module, and a worker thread started on demand with its thread id (the one thread that was not there before). */
const WORKER_PREAMBLE = `
  const fs = require('node:fs');
  const { Worker } = require('node:worker_threads');
  const gate = require(${JSON.stringify(path.join(ROOT, 'dist/src/sandbox/capabilities.js'))});
  const tasks = () => new Set(fs.readdirSync('/proc/self/task').map(Number));
  const say = (line) => process.stdout.write(JSON.stringify(line) + '\\n');
  // Descriptors of /proc/self/task/TID directories: what the first step holds.
  const heldThreads = () => fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return /^\\/proc\\/\\d+\\/task\\/\\d+$/.test(fs.readlinkSync('/proc/self/fd/' + fd));
    } catch {
      return false; // the listing's own descriptor, closed since
    }
  }).length;
  async function startThread() {
    const before = tasks();
    const worker = new Worker('setInterval(() => {}, 1000)', { eval: true });
    await new Promise((resolve) => worker.once('online', resolve));
    return { worker, tid: [...tasks()].find((tid) => !before.has(tid)) };
  }
  function secondStep(privileges) {
    try {
      gate.dropToNetAdmin(privileges);
      return 'dropped';
    } catch (error) {
      return error.message;
    }
  }`;

t.test('a thread the main thread starts between the two steps inherits its privileges: the second step refuses', async (t) => {
  // The first step takes every other thread to the final state; the main
  // thread keeps what connecting needs. A thread it starts now (here a
  // worker, as Node could start its thread pool) is a copy of it.
  const script = `${WORKER_PREAMBLE}
    (async () => {
      const privileges = gate.dropToReachSocket('nobody');
      const late = await startThread();
      const held = heldThreads();
      say({ late: late.tid, uid: fs.readFileSync('/proc/self/task/' + late.tid + '/status', 'utf8').match(/^Uid:\\s*(\\d+)/m)[1], outcome: secondStep(privileges), held, left: heldThreads() });
      process.exit(0);
    })();`;
  const { code, stderr, lines } = await runOnRuntime(script);
  t.equal(code, 0, stderr);
  const [result] = lines as [{ late: number; uid: string; outcome: string; held: number; left: number }];
  t.equal(result.uid, '0', 'the late thread runs as uid 0, as the main thread did when it started it');
  t.match(result.outcome, new RegExp(`^thread ${result.late} started after gate 2's first step`), 'refused, naming the thread');
  t.ok(result.held >= 5, `the first step held ${result.held} threads`);
  t.equal(result.left, 0, 'refused, the second step still closed every descriptor holding a thread');
});

t.test('a thread whose status cannot be read (a full descriptor table) is refused, never taken for exited', async (t) => {
  // Each thread is held by one descriptor and its status read through a
  // second, closed at once. With as many free slots as threads, every hold
  // succeeds but the last thread's status open fails with EMFILE: a live
  // thread that would never be read back. Only ENOENT/ESRCH (the thread
  // exited) may skip the read-back.
  const script = `${WORKER_PREAMBLE}
    const threads = tasks().size;
    const filler = [];
    try {
      for (;;) filler.push(fs.openSync('/dev/null', 'r'));
    } catch (error) {
      if (error.code !== 'EMFILE') throw error;
    }
    for (let i = 0; i < threads; i++) fs.closeSync(filler.pop());
    let outcome;
    try {
      gate.dropToReachSocket('nobody');
      outcome = 'dropped';
    } catch (error) {
      outcome = error.message;
    }
    for (const fd of filler) fs.closeSync(fd);
    say({ outcome });
    process.exit(0);`;
  const { code, stderr, lines } = await runOnRuntime(script, ['prlimit', '--nofile=256:256']);
  t.equal(code, 0, stderr);
  const [result] = lines as [{ outcome: string }];
  t.match(result.outcome, /^cannot read back thread \d+'s credentials: too many open files/, 'refused, naming the thread and the reason');
});

t.test('a thread that reuses the id of one the first step verified is caught too', async (t) => {
  // In a pid namespace of its own, the script's thread A is verified by the
  // first step, then exits; the test sets the namespace's last pid so that
  // the next thread the main thread starts, B, gets A's id. A list of ids
  // would take B for A: the helper holds each verified thread's /proc entry,
  // which no later thread can stand for.
  const script = `${WORKER_PREAMBLE}
    (async () => {
      const a = await startThread();
      const privileges = gate.dropToReachSocket('nobody');
      await a.worker.terminate();
      while (tasks().has(a.tid)) await new Promise((resolve) => setTimeout(resolve, 1));
      say({ exited: a.tid });
      await new Promise((resolve) => process.stdin.once('data', resolve));
      const b = await startThread();
      say({ started: b.tid, outcome: secondStep(privileges) });
      process.exit(0);
    })();`;
  const { code, stderr, lines } = await runOnRuntime(script, ['unshare', '--pid', '--fork', '--mount-proc'], (line, child) => {
    if (line.exited === undefined) return;
    // The runtime is unshare's child; ns_last_pid is written from inside its pid namespace.
    const runtime = fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim();
    execFileSync('nsenter', ['--target', runtime, '--pid', '--', 'sh', '-c', `echo ${(line.exited as number) - 1} > /proc/sys/kernel/ns_last_pid`]);
    child.stdin!.write('go\n');
  });
  t.equal(code, 0, stderr);
  const [exited, second] = lines as [{ exited: number }, { started: number; outcome: string }];
  t.equal(second.started, exited.exited, `thread B got thread A's id ${exited.exited}`);
  t.match(second.outcome, new RegExp(`^thread ${second.started} started after gate 2's first step`), 'refused, naming the thread');
});

t.test('before connecting, every thread but the main one is already in its final state (held in connect(2) by strace)', { skip: straceMissing() }, async (t) => {
  const socketDir = temporaryDirectory();
  const socketPath = path.join(socketDir, 'passt.repair');
  const policy = writePolicy(temporaryDirectory(), { version: 1, rules: [{ name: 'test', sockets: [`${socketDir}/*.repair`], peer: { sameOwner: false } }] });
  const listener = passt.listenUnix(socketPath);
  // connect(2) returns 2 s late: passt has accepted, gate 4 and the second step have not run.
  const helper = startHelper(['--policy', policy, socketPath], ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=connect', '-e', 'inject=connect:delay_exit=2000000', HELPER]);
  let stderr = '';
  helper.child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const sock = await acceptHelper(listener, 20_000);
  fs.closeSync(listener);
  const pid = Number(/start: passt-repair \S+, pid (\d+)/.exec(stderr)![1]);
  const held = threadsOf(pid);
  t.notMatch(stderr, /connected to /, 'held before gate 4');
  const main = held.find((thread) => Number(thread.tid) === pid)!;
  t.equal(main.Uid, '0\t0\t0\t0', 'the main thread still runs as root');
  t.not(main.sets.CapEff & DAC_OVERRIDE, 0n, 'and keeps what reaching the socket needs');
  // It limits only what execve() could grant, so the main thread needs no
  // room in it for what it holds until the second step, which then has none to drop.
  t.equal(main.sets.CapBnd, NET_ADMIN, "the main thread's bounding set is already CAP_NET_ADMIN alone");
  const others = held.filter((thread) => thread !== main);
  t.ok(others.length >= 4, `${others.length} other threads`);
  for (const thread of others)
    t.same(
      [thread.sets, thread.Uid, thread.Gid, thread.NoNewPrivs],
      [{ CapInh: 0n, CapPrm: NET_ADMIN, CapEff: NET_ADMIN, CapBnd: NET_ADMIN, CapAmb: 0n }, `${NOBODY}\t${NOBODY}\t${NOBODY}\t${NOBODY}`, `${NOBODY}\t${NOBODY}\t${NOBODY}\t${NOBODY}`, '1'],
      `thread ${thread.tid} is already nobody with CAP_NET_ADMIN alone`,
    );
  const loopback = await loopbackConnections(1);
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'then served');
  checkSandboxed(t, threadsOf(pid), { bounding: NET_ADMIN, uid: NOBODY, gid: NOBODY });
  fs.closeSync(sock);
  await loopback.close();
  const exit = await helper.exited;
  t.same([exit.code, exit.signal], [0, null]);
});
