// SPDX-License-Identifier: GPL-2.0-or-later
// npm run demo: migrates a live TCP connection from one process to another
// through the helper, as passt does during a VM's live migration.
//
// This process runs a TCP server on 127.0.0.1 and plays orchestrator (the
// part libvirt or KubeVirt play); two child processes play passt's part on
// the source and on the target (role.ts); bin/passt-repair runs for each side.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { HELPER, ROOT, startHelper, TCP_REPAIR_OFF, TCP_REPAIR_ON, type HelperRun } from '../test/passt-double/passt-double';
import type { PortableState, Request, Response, RoleCommands, RoleIdentity, RoleName } from './role-protocol';

const ROLE_SCRIPT = path.join(__dirname, 'role.js');
/** nobody: passt's part runs without any privilege when the demo runs as root. */
const UNPRIVILEGED_ID = 65534;
/** Every request to a role and every helper exit is awaited at most this long. */
const STEP_TIMEOUT_MS = 15_000;

const MESSAGES = {
  toServerBefore: 'hello server, from the source, before migration',
  toSourceBefore: 'hello source, from the server, before migration',
  queuedDuringMigration: 'sent by the server while the source was stopped: carried in the receive queue',
  toTargetAfter: 'hello target, from the server, after migration',
  toServerAfter: 'hello server, from the target, after migration',
};

export interface HelperExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** What the migration showed; migrate() has already checked every field and thrown on a failure. */
export interface MigrationReport {
  roles: Record<RoleName, RoleIdentity>;
  rolesUnprivileged: boolean;
  helperExits: Record<RoleName, HelperExit>;
  /** The text each end received, by step. */
  received: {
    byServerBefore: string;
    bySourceBefore: string;
    byTargetFromQueue: string;
    byTargetAfter: string;
    byServerAfter: string;
  };
  sourceLocalPort: number;
  targetLocalPort: number;
  /** The remote port of the one connection the server accepted. */
  serverRemotePort: number;
  connectionsAccepted: number;
  /** True when the target's bytes arrived on the very net.Socket the source's did. */
  sameServerConnection: boolean;
  /** 'end', 'close' or 'error' events on the server's connection; none, if the migration was silent. */
  serverConnectionEvents: string[];
}

