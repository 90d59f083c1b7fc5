// SPDX-License-Identifier: GPL-2.0-or-later
// What the demo asks of a passt role (demo/role.ts) over the IPC channel, and
// what each request answers. Shared by both ends so the calls are type-checked.
import type { ConnectionState } from '../test/passt-double/native.d';

/**
 * ConnectionState as it crosses the IPC channel. JSON would turn the queues'
 * Buffers into arrays of numbers; base64 keeps them compact and exact.
 */
export type PortableState = Omit<ConnectionState, 'sendQueue' | 'receiveQueue'> & {
  sendQueue: string;
  receiveQueue: string;
};

export function toPortable(state: ConnectionState): PortableState {
  return { ...state, sendQueue: state.sendQueue.toString('base64'), receiveQueue: state.receiveQueue.toString('base64') };
}

export function fromPortable(state: PortableState): ConnectionState {
  return {
    ...state,
    sendQueue: Buffer.from(state.sendQueue, 'base64'),
    receiveQueue: Buffer.from(state.receiveQueue, 'base64'),
  };
}

export interface RoleIdentity {
  uid: number;
  gid: number;
  /** The effective capability set, as /proc/self/status prints it (hexadecimal). */
  capEff: string;
}

export interface RepairResult {
  /** The byte the helper replied with. */
  reply: number;
  /** getsockopt(TCP_REPAIR) on the connection's socket after the reply. */
  repairState: number;
}

export interface Ports {
  localPort: number;
  remotePort: number;
}

/** Every request a role serves. A role holds at most one TCP connection and one helper connection. */
export interface RoleCommands {
  identify(): Promise<RoleIdentity>;
  /** Source: opens the connection that will migrate. */
  connect(port: number): Promise<Ports>;
  send(text: string): Promise<void>;
  /** Waits for `length` bytes on the connection and returns them. */
  receive(length: number): Promise<string>;
  /** Source: stops reading the connection, so bytes still arriving stay in its receive queue and migrate. */
  stopReading(): Promise<void>;
  /** Creates and listens on the repair socket, as passt does at start-up. */
  listenForHelper(socketPath: string): Promise<void>;
  acceptHelper(): Promise<void>;
  /** Target: the fresh socket that will take the connection over. */
  createSocket(): Promise<void>;
  /** Sends `command` with the connection's socket to the helper and waits for the reply. */
  requestRepair(command: number): Promise<RepairResult>;
  /** Source: the connection's state, once at least `receiveQueueBytes` bytes sit in its receive queue. */
  dump(receiveQueueBytes: number): Promise<PortableState>;
  /** Target: rebuilds the connection on its socket (in repair mode). */
  restore(state: PortableState): Promise<void>;
  /** Source: closes the socket; in repair mode that sends neither FIN nor RST. */
  closeConnection(): Promise<void>;
  /** Closing passt's end tells the helper it is done (it exits 0). */
  closeHelperConnection(): Promise<void>;
  /** Target: hands the migrated socket to Node.js as a net.Socket, to use it as any other connection. */
  adoptConnection(): Promise<Ports>;
}

export type RoleName = 'source' | 'target';

export type Request = {
  [K in keyof RoleCommands]: { id: number; command: K; argument: Parameters<RoleCommands[K]>[0] };
}[keyof RoleCommands];

export type Response = { id: number; result: unknown } | { id: number; error: string };
