// Reaching passt's repair socket, given as a socket or as a directory to
// wait in.
//
// The socket file is opened (O_PATH, never through a symlink at the end) and
// connected to through /proc/self/fd/N: the helper reaches exactly the inode
// it opened, and paths longer than sun_path's 108 bytes work.
import * as fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { native } from './addon';
import { HelperError, isNativeFailure, systemMessage } from './errors';

const O_PATH = 0o10000000;
const REPAIR_SUFFIX = '.repair';
/** A refused connection (socket file bound, passt not listening yet) is retried after 1, 2, 4 ... ms, at most this. */
const MAX_RETRY_DELAY_MS = 100;

export interface Connection {
  sock: number;
  /** The socket file connected to, symlinks resolved. */
  path: string;
}

type Attempt = { connected: Connection } | { refused: true } | { gone: true } | { notSocket: true };

function describeFsError(error: unknown, path: string): string {
  const code = (error as NodeJS.ErrnoException).code;
  const errno = (error as NodeJS.ErrnoException).errno;
  return `${path}: ${errno === undefined ? String(error) : systemMessage(-errno)}${code ? ` (${code})` : ''}`;
}

/** Opens the socket file `path` refers to without following a symlink at its end, and connects to it. */
function attemptConnection(openPath: string, displayPath: string): Attempt {
  let pathFd: number;
  try {
    pathFd = fs.openSync(openPath, O_PATH | fs.constants.O_NOFOLLOW);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { gone: true };
    throw new HelperError(`cannot open ${describeFsError(error, displayPath)}`);
  }
  try {
    if (!fs.fstatSync(pathFd).isSocket()) return { notSocket: true };
    const sock = native.connectToSocketFile(pathFd);
    return { connected: { sock, path: displayPath } };
  } catch (error) {
    if (!isNativeFailure(error) || error.code !== 'CONNECT_FAILED') throw error;
    if (error.errno === 111 /* ECONNREFUSED */) return { refused: true };
    if (error.errno === 2 /* ENOENT */) return { gone: true };
    throw new HelperError(`cannot connect to ${displayPath}: ${systemMessage(error.errno)}`);
  } finally {
    fs.closeSync(pathFd);
  }
}

function connectToSocket(path: string): Connection {
  const attempt = attemptConnection(path, path);
  if ('connected' in attempt) return attempt.connected;
  if ('refused' in attempt) throw new HelperError(`cannot connect to ${path}: ${systemMessage(111)}`);
  if ('notSocket' in attempt) throw new HelperError(`${path} is not a socket`);
  throw new HelperError(`${path}: ${systemMessage(2)}`);
}

/**
 * Waits in `directory` for a socket named *.repair that accepts a
 * connection. The watch starts before the directory is listed, so a socket
 * created in between is seen either way.
 */
async function connectInDirectory(directory: string, timeoutMs: number | undefined): Promise<Connection> {
  const dirFd = fs.openSync(directory, O_PATH | fs.constants.O_DIRECTORY);
  const held = `/proc/self/fd/${dirFd}`;
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
  try {
    for (const name of fs.readdirSync(held)) if (name.endsWith(REPAIR_SUFFIX)) candidates.add(name);
    let retryDelay = 1;
    for (;;) {
      if (watchError !== undefined) throw new HelperError(`watching ${describeFsError(watchError, directory)}`);
      let refused = false;
      for (const name of [...candidates].sort()) {
        const attempt = attemptConnection(`${held}/${name}`, `${directory}/${name}`);
        if ('connected' in attempt) return attempt.connected;
        if ('refused' in attempt) refused = true;
        else candidates.delete(name); // gone, or not a socket (a symlink is never followed here)
      }
      const remaining = deadline === undefined ? Infinity : deadline - Date.now();
      if (remaining <= 0)
        throw new HelperError(`no socket named *${REPAIR_SUFFIX} in ${directory} accepted a connection within ${timeoutMs! / 1000} s`);
      const changed = new Promise<void>((resolve) => (wake = resolve));
      const waits: Promise<unknown>[] = [changed];
      if (refused) waits.push(sleep(retryDelay, undefined, { signal: abort.signal }).catch(() => undefined));
      if (remaining !== Infinity) waits.push(sleep(remaining, undefined, { signal: abort.signal }).catch(() => undefined));
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
export async function connectToPasst(path: string, timeoutMs: number | undefined): Promise<Connection> {
  let resolved: string;
  let stats: fs.Stats;
  try {
    resolved = fs.realpathSync(path);
    stats = fs.statSync(resolved);
  } catch (error) {
    throw new HelperError(describeFsError(error, path));
  }
  if (stats.isDirectory()) return connectInDirectory(resolved, timeoutMs);
  if (stats.isSocket()) return connectToSocket(resolved);
  throw new HelperError(`${path} is not a socket or a directory`);
}
