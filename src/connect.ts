// Reaching passt's repair socket, given as a socket or as a directory to
// wait in.
//
// The socket file is opened (O_PATH, never through a symlink at the end) and
// connected to through /proc/self/fd/N: the helper reaches exactly the inode
// it opened, and paths longer than sun_path's 108 bytes work.
//
// Gate 1, the path policy: what is checked is the path the kernel gives for
// the descriptor held (readlink /proc/self/fd/N), and that same descriptor is
// what gets connected. Swapping a symlink or a directory on the way, before
// or after the check, can change what is opened, never make the helper
// connect to something other than what was checked.
import * as fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { native } from './addon';
import { HelperError, Refusal, describeNativeFailure, isNativeFailure, systemMessage } from './errors';
import { rulesAllowingDirectory, rulesAllowingSocket, type Policy, type Rule } from './policy';

const O_PATH = 0o10000000;
const REPAIR_SUFFIX = '.repair';
/** A refused connection (socket file bound, passt not listening yet) is retried after 1, 2, 4 ... ms, at most this. */
const MAX_RETRY_DELAY_MS = 100;

export interface Connection {
  sock: number;
  /** The socket file connected to, symlinks resolved. */
  path: string;
  /** Its owner, for the rules' sameOwner. */
  owner: number;
  /** The rules that allow connecting to it: gate 4 checks the peer against these. */
  rules: readonly Rule[];
}

/** A socket file held open (O_PATH), with the path the kernel gives for it. */
export interface HeldSocketFile {
  fd: number;
  path: string;
  owner: number;
}

type Attempt = { connected: Connection } | { refused: true } | { gone: true } | { notSocket: true } | { notAllowed: string };

function describeFsError(error: unknown, path: string): string {
  const code = (error as NodeJS.ErrnoException).code;
  const errno = (error as NodeJS.ErrnoException).errno;
  return `${path}: ${errno === undefined ? String(error) : systemMessage(-errno)}${code ? ` (${code})` : ''}`;
}

