// SPDX-License-Identifier: GPL-2.0-or-later
// What the end-to-end tests share: real loopback TCP connections, a
// listening repair socket in a fresh directory, and the real helper.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { acceptHelper, passt, startHelper, writePolicy, type HelperRun } from './passt-double/passt-double';

export interface Loopback {
  /** The client ends' descriptors: what the tests pass to the helper. */
  fds: number[];
  close(): Promise<void>;
}

/** Opens `count` live TCP connections on 127.0.0.1. */
export async function loopbackConnections(count: number): Promise<Loopback> {
  const accepted: net.Socket[] = [];
  const server = net.createServer((socket) => accepted.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const clients: net.Socket[] = [];
  for (let i = 0; i < count; i++) {
    const client = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
    clients.push(client);
  }
  const fds = clients.map((client) => (client as unknown as { _handle: { fd: number } })._handle.fd);
  return {
    fds,
    async close() {
      for (const socket of [...clients, ...accepted]) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Every directory temporaryDirectory() made in this process: removed when it exits. */
const temporaryDirectories: string[] = [];
process.on('exit', () => {
  for (const dir of temporaryDirectories) fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * A fresh directory under os.tmpdir(), mode 0700, removed with everything in
 * it when the test process exits (however its tests ended), so that no test
 * file leaves one behind. Remove a large one sooner with fs.rmSync.
 */
export function temporaryDirectory(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'passt-repair-test-'));
  temporaryDirectories.push(dir);
  return dir;
}

/**
 * A policy for the tests: any socket or directory under the temporary
 * directory, served to a peer that owns the socket file (the rule's default).
 */
export const TEST_POLICY = writePolicy(temporaryDirectory(), {
  version: 1,
  rules: [{ name: 'tests', sockets: [`${os.tmpdir()}/**`], directories: [`${os.tmpdir()}/**`], peer: {} }],
});

/** The real helper under the tests' policy. */
export function startTestHelper(args: readonly string[], command?: readonly string[]): HelperRun {
  return startHelper(['--policy', TEST_POLICY, ...args], command);
}

export interface Session {
  helper: HelperRun;
  /** The accepted connection from the helper. */
  sock: number;
  dir: string;
}

/** Listens on DIR/passt.repair, starts the helper on it (through `command`, if given: startHelper's) and accepts it. */
export async function startSession(helperArgs: (socketPath: string, dir: string) => string[] = (p) => [p], command?: readonly string[]): Promise<Session> {
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'passt.repair');
  const listener = passt.listenUnix(socketPath);
  const helper = startTestHelper(helperArgs(socketPath, dir), command);
  try {
    const sock = await acceptHelper(listener, command === undefined ? undefined : 20_000);
    return { helper, sock, dir };
  } finally {
    fs.closeSync(listener);
  }
}

/** A tap skip message when strace (whose fault and delay injection holds the helper between two steps) is missing; false when it is there. */
export function straceMissing(): string | false {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'SKIPPED: strace is not installed (./run installs it: DEBIAN_PACKAGES)';
  }
}

export function repairStates(fds: readonly number[]): number[] {
  return fds.map((fd) => passt.repairState(fd));
}

/** The audit log's routine lines (text format) in a run that went well. */
const ROUTINE = /^passt-repair: (start: |connected to |TCP_REPAIR_(ON|OFF|OFF_NO_WP): \d+ request|end: passt closed the connection;)/;

/** The lines of a helper's stderr that are not its routine audit log: warnings, refusals, errors, the failed end line. */
export function unusualLines(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line !== '' && !ROUTINE.test(line));
}


/** The unprivileged account passt's side runs as in the other-uid tests (setpriv). */
export const NOBODY = 65534;

/** A directory uid 65534 owns, under a 0711 parent of root's: where passt's side as nobody creates its socket. */
export function nobodyDirectory(name = 'passt'): string {
  const parent = temporaryDirectory();
  fs.chmodSync(parent, 0o711);
  const dir = path.join(parent, name);
  fs.mkdirSync(dir);
  fs.chownSync(dir, NOBODY, NOBODY);
  return dir;
}

export interface NobodyListener {
  pid: number;
  /** What it printed once done: the reply to its one TCP_REPAIR_ON (null when refused) and the ids it ran with. */
  finished: Promise<{ reply: number | null; uid: number; gid: number }>;
}

/** passt's side as uid/gid 65534 (test/fixtures/passt-listener.ts); listening on `socketPath` once this resolves. */
export async function listenAsNobody(socketPath: string): Promise<NobodyListener> {
  const listener = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, path.join(__dirname, 'fixtures/passt-listener.js'), socketPath], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  listener.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const closed = new Promise<void>((resolve) => listener.on('close', () => resolve()));
  while (!output.includes('listening\n')) {
    if (listener.exitCode !== null) throw new Error('the listener exited early');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return { pid: listener.pid!, finished: closed.then(() => JSON.parse(output.split('\n')[1]!) as { reply: number | null; uid: number; gid: number }) };
}
