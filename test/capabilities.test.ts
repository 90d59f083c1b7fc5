// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 2: what every thread of the running helper holds, read from
// /proc/PID/task/*/status while it is connected and serving.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, HELPER, openDescriptors, passt, ROOT, startHelper, TCP_REPAIR_ON, writePolicy, type HelperRun, NODE, RUNTIME_LAUNCHER } from './passt-double/passt-double';
import { loopbackConnections, temporaryDirectory, unusualLines } from './lib';

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
