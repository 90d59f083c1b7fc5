// SPDX-License-Identifier: GPL-2.0-or-later
// The telemetry forwarder is never privileged, from its first instruction,
// and cannot make the kernel signal the helper (which runs as the same
// account) through a descriptor it owns: attacked from inside its real
// sandbox (test/fixtures/forwarder-probe.ts, started by the reporter's own
// spawnForwarder), and observed at the earliest moments there are (strace
// stops it as each execve returns, before the new program's first
// instruction).
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { constants } from 'node:os';
import { acceptHelper, HELPER, passt, ROOT, startHelper, TCP_REPAIR_ON, TCP_REPAIR_OFF, writePolicy, type HelperRun, NODE, LAUNCHER, RUNTIME_LAUNCHER } from './passt-double/passt-double';
import { NOBODY, loopbackConnections, temporaryDirectory, type Loopback } from './lib';
import { startReceiver } from './fixtures/sentry-receiver';

const REPORTER = path.join(ROOT, 'dist/src/telemetry/reporter.js');
const PROBE = path.join(ROOT, 'dist/test/fixtures/forwarder-probe.js');
const FORWARDER = path.join(ROOT, 'dist/src/telemetry/forwarder.js');

let loopback: Loopback;
t.before(async () => {
  loopback = await loopbackConnections(1);
});
t.teardown(() => loopback.close());

interface Serving {
  helper: HelperRun;
  sock: number;
  pid: number;
}

/** A real helper, started as root, serving as "nobody" (named, so that a passt-repair account on the machine changes nothing). */
async function servingHelper(t: Test, extra: object = {}, command?: readonly string[]): Promise<Serving> {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'passt.repair');
  const policy = writePolicy(dir, { version: 1, sandbox: { user: 'nobody' }, ...extra, rules: [{ name: 'test', sockets: [`${dir}/*.repair`], peer: {} }] });
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', policy, socketPath], command);
  const sock = await acceptHelper(listener, 30_000);
  fs.closeSync(listener);
  return { helper, sock, pid: helper.child.pid! };
}

