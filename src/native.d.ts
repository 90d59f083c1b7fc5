// SPDX-License-Identifier: GPL-2.0-or-later
// The helper's whole native surface (native/*.cc). Failures throw a
// NativeFailure; src/errors.ts turns it into words.

/** A request that was applied to every socket and confirmed to passt. */
/** Consecutive requests with the same command, served and confirmed. */
export interface ServedRun {
  /** TCP_REPAIR_ON (1), TCP_REPAIR_OFF (0) or TCP_REPAIR_OFF_NO_WP (-1). */
  command: 1 | 0 | -1;
  requests: number;
  /** How many sockets they carried (1 to 253 each). */
  sockets: number;
  /** The helper's own time on them, from each request's arrival to its reply. */
  nanoseconds: number;
}

/** What one call of serveRequests served, and why it returned. */
export interface Served {
  /**
   * "yield": it served the requests it was asked to; "command": the last
   * request's command differs from the one before it; "timeout": a wait
   * ended (its limit, or the session's deadline before a request was read);
   * "signal": SIGTERM, SIGINT or SIGHUP was recorded before a request was
   * read (native/signals.cc); "closed": passt closed the connection (EOF or
   * ECONNRESET).
   */
  end: 'yield' | 'command' | 'timeout' | 'signal' | 'closed';
  /** In order; at most two (the call returns when the command changes). */
  runs: ServedRun[];
  /** Milliseconds since the last reply, or since the call began when none was served. */
  waitedMs: number;
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
  /** The target of /proc/PID/exe, when it could be read. */
  exe?: string;
  /** Whether the very process that listened still runs (SO_PEERPIDFD); absent on kernels older than 6.5. */
  alive?: boolean;
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
  /** The capabilities the bounding set keeps, every other one dropped (needs CAP_SETPCAP); null leaves it as it is. */
  bounding: number[] | null;
  /** The uid, gid and groups to change to, or null to keep them. */
  ids: { uid: number; gid: number; groups: number[] } | null;
}

/** One thread's credentials (native/capabilities.cc, readOwnCredentials). */
export interface OwnCredentials {
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
  bounding: bigint;
  ambient: bigint;
  /** Real, effective, saved, filesystem. */
  uids: number[];
  gids: number[];
  groups: number[];
  noNewPrivs: number;
}

/** A thread held by its /proc/self/task/TID directory (native/capabilities.cc, holdThreads). */
export interface HeldThread {
  tid: number;
  fd: number;
  /** Its status, read through `fd`; absent only if it exited (ENOENT, ESRCH) before it could be read. */
  status?: string;
}

/** statx(2) of an object held open (native/resolve.cc). */
export interface ObjectStat {
  /** st_mode & S_IFMT. */
  type: number;
  nlink: number;
  uid: number;
  gid: number;
  /** "MAJOR:MINOR:INODE": the object, on its device. */
  identity: string;
  /** STATX_MNT_ID: the mount it was reached through, as in mountinfo's first field. */
  mountId: number;
}