function within<T>(promise: Promise<T>, what: string, timeoutMs = STEP_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function describeExit(exit: HelperExit): string {
  const how = exit.code === null ? `was killed by ${exit.signal}` : `exited ${exit.code}`;
  return exit.stderr.trim() ? `${how}: ${exit.stderr.trim()}` : how;
}

/** How long a failed step waits for the helper's exit, whose stderr usually says why the step failed. */
const HELPER_VERDICT_MS = 2_000;

/**
 * Runs `work` while the helper is expected to stay up. If the helper exits
 * first, that is the failure to report; if `work` fails (a refused request,
 * say), the helper's own explanation is added when it exits soon after.
 */
async function whileHelperRuns<T>(helper: HelperRun, side: RoleName, work: Promise<T>): Promise<T> {
  const exitedEarly = helper.exited.then((exit) => {
    throw new Error(`the ${side} helper ${describeExit(exit)}`);
  });
  try {
    return await Promise.race([work, exitedEarly]);
  } catch (error) {
    const exit = await within(helper.exited, 'helper exit', HELPER_VERDICT_MS).catch(() => undefined);
    if (exit === undefined || (error instanceof Error && error.message.startsWith(`the ${side} helper`))) throw error;
    throw new Error(`${error instanceof Error ? error.message : String(error)}; the ${side} helper ${describeExit(exit)}`);
  }
}

async function helperExit(helper: HelperRun, side: RoleName): Promise<HelperExit> {
  const exit = await within(helper.exited, `the ${side} helper's exit`);
  if (exit.code !== 0) throw new Error(`the ${side} helper ${describeExit(exit)}`);
  return exit;
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** A role process and the requests it serves. */
class Role {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (result: unknown) => void; reject: (error: Error) => void }>();
  private nextId = 1;
  private stderr = '';
  private failure: string | undefined;

  constructor(
    readonly name: RoleName,
    unprivileged: boolean,
  ) {
    const command = [process.execPath, ROLE_SCRIPT, name];
    if (unprivileged)
      command.unshift('setpriv', `--reuid=${UNPRIVILEGED_ID}`, `--regid=${UNPRIVILEGED_ID}`, '--clear-groups');
    this.child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], cwd: ROOT });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.child.on('message', (response: Response) => {
      const waiting = this.pending.get(response.id);
      this.pending.delete(response.id);
      if ('error' in response) waiting?.reject(new Error(response.error));
      else waiting?.resolve(response.result);
    });
    this.child.on('exit', (code, signal) =>
      this.fail(`the ${name} process exited (${code ?? signal})${this.stderr.trim() ? `: ${this.stderr.trim()}` : ''}`),
    );
    // Emitted when the process cannot be started (setpriv missing, say) or a message cannot be sent.
    this.child.on('error', (error) => this.fail(`the ${name} process: ${error.message}`));
  }

  private fail(why: string): void {
    this.failure ??= why;
    for (const waiting of this.pending.values()) waiting.reject(new Error(why));
    this.pending.clear();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  call<K extends keyof RoleCommands>(
    command: K,
    ...argument: Parameters<RoleCommands[K]>
  ): Promise<Awaited<ReturnType<RoleCommands[K]>>> {
    const id = this.nextId++;
    const answer = new Promise<unknown>((resolve, reject) => {
      if (this.failure !== undefined) return reject(new Error(this.failure));
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, command, argument: argument[0] } as Request);
    });
    return within(answer, `${this.name}: ${command}`) as Promise<Awaited<ReturnType<RoleCommands[K]>>>;
  }

  stop(): void {
    if (this.child.connected) this.child.disconnect();
    if (isRunning(this.child)) this.child.kill();
  }
}

interface AcceptedConnection {
  socket: net.Socket;
  remotePort: number;
  received: Buffer;
  events: string[];
  dataArrived: () => void;
}

/** The server side: a plain TCP server that knows nothing of the migration. */
class Server {
  readonly accepted: AcceptedConnection[] = [];
  private readonly server = net.createServer((socket) => {
    const connection: AcceptedConnection = {
      socket,
      remotePort: socket.remotePort!,
      received: Buffer.alloc(0),
      events: [],
      dataArrived: () => {},
    };
    socket.on('data', (chunk: Buffer) => {
      connection.received = Buffer.concat([connection.received, chunk]);
      connection.dataArrived();
    });
    for (const event of ['end', 'close', 'error']) socket.on(event, () => connection.events.push(event));
    this.accepted.push(connection);
  });

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', resolve);
    });
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Waits for `length` bytes on connection `connection` and returns them. */
  async receive(connection: AcceptedConnection, length: number): Promise<string> {
    const arrived = new Promise<void>((resolve) => {
      connection.dataArrived = () => connection.received.length >= length && resolve();
      connection.dataArrived();
    });
    await within(arrived, `the server waiting for ${length} bytes`);
    const text = connection.received.subarray(0, length).toString('utf8');
    connection.received = connection.received.subarray(length);
    return text;
  }

  async send(connection: AcceptedConnection, text: string): Promise<void> {
    await new Promise<void>((resolve, reject) =>
      connection.socket.write(text, (error) => (error ? reject(error) : resolve())),
    );
  }

  close(): void {
    for (const { socket } of this.accepted) socket.destroy();
    this.server.close();
  }
}