/** Runs `command` with the target pid on its standard input; resolves with its output. */
function run(command: readonly string[], target: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command[0]!, command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.end(`${target}\n`);
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

function uidOf(pid: number): number {
  return Number(/^Uid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

t.test('the attack is real: a process of the helper\'s uid, unfiltered, kills the serving helper with F_SETOWN + F_SETSIG SIGKILL + O_ASYNC', async (t) => {
  const { helper, sock, pid } = await servingHelper(t);
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'serving');
  t.equal(uidOf(pid), NOBODY, 'the helper runs as nobody');
  const bare = await run(['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'env', '-i', RUNTIME_LAUNCHER, NODE, PROBE, '--bare'], pid);
  t.equal(bare.code, 0, bare.stderr);
  t.same(JSON.parse(bare.stdout).attempts, { F_SETOWN: [0, 0, 0, 0] }, 'every step succeeded');
  const { signal } = await helper.exited;
  t.equal(signal, 'SIGKILL', 'the helper was killed');
  fs.closeSync(sock);
});

t.test('inside the forwarder\'s sandbox: no descriptor owner, no F_SETSIG; the helper serves on', async (t) => {
  const { helper, sock, pid } = await servingHelper(t);
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'serving');
  // The reporter's own spawnForwarder, from a process on the helper's runtime.
  const driver = `
    const { spawnForwarder } = require(${JSON.stringify(REPORTER)});
    const child = spawnForwarder(${JSON.stringify(PROBE)}, 'nobody', [0, 1, 2]);
    child.on('exit', (code, signal) => { process.exitCode = code ?? 1; });
  `;
  const probe = await run(['env', '-i', RUNTIME_LAUNCHER, NODE, '--disable-sigusr1', '-e', driver], pid);
  t.equal(probe.code, 0, probe.stderr);
  const report = JSON.parse(probe.stdout) as { uid: string; capEff: string; capPrm: string; noNewPrivs: string; seccomp: string; attempts: Record<string, number[]> };
  t.same([report.uid, report.capEff, report.capPrm, report.noNewPrivs, report.seccomp], [`${NOBODY}\t${NOBODY}\t${NOBODY}\t${NOBODY}`, '0000000000000000', '0000000000000000', '1', '2'], 'the probe runs as the forwarder does');
  const EPERM = -constants.errno.EPERM;
  for (const how of ['F_SETOWN', 'F_SETOWN_EX', 'FIOSETOWN', 'SIOCSPGRP'])
    t.same(report.attempts[how]!.slice(0, 2), [EPERM, EPERM], `${how}: refused (EPERM), and so is F_SETSIG`);
  t.same(report.attempts.TIOCSPGRP, [EPERM], 'TIOCSPGRP: refused before the descriptor is even looked at');
  for (const command of [TCP_REPAIR_OFF, TCP_REPAIR_ON, TCP_REPAIR_OFF]) t.equal(passt.roundTrip(sock, command, loopback.fds)[0], command, `still serving (${command})`);
  fs.closeSync(sock);
  const exit = await helper.exited;
  t.same([exit.code, exit.signal], [0, null], 'the helper ends as passt asked');
});

/** A process's status fields. */
function statusOf(pid: number): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields[line.slice(colon > 0 ? 0 : 0, colon)] = line.slice(colon + 1).trim();
  }
  return fields;
}

/** Every process below `root` (by PPid), `root` excluded. */
function descendants(root: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      parents.set(Number(entry), Number(/^PPid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${entry}/status`, 'utf8'))![1]));
    } catch {
      // gone
    }
  }
  const below = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, parent] of parents)
      if (below.has(parent) && !below.has(pid)) {
        below.add(pid);
        grew = true;
      }
  }
  below.delete(root);
  return [...below];
}

interface Stop {
  pid: number;
  exe: string;
  cmdline: string;
  status: Record<string, string>;
}

t.test('the forwarder, held at each execve: never root, no capability; under NO_NEW_PRIVS and its filter before its runtime starts', async (t) => {
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  // Every execve of the helper and its children stops the caller with
  // SIGSTOP; the test reads its credentials, then lets it go on.
  const strace = ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=execve', '-e', 'inject=execve:signal=SIGSTOP', HELPER];
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'passt.repair');
  const policy = writePolicy(dir, { version: 1, sandbox: { user: 'nobody' }, telemetry: { sentry: { dsn: receiver.dsn } }, rules: [{ name: 'test', sockets: [`${dir}/*.repair`], peer: {} }] });
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', policy, socketPath], strace);
  t.teardown(() => helper.child.kill('SIGKILL'));
  const stops: Stop[] = [];
  const seen = new Set<string>();
  let done = false;
  const release = (async () => {
    while (!done) {
      for (const pid of descendants(helper.child.pid!)) {
        try {
          const status = statusOf(pid);
          if (!/^[tT]/.test(status.State ?? '')) continue;
          const exe = fs.readlinkSync(`/proc/${pid}/exe`);
          const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
          const key = `${pid} ${exe} ${cmdline}`;
          if (!seen.has(key)) {
            seen.add(key);
            stops.push({ pid, exe, cmdline, status });
          }
          process.kill(pid, 'SIGCONT');
        } catch {
          // gone meanwhile
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  const sock = await acceptHelper(listener, 30_000);
  fs.closeSync(listener);
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'served under strace');
  fs.closeSync(sock);
  const exit = await helper.exited;
  done = true;
  await release;
  t.equal(exit.code, 0, exit.stderr);

  // strace delivers the SIGSTOP as the execve returns: each stop is a
  // program just executed, before its first instruction.
  const forwarder = stops.filter((stop) => stop.cmdline.includes(FORWARDER));
  const atLauncher = forwarder.filter((stop) => stop.exe === LAUNCHER);
  const atRuntime = forwarder.filter((stop) => stop.exe === NODE);
  t.equal(atLauncher.length, 1, 'the forwarder held as its launcher starts');
  t.equal(atRuntime.length, 1, 'the forwarder held as its runtime starts');
  // The helper's own runtime (its launcher is the command strace starts).
  const helperRuntime = stops.find((stop) => stop.exe === NODE && stop.cmdline.includes('dist/src/main.js'));
  t.equal(atLauncher[0]?.status.PPid, String(helperRuntime?.pid), 'a child of the helper');
  const unprivileged = { Uid: `${NOBODY}\t${NOBODY}\t${NOBODY}\t${NOBODY}`, Gid: `${NOBODY}\t${NOBODY}\t${NOBODY}\t${NOBODY}`, Groups: '', CapInh: '0000000000000000', CapPrm: '0000000000000000', CapEff: '0000000000000000', CapAmb: '0000000000000000' };
  for (const [what, stop] of [['its launcher, before its first instruction', atLauncher[0]], ['its runtime, before its first instruction', atRuntime[0]]] as const) {
    if (stop === undefined) continue;
    const { Uid, Gid, Groups, CapInh, CapPrm, CapEff, CapAmb } = stop.status;
    t.same({ Uid, Gid, Groups, CapInh, CapPrm, CapEff, CapAmb }, unprivileged, `${what}: the sandbox account, no group, no capability`);
  }
  t.same([atRuntime[0]?.status.NoNewPrivs, atRuntime[0]?.status.Seccomp], ['1', '2'], 'its runtime, before its first instruction: NO_NEW_PRIVS, under seccomp');
});
