// The helper's whole native surface (native/*.cc). Failures throw a
// NativeFailure; src/errors.ts turns it into words.

/** A request that was applied to every socket and confirmed to passt. */
export interface HandledRequest {
  /** TCP_REPAIR_ON (1), TCP_REPAIR_OFF (0) or TCP_REPAIR_OFF_NO_WP (-1). */
  command: 1 | 0 | -1;
  /** How many sockets the request carried: 1 to 253. */
  sockets: number;
  /** The helper's own time on it, from the request's arrival to the reply sent. */
  nanoseconds: number;
}

/** What a native call throws: a stable code and the numbers behind it. */
export interface NativeFailure extends Error {
  code: string;
  errno?: number;
  [field: string]: unknown;
}

/** Who is behind a connected UNIX socket (native/credentials.cc). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
  pidfd: number;
}

/** A generated seccomp program, opaque to JavaScript (native/seccomp.cc). */
export interface PreparedSeccompFilter {
  readonly __preparedSeccompFilter: unique symbol;
}

/** One line of seccomp/allowlist.policy: a call allowed when every condition holds. */
export interface SeccompRule {
  syscall: string;
  /** "argument `arg` equals `value`", all of them. */
  args: { arg: number; value: bigint }[];
  /** Where it came from, for errors. */
  line: number;
  /** Refuse the call with this errno instead of allowing it (never killed). */
  deny?: number;
}

/** The change native/capabilities.cc applies to every thread (planned in src/sandbox/capabilities.ts). */
export interface CredentialChange {
  /** Capabilities left in the effective and permitted sets (if held); inheritable and ambient are emptied. */
  keep: number[];
  /** /proc/sys/kernel/cap_last_cap. */
  lastCapability: number;
  /** Set and lock SECBIT_NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE (needs CAP_SETPCAP). */
  lockSecurebits: boolean;
  /** Drop every capability not kept from the bounding set (needs CAP_SETPCAP). */
  dropBoundingSet: boolean;
  /** The uid, gid and groups to change to, or null to keep them. */
  ids: { uid: number; gid: number; groups: number[] } | null;
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
  /**
   * SO_PEERCRED of the connected socket `sock`: passt's pid, uid and gid at
   * listen(). `pidfd` is SO_PEERPIDFD's pidfd for that process (the caller
   * closes it), or -1 on kernels older than 6.5.
   */
  peerCredentials(sock: number): PeerCredentials;
  /**
   * Applies `change` to every thread of the process (a real-time signal to
   * each thread in /proc/self/task, until none is left unreached), sets
   * NO_NEW_PRIVS on each and makes the process not dumpable. Throws if any
   * thread fails or does not answer. Returns how many threads it reached.
   */
  applyCredentials(change: CredentialChange): number;
  /**
   * Builds the seccomp filter from `rules` (default action: kill the
   * process, log in "log" mode, allow in "allow" mode, where every rule
   * must deny and a call of another ABI kills the process) and generates
   * its BPF program, without loading it. A condition object may carry
   * `op: '!='` (deny rules only; src/sandbox/seccomp.ts). Throws UNKNOWN_SYSCALL
   * (with `syscall`, `line` and the rule's `index`) for a name the platform
   * does not know.
   */
  prepareSeccompFilter(rules: readonly SeccompRule[], mode: 'kill' | 'log' | 'allow'): PreparedSeccompFilter;
  /**
   * Installs a prepared filter on every thread at once (seccomp(2) with
   * TSYNC, after PR_SET_NO_NEW_PRIVS). Throws SECCOMP_LOAD_FAILED (with
   * `thread` when one could not take it) or SECCOMP_ALREADY_LOADED.
   */
  loadSeccompFilter(filter: PreparedSeccompFilter): void;
  /**
   * Sets O_NONBLOCK on `fd` (native/descriptors.cc). Returns true if it was
   * clear before.
   */
  setNonBlocking(fd: number): boolean;
  /**
   * One write(2) of `bytes` to `fd` (native/descriptors.cc): the bytes
   * written, or the negated errno. Never throws.
   */
  writeSome(fd: number, bytes: Buffer): number;
  /** pipe2(O_CLOEXEC): a new pipe's two ends. */
  makePipe(): { read: number; write: number };
}
