// SPDX-License-Identifier: GPL-2.0-or-later
// The passt-side double's whole native surface (test/native/passt-double.cc), used by
// the demo, the tests and the benchmark; never by the helper.

/** The protocol loop's system calls, as the benchmark times them (test/bench/filter-cost.ts). */
export type HotCall = 'getsockopt SO_PROTOCOL' | 'getsockopt TCP_REPAIR' | 'setsockopt TCP_REPAIR' | 'recvmsg' | 'sendto' | 'close_range' | 'ppoll';

export interface Endpoint {
  address: string;
  port: number;
  family: 4 | 6;
}

/** What a migration carries from source to target (as passt's does). */
export interface ConnectionState {
  local: Endpoint;
  remote: Endpoint;
  sendSeq: number;
  receiveSeq: number;
  sendQueue: Buffer;
  receiveQueue: Buffer;
  unsent: number;
  mss: number;
  timestamp: number;
  options: number;
  sendWscale: number;
  receiveWscale: number;
  window: [number, number, number, number, number];
}

export interface RequestShape {
  /** Spread the descriptors over this many SCM_RIGHTS headers. */
  rightsMessages?: number;
  /** Add an SCM_CREDENTIALS header. */
  credentials?: boolean;
}

export interface PasstDouble {
  /** Bound, not listening: connections are refused until startListening(). */
  bindUnix(path: string): number;
  startListening(fd: number): void;
  listenUnix(path: string): number;
  /** renameat2(RENAME_EXCHANGE) of two paths. */
  renameExchange(a: string, b: string): void;
  /** Non-blocking connects to the listener at `path` until its backlog is full; the connected descriptors. */
  fillBacklog(path: string): number[];
  /** The helper's connection, or -1 if none came within timeoutMs. */
  accept(listenFd: number, timeoutMs: number): number;
  sendRequest(fd: number, bytes: Buffer, fds: readonly number[], shape?: RequestShape): number;
  /** The reply byte; null on EOF or reset; undefined on timeout. */
  receiveReply(fd: number, timeoutMs: number): number | null | undefined;
  /** A well-formed request and its reply, timed: [reply or null, nanoseconds]. */
  roundTrip(fd: number, command: number, fds: readonly number[]): [number | null, number];
  /**
   * Every descriptor sent with `command` in batches of 253, each waiting for
   * its reply, in a native loop: each batch's round trip in nanoseconds, and
   * the first reply that was not `command` (null: closed) or `command`.
   */
  switchAll(fd: number, command: number, fds: readonly number[]): { reply: number | null; ns: number[] };
  repairState(fd: number): number;
  /**
   * `count` calls of one of the protocol loop's system calls in a native
   * loop: nanoseconds per call. `fd`: a TCP socket for the socket options,
   * one end of an AF_UNIX socket pair (nothing queued) for the others.
   */
  timeCall(call: HotCall, fd: number, count: number): number;
  tcpSocket(family: 4 | 6): number;
  otherSocket(kind: 'udp' | 'unix' | 'raw-tcp' | 'mptcp' | 'rtnetlink' | 'smc'): number;
  /** An AF_UNIX stream socket pair: [passt's end, the helper's end]. */
  socketPair(): [number, number];
  /** One sendmsg with `control` as the control buffer exactly as given, without waiting: bytes sent, or -errno. */
  sendRaw(fd: number, bytes: Buffer, control: Buffer): number;
  /** A new epoll descriptor. */
  epollInstance(): number;
  dumpConnection(fd: number): ConnectionState;
  restoreConnection(fd: number, state: ConnectionState): void;
}