export interface Native {
  /**
   * Connects a new AF_UNIX stream socket to the socket file held open by
   * `pathFd` (an O_PATH descriptor), through /proc/self/fd. Returns the
   * connected socket's descriptor (blocking). The connect() itself does not
   * block: a full backlog throws CONNECT_FAILED with errno EAGAIN.
   */
  connectToSocketFile(pathFd: number): number;
  /** An O_PATH descriptor of "/", where a host path's walk starts (native/resolve.cc). */
  openHostRoot(): number;
  /**
   * openat2(O_PATH | O_NOFOLLOW, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
   * RESOLVE_BENEATH, plus RESOLVE_NO_XDEV when `sameMount`) of one component
   * in `dirFd`: a symlink is opened itself, never followed. Throws
   * OPEN_FAILED with errno.
   */
  openComponent(dirFd: number, name: string, sameMount: boolean): number;
  /** An O_PATH descriptor of /proc/PID, pinning that process's proc entry. Throws OPEN_FAILED. */
  openProcessDirectory(pid: number): number;
  /** The root directory of the process whose /proc/PID `procFd` holds (a deliberate magic-link follow). Throws OPEN_FAILED. */
  openProcessRoot(procFd: number): number;
  /** The whole text of `name` ("status", "mountinfo") in the /proc/PID held by `procFd`. Throws READ_FAILED. */
  readProcessFile(procFd: number, name: string): string;
  /** The target text of the symlink held by `fd`. Throws READLINK_FAILED. */
  readSymlink(fd: number): string;
  /** statx(2) of the object `fd` holds. Throws STAT_FAILED, or STAT_INCOMPLETE when the kernel gives no mount id. */
  statObject(fd: number): ObjectStat;
  /** pidfd_open(2) of `pid` (close-on-exec). Throws PIDFD_FAILED with errno. */
  pidfdOpen(pid: number): number;
  /**
   * Serves up to `maxRequests` requests on `sock`, one after the other: for
   * each, waits for it, receives it, checks its shape, the rule's limits and
   * every descriptor, applies TCP_REPAIR to all of them or to none, and
   * replies. The first wait lasts at most `waitMs` milliseconds (negative:
   * no limit), each one after a reply at most `nextWaitMs`; no request is
   * read once `sessionLeftMs` (Infinity: no limit) have passed since the
   * call. `allowedCommands` has bit (command + 1) set for each command the
   * rule allows; `maxSockets` is the most one request may carry;
   * `socketsLeft` what the session may still carry (Infinity: no limit),
   * less what each request served takes. A refused or failed request throws
   * a NativeFailure (src/errors.ts) with its sockets as they were and, in
   * `served`, the ServedRun[] confirmed before it; nothing after it is read.
   */
  serveRequests(
    sock: number,
    waitMs: number,
    nextWaitMs: number,
    sessionLeftMs: number,
    allowedCommands: number,
    maxSockets: number,
    socketsLeft: number,
    maxRequests: number,
  ): Served;
  /**
   * Starts the thread that takes half of each batch's per-descriptor system
   * calls (native/worker.cc), once; before gate 2 (whose credential changes
   * reach every thread) and gate 3 (after which no thread can be created).
   * Returns whether it runs; without it serveRequests does all the work on
   * the calling thread.
   */
  startWorker(): boolean;
  /**
   * Sends the failure byte (0x80) on `sock` without waiting: what passt
   * reads when the helper closes for any reason but passt's own EOF.
   * Returns whether it went out.
   */
  sendFailure(sock: number): boolean;
  /**
   * Replaces the handlers of SIGTERM, SIGINT and SIGHUP (once) with ones that
   * only record the first signal, wake the protocol loop, and then call the
   * handler replaced: it must be the event loop's (process.on listeners
   * registered first), never Node.js's built-in one (src/signals.ts).
   */
  catchSignals(): void;
  /** The signal recorded (SIGTERM, SIGINT or SIGHUP), or 0. */
  pendingSignal(): number;
  /**
   * SO_PEERCRED of the connected socket `sock`: passt's pid, uid and gid at
   * listen(); that pid's executable (read first), then, through
   * SO_PEERPIDFD's pidfd (closed here), whether that process still runs.
   * Throws PEERCRED_FAILED or PEERPIDFD_FAILED.
   */
  peerCredentials(sock: number): PeerCredentials;
  /**
   * Applies `own` to the calling thread and `others` to every other thread
   * of the process (a real-time signal to each thread in /proc/self/task,
   * until none is left unreached), sets NO_NEW_PRIVS on each and makes the
   * process not dumpable. Throws if any thread fails (CREDENTIALS_FAILED,
   * with the `step`), cannot be signalled (SIGNAL_FAILED, with tgkill's
   * errno and the thread's `tid`) or does not answer. Returns how many
   * threads it reached.
   */
  applyCredentials(own: CredentialChange, others: CredentialChange): number;
  /**
   * Applies `change` to the calling thread alone (raw system calls, no
   * signal), sets its NO_NEW_PRIVS and makes the process not dumpable.
   * Throws CREDENTIALS_FAILED (with the `step`) or NOT_DUMPABLE_FAILED.
   */
  applyToCallingThread(change: CredentialChange): void;
  /**
   * The calling thread's credentials, read with system calls (capget,
   * PR_CAPBSET_READ and PR_CAP_AMBIENT_IS_SET for capabilities 0 to
   * `lastCapability`, getresuid, getresgid, the filesystem ids, getgroups,
   * PR_GET_NO_NEW_PRIVS). Throws READ_CREDENTIALS_FAILED.
   */
  readOwnCredentials(lastCapability: number): OwnCredentials;
  /**
   * Every thread of the process, each held by an O_PATH descriptor of its
   * /proc/self/task/TID (the caller closes them) and its status read
   * through it. Throws HOLD_THREAD_FAILED when a thread cannot be held or
   * its status cannot be read for any reason but its exit (EMFILE, ...).
   */
  holdThreads(): HeldThread[];
  /**
   * The threads of the process now that are not among `held`: another id,
   * or the id of a held thread that has exited (another thread took it).
   * Then closes every descriptor of `held`, even when it throws
   * LIST_THREADS_FAILED.
   */
  releaseThreads(held: readonly HeldThread[]): number[];
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
   * TSYNC, after PR_SET_NO_NEW_PRIVS). With `checkIoUring`, refuses first if
   * the process holds an io_uring instance (IO_URING_OPEN, with its `fd`;
   * /proc/self/fd listed). Throws SECCOMP_LOAD_FAILED (with `thread` when
   * one could not take it), SECCOMP_ALREADY_LOADED or LIST_DESCRIPTORS_FAILED.
   */
  loadSeccompFilter(filter: PreparedSeccompFilter, checkIoUring: boolean): void;
  /**
   * Whether an io_uring instance could still be created (io_uring_setup(2)
   * fails with anything but ENOSYS), asked first; then throws IO_URING_OPEN
   * (with its `fd`) if the process holds one, or LIST_DESCRIPTORS_FAILED.
   */
  checkIoUring(): boolean;
  /**
   * Builds the deny list `rules` as prepareSeccompFilter does in mode
   * "allow" and writes it to `fd` as a BPF program (struct sock_filter[]),
   * for native/launcher.c's --seccomp-fd to install before a runtime
   * starts. Throws as prepareSeccompFilter does, or SECCOMP_EXPORT_FAILED.
   */
  exportDenyList(rules: readonly SeccompRule[], fd: number): void;
  /** prctl(PR_SET_DUMPABLE, 0) for the whole process (the telemetry forwarder). */
  makeNotDumpable(): void;
  /**
   * Sets O_NONBLOCK on `fd` (native/descriptors.cc). Returns true if it was
   * clear before.
   */
  setNonBlocking(fd: number): boolean;
  /**
   * One write(2) of `data` to `fd` (native/descriptors.cc), a string as
   * UTF-8: the bytes written, or the negated errno. Never throws.
   */
  writeSome(fd: number, data: Buffer | string): number;
  /** pipe2(O_CLOEXEC): a new pipe's two ends. */
  makePipe(): { read: number; write: number };
  /** poll(POLLOUT) without a timeout: returns once `fd` has room, or has an error or hang-up for the next write to report. */
  waitWritable(fd: number): void;
}
