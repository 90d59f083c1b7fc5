// SPDX-License-Identifier: GPL-2.0-or-later
// One side of passt in the demo: `role.js source` or `role.js target`, run by
// demo.js as a child process (unprivileged when the demo runs as root) and
// driven over the IPC channel, one request at a time (see role-protocol.ts).
import * as fs from 'node:fs';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { acceptHelper, awaitReply, passt } from '../test/passt-double/passt-double';
import { fromPortable, toPortable, type Request, type Response, type RoleCommands, type RoleName } from './role-protocol';

/** How long a role waits for bytes, a helper or a reply before it gives up. */
const WAIT_MS = 10_000;

/** The libuv handle behind a net.Socket, which Node.js does not type. */
interface StreamHandle {
  fd: number;
  readStop(): number;
}

function handleOf(socket: net.Socket): StreamHandle {
  return (socket as unknown as { _handle: StreamHandle })._handle;
}

function createRole(name: RoleName): RoleCommands {
  let connection: net.Socket | undefined;
  /** The connection's descriptor while it is handled natively (in repair mode, or not adopted yet). */
  let connectionFd: number | undefined;
  let received = Buffer.alloc(0);
  let dataArrived: () => void = () => {};
  let listenFd: number | undefined;
  let helperFd: number | undefined;

  function required<T>(value: T | undefined, what: string): T {
    if (value === undefined) throw new Error(`${name}: ${what} first`);
    return value;
  }

  function collect(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      dataArrived();
    });
  }

  function ports(socket: net.Socket): { localPort: number; remotePort: number } {
    return { localPort: required(socket.localPort, 'a bound socket'), remotePort: required(socket.remotePort, 'a peer') };
  }

  return {
    async identify() {
      const capEff = /^CapEff:\s*(\S+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 'unknown';
      return { uid: process.getuid!(), gid: process.getgid!(), capEff };
    },

    async connect(port) {
      const socket = net.connect({ host: '127.0.0.1', port });
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      collect(socket);
      connection = socket;
      connectionFd = handleOf(socket).fd;
      return ports(socket);
    },

    async send(text) {
      const socket = required(connection, 'connect or adoptConnection');
      await new Promise<void>((resolve, reject) => socket.write(text, (error) => (error ? reject(error) : resolve())));
    },

    async receive(length) {
      const deadline = Date.now() + WAIT_MS;
      while (received.length < length) {
        if (Date.now() >= deadline)
          throw new Error(`${name}: ${received.length} of ${length} bytes arrived within ${WAIT_MS} ms`);
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          dataArrived = resolve;
          timer = setTimeout(resolve, deadline - Date.now());
        });
        clearTimeout(timer);
      }
      const text = received.subarray(0, length).toString('utf8');
      received = received.subarray(length);
      return text;
    },

    async stopReading() {
      const socket = required(connection, 'connect');
      // pause() alone does not stop libuv from reading the kernel's queue.
      // Reading must stop for good: bytes must stay queued to migrate, and a
      // read on a socket in repair mode fails with EPERM, which would make
      // Node.js tear the connection down.
      socket.pause();
      const error = handleOf(socket).readStop();
      if (error !== 0) throw new Error(`${name}: readStop failed (${error})`);
    },

    async listenForHelper(socketPath) {
      listenFd = passt.listenUnix(socketPath);
    },

    async acceptHelper() {
      helperFd = await acceptHelper(required(listenFd, 'listenForHelper'), WAIT_MS);
      // passt serves one helper at a time; nobody else is let in.
      fs.closeSync(listenFd!);
      listenFd = undefined;
    },

    async createSocket() {
      connectionFd = passt.tcpSocket(4);
    },

    async requestRepair(command) {
      const fd = required(helperFd, 'acceptHelper');
      const socketFd = required(connectionFd, 'connect or createSocket');
      passt.sendRequest(fd, Buffer.from([command & 0xff]), [socketFd]);
      const reply = await awaitReply(fd, WAIT_MS);
      if (reply === undefined) throw new Error(`${name}: the helper did not reply within ${WAIT_MS} ms`);
      if (reply === null) throw new Error(`${name}: the helper closed the connection without replying (request refused)`);
      if (reply !== command) throw new Error(`${name}: the helper replied ${reply} to command ${command}`);
      return { reply, repairState: passt.repairState(socketFd) };
    },

    async dump(receiveQueueBytes) {
      const fd = required(connectionFd, 'connect');
      // Bytes the server sent last may still be on their way over loopback:
      // wait until they sit in the receive queue, so the dump carries them.
      const deadline = Date.now() + WAIT_MS;
      for (;;) {
        const state = passt.dumpConnection(fd);
        if (state.receiveQueue.length >= receiveQueueBytes) return toPortable(state);
        if (Date.now() >= deadline)
          throw new Error(`${name}: ${state.receiveQueue.length} of ${receiveQueueBytes} bytes reached the receive queue`);
        await sleep(5);
      }
    },

    async restore(state) {
      passt.restoreConnection(required(connectionFd, 'createSocket'), fromPortable(state));
    },

    async closeConnection() {
      const socket = required(connection, 'connect');
      await new Promise<void>((resolve) => socket.destroy().once('close', () => resolve()));
      connection = undefined;
      connectionFd = undefined;
    },

    async closeHelperConnection() {
      fs.closeSync(required(helperFd, 'acceptHelper'));
      helperFd = undefined;
    },

    async adoptConnection() {
      const socket = new net.Socket({ fd: required(connectionFd, 'createSocket'), readable: true, writable: true });
      collect(socket);
      connection = socket;
      return ports(socket);
    },
  };
}

function serve(name: RoleName): void {
  const role = createRole(name);
  process.on('message', (request: Request) => {
    const handler = role[request.command] as (argument: unknown) => Promise<unknown>;
    handler(request.argument).then(
      (result) => process.send!({ id: request.id, result: result ?? null } satisfies Response),
      (error: unknown) =>
        process.send!({ id: request.id, error: error instanceof Error ? error.message : String(error) } satisfies Response),
    );
  });
  // The demo going away, however it ends, ends the role too.
  process.on('disconnect', () => process.exit(0));
}

const name = process.argv[2];
if ((name !== 'source' && name !== 'target') || !process.send) {
  console.error('usage: role.js source|target (started by demo.js with an IPC channel)');
  process.exit(2);
}
serve(name);