function expectEqual(actual: unknown, expected: unknown, what: string): void {
  if (actual !== expected) throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

function describeState(state: PortableState): string {
  const bytes = (base64: string) => Buffer.from(base64, 'base64').length;
  return (
    `send seq ${state.sendSeq}, receive seq ${state.receiveSeq}, ` +
    `send queue ${bytes(state.sendQueue)} bytes, receive queue ${bytes(state.receiveQueue)} bytes, ` +
    `MSS ${state.mss}, window scale ${state.sendWscale}/${state.receiveWscale}, timestamp ${state.timestamp}`
  );
}

/** A directory for one side's repair socket, writable by the role that creates the socket there. */
function makeRepairDirectory(parent: string, side: RoleName, unprivileged: boolean): string {
  const directory = path.join(parent, side);
  fs.mkdirSync(directory, { mode: 0o700 });
  if (unprivileged) fs.chownSync(directory, UNPRIVILEGED_ID, UNPRIVILEGED_ID);
  return directory;
}

/**
 * The helper connects only where its policy allows, and serves only the peer
 * it names: this one allows the demo's two repair sockets, created by the
 * roles' uid, and nothing else. The helper trusts a policy only in
 * directories nobody but root can write to, as the work directory is.
 */
function writePolicy(workDirectory: string, sourceSocketPath: string, targetDirectory: string, roleUid: number): string {
  const policy = {
    version: 1,
    // The demo runs without the install step that creates the passt-repair
    // account: it names nobody (a production policy names no account).
    sandbox: { user: 'nobody' },
    rules: [
      { name: 'demo-source', sockets: [sourceSocketPath], peer: { uids: [roleUid] } },
      {
        name: 'demo-target',
        sockets: [path.join(targetDirectory, '*.repair')],
        directories: [targetDirectory],
        peer: { uids: [roleUid] },
      },
    ],
  };
  const policyFile = path.join(workDirectory, 'policy.json');
  fs.writeFileSync(policyFile, `${JSON.stringify(policy, null, 2)}\n`, { mode: 0o644 });
  return policyFile;
}

/** Runs the whole migration, reporting each step through `log`; throws on any failure. */
export async function migrate(log: (line: string) => void): Promise<MigrationReport> {
  let stepNumber = 0;
  const step = (line: string) => log(`${String(++stepNumber).padStart(2)}. ${line}`);
  const helperCommand = path.relative(process.cwd(), HELPER) || HELPER;
  // Root runs the helpers; passt's part runs as nobody, to show it needs no privilege.
  const unprivileged = process.getuid!() === 0;
  // Resolved: the policy's patterns are matched against paths with every symlink resolved.
  const workDirectory = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'passt-repair-demo-')));
  fs.chmodSync(workDirectory, 0o711);
  const server = new Server();
  const roles: Role[] = [];
  const helpers: HelperRun[] = [];
  try {
    const serverPort = await server.listen();
    step(`TCP server listening on 127.0.0.1:${serverPort} (in the demo process, pid ${process.pid})`);

    const source = new Role('source', unprivileged);
    const target = new Role('target', unprivileged);
    roles.push(source, target);
    const identities = { source: await source.call('identify'), target: await target.call('identify') };
    for (const role of [source, target]) {
      const { uid, gid, capEff } = identities[role.name];
      if (unprivileged && (uid !== UNPRIVILEGED_ID || gid !== UNPRIVILEGED_ID || BigInt(`0x${capEff}`) !== 0n))
        throw new Error(`the ${role.name} process should run as ${UNPRIVILEGED_ID} without capabilities: uid ${uid}, CapEff ${capEff}`);
      step(
        `${role.name} process (passt's part) started, pid ${role.pid}, uid ${uid}, gid ${gid}, effective capabilities ${capEff}` +
          (unprivileged
            ? ': unprivileged (setpriv), passt needs no capability'
            : ' (not root: roles run as the current user, and the helper needs CAP_NET_ADMIN)'),
      );
    }

    const sourceDirectory = makeRepairDirectory(workDirectory, 'source', unprivileged);
    const targetDirectory = makeRepairDirectory(workDirectory, 'target', unprivileged);
    const sourceSocketPath = path.join(sourceDirectory, 'source.repair');
    const policyFile = writePolicy(workDirectory, sourceSocketPath, targetDirectory, identities.source.uid);
    step(`helper policy written to ${policyFile}: only the demo's two repair sockets, served to uid ${identities.source.uid}`);

    const targetHelperArgs = ['--policy', policyFile, targetDirectory];
    const targetHelper = startHelper(targetHelperArgs);
    helpers.push(targetHelper);
    step(
      `target helper started ahead of time, in directory mode, as KubeVirt does: ${helperCommand} ${targetHelperArgs.join(' ')} (pid ${targetHelper.child.pid}, waits for a *.repair socket)`,
    );

    const sourcePorts = await source.call('connect', serverPort);
    const serverConnection = server.accepted[0];
    if (!serverConnection) throw new Error('the server did not accept the source connection');
    step(`source connected: 127.0.0.1:${sourcePorts.localPort} -> 127.0.0.1:${serverPort}; the server accepted it from port ${serverConnection.remotePort}`);

    await source.call('send', MESSAGES.toServerBefore);
    const byServerBefore = await server.receive(serverConnection, Buffer.byteLength(MESSAGES.toServerBefore));
    expectEqual(byServerBefore, MESSAGES.toServerBefore, 'the server received before migration');
    await server.send(serverConnection, MESSAGES.toSourceBefore);
    const bySourceBefore = await source.call('receive', Buffer.byteLength(MESSAGES.toSourceBefore));
    expectEqual(bySourceBefore, MESSAGES.toSourceBefore, 'the source received before migration');
    step(`before migration: server received "${byServerBefore}"; source received "${bySourceBefore}"`);

    await source.call('stopReading');
    await server.send(serverConnection, MESSAGES.queuedDuringMigration);
    step(`source stopped reading; server sent "${MESSAGES.queuedDuringMigration}" (left in the source's receive queue)`);

    await source.call('listenForHelper', sourceSocketPath);
    const sourceHelperArgs = ['--policy', policyFile, sourceSocketPath];
    const sourceHelper = startHelper(sourceHelperArgs);
    helpers.push(sourceHelper);
    await whileHelperRuns(sourceHelper, 'source', source.call('acceptHelper'));
    step(`source listens on ${sourceSocketPath}; source helper started: ${helperCommand} ${sourceHelperArgs.join(' ')} (pid ${sourceHelper.child.pid}); it connected`);

    const sourceOn = await whileHelperRuns(sourceHelper, 'source', source.call('requestRepair', TCP_REPAIR_ON));
    expectEqual(sourceOn.repairState, 1, "the source socket's TCP_REPAIR after TCP_REPAIR_ON");
    step(`source -> helper: TCP_REPAIR_ON (${TCP_REPAIR_ON}) with the connection's socket; reply ${sourceOn.reply}; getsockopt(TCP_REPAIR) = ${sourceOn.repairState}`);

    const state = await source.call('dump', Buffer.byteLength(MESSAGES.queuedDuringMigration));
    step(`source dumped the connection in repair mode: ${describeState(state)}`);

    await source.call('closeConnection');
    await source.call('closeHelperConnection');
    const sourceExit = await helperExit(sourceHelper, 'source');
    step(`source closed its socket in repair mode (no FIN, no RST) and its helper connection; source helper exited ${sourceExit.code}`);

    const targetSocketPath = path.join(targetDirectory, 'target.repair');
    await target.call('listenForHelper', targetSocketPath);
    await whileHelperRuns(targetHelper, 'target', target.call('acceptHelper'));
    step(`target listens on ${targetSocketPath}; the waiting target helper found it and connected`);

    await target.call('createSocket');
    const targetOn = await whileHelperRuns(targetHelper, 'target', target.call('requestRepair', TCP_REPAIR_ON));
    expectEqual(targetOn.repairState, 1, "the target socket's TCP_REPAIR after TCP_REPAIR_ON");
    step(`target created a TCP socket; TCP_REPAIR_ON (${TCP_REPAIR_ON}): reply ${targetOn.reply}; getsockopt(TCP_REPAIR) = ${targetOn.repairState}`);

    await target.call('restore', state);
    step(`state handed to the target through the demo process (${JSON.stringify(state).length} bytes of JSON); target restored it: bound, connected without SYN, queues refilled`);

    const targetOff = await whileHelperRuns(targetHelper, 'target', target.call('requestRepair', TCP_REPAIR_OFF));
    expectEqual(targetOff.repairState, 0, "the target socket's TCP_REPAIR after TCP_REPAIR_OFF");
    step(`target -> helper: TCP_REPAIR_OFF (${TCP_REPAIR_OFF}); reply ${targetOff.reply}; getsockopt(TCP_REPAIR) = ${targetOff.repairState}: the connection is live`);

    await target.call('closeHelperConnection');
    const targetExit = await helperExit(targetHelper, 'target');
    step(`target closed its helper connection; target helper exited ${targetExit.code}`);

    const targetPorts = await target.call('adoptConnection');
    expectEqual(targetPorts.localPort, sourcePorts.localPort, "the target's local port (the source's)");
    expectEqual(targetPorts.remotePort, serverPort, "the target's remote port (the server's)");
    step(`target adopted the socket as a net.Socket: 127.0.0.1:${targetPorts.localPort} -> 127.0.0.1:${targetPorts.remotePort}, the source's endpoints`);

    const byTargetFromQueue = await target.call('receive', Buffer.byteLength(MESSAGES.queuedDuringMigration));
    expectEqual(byTargetFromQueue, MESSAGES.queuedDuringMigration, 'the target received from the migrated receive queue');
    step(`target read the migrated receive queue: "${byTargetFromQueue}"`);

    await server.send(serverConnection, MESSAGES.toTargetAfter);
    const byTargetAfter = await target.call('receive', Buffer.byteLength(MESSAGES.toTargetAfter));
    expectEqual(byTargetAfter, MESSAGES.toTargetAfter, 'the target received after migration');
    step(`after migration: server sent on its original connection; target received "${byTargetAfter}"`);

    await target.call('send', MESSAGES.toServerAfter);
    // Read from the net.Socket the server accepted from the source: the
    // bytes can only arrive there if the migrated connection is that one.
    const byServerAfter = await server.receive(serverConnection, Buffer.byteLength(MESSAGES.toServerAfter));
    expectEqual(byServerAfter, MESSAGES.toServerAfter, 'the server received after migration');
    expectEqual(server.accepted.length, 1, 'connections the server accepted');
    const sameServerConnection = server.accepted[0] === serverConnection;
    expectEqual(serverConnection.events.join(', '), '', "events on the server's connection");
    step(
      `target sent "${byServerAfter}"; the server received it on the same net.Socket, remote port ${serverConnection.remotePort}, ` +
        `with ${server.accepted.length} connection accepted in all and no end, close or error on it`,
    );

    return {
      roles: identities,
      rolesUnprivileged: unprivileged,
      helperExits: { source: sourceExit, target: targetExit },
      received: { byServerBefore, bySourceBefore, byTargetFromQueue, byTargetAfter, byServerAfter },
      sourceLocalPort: sourcePorts.localPort,
      targetLocalPort: targetPorts.localPort,
      serverRemotePort: serverConnection.remotePort,
      connectionsAccepted: server.accepted.length,
      sameServerConnection,
      serverConnectionEvents: [...serverConnection.events],
    };
  } finally {
    for (const helper of helpers) if (isRunning(helper.child)) helper.child.kill();
    for (const role of roles) role.stop();
    server.close();
    fs.rmSync(workDirectory, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(`passt-repair demo: migrating a live TCP connection between two processes through ${HELPER}`);
  try {
    const report = await migrate((line) => console.log(line));
    for (const role of ['source', 'target'] as const) {
      console.log(`the ${role} helper's audit log (its standard error):`);
      for (const line of report.helperExits[role].stderr.trimEnd().split('\n')) console.log(`  ${line}`);
    }
    console.log(`helper exit codes: source ${report.helperExits.source.code}, target ${report.helperExits.target.code}`);
    console.log(
      `SUCCESS: the connection moved from the source to the target process through passt-repair; ` +
        `the server kept one connection (remote port ${report.serverRemotePort}) throughout, with data both ways after migration`,
    );
  } catch (error) {
    console.error(`FAILED: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}

if (require.main === module) void main();
