// The helper's whole native surface (native/*.cc). Failures throw a
// NativeFailure; src/errors.ts turns it into words.

/** A request that was applied to every socket and confirmed to passt. */
export interface HandledRequest {
  /** TCP_REPAIR_ON (1), TCP_REPAIR_OFF (0) or TCP_REPAIR_OFF_NO_WP (-1). */
  command: 1 | 0 | -1;
  /** How many sockets the request carried: 1 to 253. */
  sockets: number;
}

/** What a native call throws: a stable code and the numbers behind it. */
export interface NativeFailure extends Error {
  code: string;
  errno?: number;
  [field: string]: unknown;
}

export interface Native {
  /**
   * Connects a new AF_UNIX stream socket to the socket file held open by
   * `pathFd` (an O_PATH descriptor), through /proc/self/fd. Returns the
   * connected socket's descriptor.
   */
  connectToSocketFile(pathFd: number): number;
  /**
   * Receives one request on `sock`, checks its shape and every descriptor,
   * applies TCP_REPAIR to all of them or to none, and replies. Returns null
   * when passt has closed the connection (EOF or ECONNRESET).
   */
  handleMessage(sock: number): HandledRequest | null;
}
