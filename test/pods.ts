// SPDX-License-Identifier: GPL-2.0-or-later
// What gate 1's attack and KubeVirt tests share: passt's side in a mount
// namespace of its own (a virt-launcher as uid 107, or an unprivileged
// user's namespace), and the real helper held still between two of its
// path-resolution steps by strace's fault injection.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HELPER, startHelper, type HelperRun } from './passt-double/passt-double';
import { NOBODY, temporaryDirectory } from './lib';

/** passt's side in a pod (test/fixtures/pod-passt.ts): its pid lends its root. */
export interface Pod {
  pid: number;
  child: ChildProcess;
  /** Tells it to listen on its socket path; resolves once it does. */
  listen(): Promise<void>;
  /** In "hold" mode: waits until a helper is connected, then lets it serve that helper. */
  accepted(): Promise<void>;
  serve(): void;
  /** Tells it to stop; what it served and the ids it ran with. */
  end(): Promise<PodResult>;
}

export interface PodResult {
  served: { on: number | null; statesOn: number[]; off: number | null; statesOff: number[] }[];
  uid: number;
  gid: number;
}

const FIXTURE = path.join(__dirname, 'fixtures/pod-passt.js');
export const QEMU = 107;

async function startPodProcess(command: string, args: string[]): Promise<Pod> {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const waitFor = async (line: string) => {
    while (!output.includes(`${line}\n`)) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the pod exited early: ${output}`);
      await sleep(5);
    }
  };
  await waitFor('ready');
  return {
    pid: child.pid!,
    child,
    accepted: () => waitFor('accepted'),
    serve() {
      child.stdin!.write('serve\n');
    },
    async listen() {
      child.stdin!.write('listen\n');
      await waitFor('listening');
    },
    async end() {
      child.stdin!.end('end\n');
      await closed;
      return JSON.parse(output.split('\n').find((line) => line.startsWith('{'))!) as PodResult;
    },
  };
}

/**
 * A virt-launcher: its own mount namespace (private propagation) whose /run
 * and /var are tmpfs mounts the host does not see, /var/run -> ../run
 * (relative, as in Fedora-based launcher images), and
 * /run/libvirt/qemu/run/passt owned by uid 107; passt's side runs there as
 * uid/gid 107 and listens on `insidePath`.
 */
export function startVirtLauncher(insidePath: string, hold = false): Promise<Pod> {
  const script = [
    'mount -t tmpfs -o mode=0755 pod-run /run',
    'mount -t tmpfs -o mode=0755 pod-var /var',
    'ln -s ../run /var/run',
    'mkdir -p /run/libvirt/qemu/run/passt',
    `chown -R ${QEMU}:${QEMU} /run/libvirt`,
    `exec setpriv --reuid=${QEMU} --regid=${QEMU} --clear-groups "$@"`,
  ].join(' && ');
  return startPodProcess('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', process.execPath, FIXTURE, insidePath, ...(hold ? ['hold'] : [])]);
}

/**
 * An unprivileged user's (uid 65534) own user and mount namespace, with a
 * private /run presenting the same inside paths as a virt-launcher (and
 * libvirt's /run/libvirt/qemu/passt): nothing a helper should serve.
 */
export function startUserNamespace(insidePath: string): Promise<Pod> {
  const script = ['mount -t tmpfs user-run /run', 'mkdir -p /run/libvirt/qemu/run/passt /run/libvirt/qemu/passt', 'exec "$@"'].join(' && ');
  return startPodProcess('setpriv', [
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    '--clear-groups',
    'unshare',
    '-Urm',
    '--propagation',
    'private',
    'sh',
    '-c',
    script,
    'sh',
    process.execPath,
    FIXTURE,
    insidePath,
  ]);
}

/** passt's side on the host as uid 65534, listening on `socketPath`. */
export async function startNobodyPasst(socketPath: string): Promise<Pod> {
  const pod = await startPodProcess('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, FIXTURE, socketPath]);
  await pod.listen();
  return pod;
}

/** A policy file as an administrator installs it: a root-owned 0644 copy in a root-owned directory. */
export function installPolicy(source: string): string {
  const file = path.join(temporaryDirectory(), 'policy.json');
  fs.copyFileSync(source, file);
  fs.chmodSync(file, 0o644);
  return file;
}

/** The helper, stopped by SIGSTOP right after its `n`-th openat2() returns. */
export interface StoppedHelper extends HelperRun {
  /** The helper's pid, once it is stopped there. */
  stopped: Promise<number>;
  /** Lets it go on; resolves once it has. */
  resume(): Promise<void>;
}

/**
 * Runs the real helper under `strace -f -e inject=openat2:signal=SIGSTOP:when=N`:
 * gate 1 is the helper's only user of openat2 (one call for "/" of the
 * root it resolves in, then one per component, in order), so the N-th call
 * is a known step of the walk. strace delivers SIGSTOP as that call
 * returns; the helper stays stopped until resume(), whatever the machine's
 * speed: the test changes the file system exactly between two steps.
 */
export function startStoppedHelper(args: readonly string[], n: number): StoppedHelper {
  const log = path.join(temporaryDirectory(), 'strace.log');
  const run = startHelper(args, ['strace', '-f', '-qq', '-o', log, '-e', 'trace=openat2', '-e', `inject=openat2:signal=SIGSTOP:when=${n}`, HELPER]);
  const read = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '');
  let pid: number | undefined;
  const stopped = (async () => {
    for (;;) {
      const text = read();
      // strace pads pids to five columns.
      const signalled = /^(\d+) +--- SIGSTOP \{/m.exec(text);
      // The thread that walks (the one that got SIGSTOP) is in group-stop:
      // the file system can change now; no other thread resolves paths.
      if (signalled !== null && new RegExp(`^${signalled[1]} +--- stopped by SIGSTOP ---$`, 'm').test(text)) return (pid = Number(signalled[1]));
      if (run.child.exitCode !== null) throw new Error(`the helper exited before its openat2 #${n}:\n${text}`);
      await sleep(5);
    }
  })();
  return {
    ...run,
    stopped,
    async resume() {
      // strace reports a thread's group-stop before it makes it listen
      // (PTRACE_LISTEN); a SIGCONT in between can be lost, so it is sent
      // again until strace logs the helper's SIGCONT.
      while (!read().includes('--- SIGCONT') && run.child.exitCode === null) {
        process.kill(pid!, 'SIGCONT');
        await sleep(20);
      }
    },
  };
}

/** Which openat2() call of a host path's walk opens the last component of `prefix` ("/" is the first). */
export function walkStep(prefix: string): number {
  return 1 + prefix.split('/').filter((name) => name !== '').length;
}