/** Opens the socket file `openPath` refers to without following a symlink at its end. */
export function holdSocketFile(openPath: string, displayPath: string): HeldSocketFile | { gone: true } | { notSocket: true } {
  let fd: number;
  try {
    fd = fs.openSync(openPath, O_PATH | fs.constants.O_NOFOLLOW);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { gone: true };
    throw new HelperError(`cannot open ${describeFsError(error, displayPath)}`);
  }
  try {
    const stats = fs.fstatSync(fd);
    if (!stats.isSocket()) {
      fs.closeSync(fd);
      return { notSocket: true };
    }
    // An unlinked file reads as "PATH (deleted)", which no pattern matches.
    return { fd, path: fs.readlinkSync(`/proc/self/fd/${fd}`), owner: stats.uid };
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}

/** Connects to the socket file held if one of `grants` allows its path, and closes the held descriptor. */
export function connectToHeld(held: HeldSocketFile, grants: readonly Rule[]): Attempt {
  try {
    const rules = rulesAllowingSocket(grants, held.path);
    if (rules.length === 0) return { notAllowed: held.path };
    const sock = native.connectToSocketFile(held.fd);
    return { connected: { sock, path: held.path, owner: held.owner, rules } };
  } catch (error) {
    if (!isNativeFailure(error)) throw error;
    if (error.code !== 'CONNECT_FAILED') throw new HelperError(describeNativeFailure(error));
    if (error.errno === 111 /* ECONNREFUSED */) return { refused: true };
    if (error.errno === 2 /* ENOENT */) return { gone: true };
    throw new HelperError(`cannot connect to ${held.path}: ${systemMessage(error.errno)}`);
  } finally {
    fs.closeSync(held.fd);
  }
}

function attemptConnection(openPath: string, displayPath: string, grants: readonly Rule[]): Attempt {
  const held = holdSocketFile(openPath, displayPath);
  return 'fd' in held ? connectToHeld(held, grants) : held;
}

function connectToSocket(path: string, policy: Policy): Connection {
  const attempt = attemptConnection(path, path, policy.rules);
  if ('connected' in attempt) return attempt.connected;
  if ('notAllowed' in attempt) throw new Refusal('path', `${attempt.notAllowed}: no rule of ${policy.file} allows connecting to this socket`);
  if ('refused' in attempt) throw new HelperError(`cannot connect to ${path}: ${systemMessage(111)}`);
  if ('notSocket' in attempt) throw new HelperError(`${path} is not a socket`);
  throw new HelperError(`${path}: ${systemMessage(2)}`);
}

/**
 * Waits in `directory` for a socket named *.repair that accepts a
 * connection. The watch starts before the directory is listed, so a socket
 * created in between is seen either way.
 *
 * The directory must be one that some rule's "directories" allow, and each
 * socket found must match a "sockets" pattern of one of those same rules. A
 * socket that does not is skipped with a warning and the helper keeps
 * waiting: anyone who can create files in the directory could otherwise stop
 * the migration.
 */
async function connectInDirectory(directory: string, timeoutMs: number | undefined, policy: Policy, warn: (line: string) => void): Promise<Connection> {
  const dirFd = fs.openSync(directory, O_PATH | fs.constants.O_DIRECTORY);
  const held = `/proc/self/fd/${dirFd}`;
  const checkedDirectory = fs.readlinkSync(held);
  const grants = rulesAllowingDirectory(policy.rules, checkedDirectory);
  if (grants.length === 0) {
    fs.closeSync(dirFd);
    throw new Refusal('path', `${checkedDirectory}: no rule of ${policy.file} allows waiting in this directory`);
  }
  const candidates = new Set<string>();
  const abort = new AbortController();
  let wake: (() => void) | undefined;
  let watchError: unknown;
  const watcher = fs.watch(held, { persistent: true, encoding: 'utf8' });
  watcher.on('change', (_event, name) => {
    if (typeof name === 'string' && name.endsWith(REPAIR_SUFFIX)) candidates.add(name);
    wake?.();
  });
  watcher.on('error', (error) => {
    watchError = error;
    wake?.();
  });
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  // One timer for the whole wait, not one more on every pass.
  const timedOut = timeoutMs === undefined ? undefined : sleep(timeoutMs, undefined, { signal: abort.signal }).catch(() => undefined);
  try {
    for (const name of fs.readdirSync(held)) if (name.endsWith(REPAIR_SUFFIX)) candidates.add(name);
    let retryDelay = 1;
    for (;;) {
      if (watchError !== undefined) throw new HelperError(`watching ${describeFsError(watchError, directory)}`);
      let refused = false;
      for (const name of [...candidates].sort()) {
        const attempt = attemptConnection(`${held}/${name}`, `${checkedDirectory}/${name}`, grants);
        if ('connected' in attempt) return attempt.connected;
        if ('refused' in attempt) refused = true;
        else {
          if ('notAllowed' in attempt) warn(`skipping ${attempt.notAllowed}: no rule that allows ${checkedDirectory} allows this socket`);
          candidates.delete(name); // gone, not a socket (a symlink is never followed here), or not allowed
        }
      }
      if (deadline !== undefined && Date.now() >= deadline)
        throw new HelperError(`no socket named *${REPAIR_SUFFIX} in ${directory} accepted a connection within ${timeoutMs! / 1000} s`);
      const changed = new Promise<void>((resolve) => (wake = resolve));
      const waits: Promise<unknown>[] = [changed];
      if (refused) waits.push(sleep(retryDelay, undefined, { signal: abort.signal }).catch(() => undefined));
      if (timedOut !== undefined) waits.push(timedOut);
      await Promise.race(waits);
      retryDelay = refused ? Math.min(retryDelay * 2, MAX_RETRY_DELAY_MS) : 1;
    }
  } finally {
    abort.abort();
    watcher.close();
    fs.closeSync(dirFd);
  }
}

/** Connects to passt's repair socket: PATH itself, or the first *.repair socket in directory PATH. */
export async function connectToPasst(path: string, timeoutMs: number | undefined, policy: Policy, warn: (line: string) => void): Promise<Connection> {
  let resolved: string;
  let stats: fs.Stats;
  try {
    resolved = fs.realpathSync(path);
    stats = fs.statSync(resolved);
  } catch (error) {
    throw new HelperError(describeFsError(error, path));
  }
  if (stats.isDirectory()) return connectInDirectory(resolved, timeoutMs, policy, warn);
  if (stats.isSocket()) return connectToSocket(resolved, policy);
  throw new HelperError(`${path} is not a socket or a directory`);
}
