// SPDX-License-Identifier: GPL-2.0-or-later
// Reaching passt's repair socket, given as a socket or as a directory to
// wait in, and checking who is behind it.
//
// Gate 1 (src/policy/path-gate.ts) resolves PATH and holds the object it
// decided on; this file connects to exactly that object (through
// /proc/self/fd/N, which also works for paths longer than sun_path's 108
// bytes) and runs gate 4 (src/policy/peer.ts) on the connection. In
// directory mode both gates run per socket found: one that fails either is
// skipped with a warning and the helper keeps waiting, so a socket planted
// by someone else cannot stop the migration.
import * as fs from 'node:fs';
import { native } from './addon';
import { HelperError, Refusal, describeNativeFailure, isNativeFailure, systemMessage } from './errors';
import type { Policy, Rule } from './policy';
import {
  closeRoot,
  confirmAlive,
  confirmBinding,
  describeLocation,
  holdEntry,
  holdObject,
  openHostRoot,
  pinProcessRoot,
  rulesAllowingDirectory,
  rulesAllowingSocket,
  rulesForRoot,
  splitProcessRoot,
  type HeldObject,
  type ResolutionRoot,
  type RootProcess,
} from './policy/path-gate';
import { checkPeer, type AllowedPeer } from './policy/peer';

const REPAIR_SUFFIX = '.repair';
/** A refused connection (socket file bound, passt not listening yet, or its backlog full) is retried after 1, 2, 4 ... ms, at most this. */
const MAX_RETRY_DELAY_MS = 100;
const ENOENT = 2;
const EAGAIN = 11;
const ECONNREFUSED = 111;

/** A connection to a socket gate 1 allowed. */
export interface ConnectedSocket {
  sock: number;
  /** The socket's canonical path, inside the root of `rootProcess` when there is one. */
  path: string;
  /** The process whose root the path is in (/proc/PID/root/...), or undefined for a host path. */
  rootProcess: RootProcess | undefined;
  /** The socket file's owner, for the rules' sameOwner. */
  owner: number;
  /** The rules that allow connecting to it: gate 4 checks the peer against these. */
  rules: readonly Rule[];
}

/** A connection that passed gates 1 and 4. */
export interface Reached {
  connection: ConnectedSocket;
  allowed: AllowedPeer;
}

type Attempt = { connected: number } | { refused: 'refused' | 'busy' } | { gone: true };

/** Connects to the socket held; a refused or busy listener is reported, not thrown. */
function attemptConnection(held: HeldObject, where: string): Attempt {
  try {
    return { connected: native.connectToSocketFile(held.fd) };
  } catch (error) {
    if (!isNativeFailure(error)) throw error;
    if (error.code !== 'CONNECT_FAILED') throw new HelperError(describeNativeFailure(error));
    if (error.errno === ECONNREFUSED) return { refused: 'refused' };
    if (error.errno === EAGAIN) return { refused: 'busy' };
    if (error.errno === ENOENT) return { gone: true };
    throw new HelperError(`cannot connect to ${where}: ${systemMessage(error.errno)}`);
  }
}

/** Gate 4 on a fresh connection; the socket is closed if the peer is refused. */
function checkConnected(connection: ConnectedSocket): Reached {
  try {
    return { connection, allowed: checkPeer(connection) };
  } catch (error) {
    fs.closeSync(connection.sock);
    throw error;
  }
}

function connectToSocket(root: ResolutionRoot, held: HeldObject, grants: readonly Rule[], policy: Policy): Reached {
  const where = describeLocation(held.path, root.process);
  const rules = rulesAllowingSocket(grants, held.path);
  if (rules.length === 0) throw new Refusal('path', `${where}: no rule of ${policy.file} allows connecting to this socket`);
  confirmBinding(root, held);
  const attempt = attemptConnection(held, where);
  if ('refused' in attempt)
    throw new HelperError(`cannot connect to ${where}: ${attempt.refused === 'refused' ? systemMessage(ECONNREFUSED) : 'its listen backlog is full'}`);
  if ('gone' in attempt) throw new HelperError(`${where}: ${systemMessage(ENOENT)}`);
  return checkConnected({ sock: attempt.connected, path: held.path, rootProcess: root.process, owner: held.owner, rules });
}

/**
 * One socket found in the directory, through both gates: connected and its
 * peer allowed, refused (retry later), or skipped for good with a warning.
 */
function tryCandidate(root: ResolutionRoot, directory: HeldObject, name: string, grants: readonly Rule[], warn: (line: string) => void): Reached | 'retry' | 'skip' {
  const where = describeLocation(`${directory.path}/${name}`, root.process);
  let held: HeldObject | undefined;
  try {
    held = holdEntry(root, directory, name);
    if (held === undefined) return 'skip'; // gone, or not a socket (a symlink is never followed here)
    const rules = rulesAllowingSocket(grants, held.path);
    if (rules.length === 0) {
      warn(`skipping ${where}: no rule that allows ${describeLocation(directory.path, root.process)} allows this socket`);
      return 'skip';
    }
    confirmBinding(root, held);
    const attempt = attemptConnection(held, where);
    if ('refused' in attempt) return 'retry';
    if ('gone' in attempt) return 'skip';
    return checkConnected({ sock: attempt.connected, path: held.path, rootProcess: root.process, owner: held.owner, rules });
  } catch (error) {
    if (!(error instanceof Refusal)) throw error;
    // The root's process gone: nothing in it can be served.
    if (root.process !== undefined && !isAlive(root)) throw error;
    warn(`skipping ${where}: gate ${error.gate === 'path' ? 1 : 4} (${error.gate}) refused: ${error.message}`);
    return 'skip';
  } finally {
    if (held !== undefined) fs.closeSync(held.fd);
  }
}

function isAlive(root: ResolutionRoot): boolean {
  try {
    confirmAlive(root);
    return true;
  } catch {
    return false;
  }
}

/**
 * Waits in the held directory for a socket named *.repair that passes
 * gates 1 and 4. The watch starts before the directory is listed, so a
 * socket created in between is seen either way. --timeout bounds the whole
 * wait: no connect() blocks.
 */
async function connectInDirectory(
  root: ResolutionRoot,
  directory: HeldObject,
  timeoutMs: number | undefined,
  policy: Policy,
  grantsInRoot: readonly Rule[],
  warn: (line: string) => void,
): Promise<Reached> {
  const shownDirectory = describeLocation(directory.path, root.process);
  const grants = rulesAllowingDirectory(grantsInRoot, directory.path);
  if (grants.length === 0) throw new Refusal('path', `${shownDirectory}: no rule of ${policy.file} allows waiting in this directory`);
  confirmBinding(root, directory);
  const held = `/proc/self/fd/${directory.fd}`;
  const candidates = new Set<string>();
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
  // Plain timers that wake the loop, cleared when it ends: cancelling
  // timers/promises' sleeps with an AbortController made an AbortError
  // each, ~0.2 ms after connect while passt waited. One timer for the whole
  // wait, not one more on every pass.
  let expired = false;
  const timeout =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          expired = true;
          wake?.();
        }, timeoutMs);
  let retry: NodeJS.Timeout | undefined;
  try {
    for (const name of fs.readdirSync(held)) if (name.endsWith(REPAIR_SUFFIX)) candidates.add(name);
    let retryDelay = 1;
    for (;;) {
      if (watchError !== undefined) throw new HelperError(`watching ${shownDirectory}: ${(watchError as Error).message}`);
      let refused = false;
      for (const name of [...candidates].sort()) {
        const outcome = tryCandidate(root, directory, name, grants, warn);
        if (outcome === 'retry') refused = true;
        else if (outcome === 'skip') candidates.delete(name);
        else return outcome;
      }
      if (expired)
        throw new HelperError(`no socket named *${REPAIR_SUFFIX} in ${shownDirectory} accepted a connection within ${timeoutMs! / 1000} s`);
      const changed = new Promise<void>((resolve) => (wake = resolve));
      if (refused) retry = setTimeout(() => wake?.(), retryDelay);
      await changed;
      clearTimeout(retry);
      retryDelay = refused ? Math.min(retryDelay * 2, MAX_RETRY_DELAY_MS) : 1;
    }
  } finally {
    clearTimeout(timeout);
    clearTimeout(retry);
    watcher.close();
  }
}

/**
 * Connects to passt's repair socket: PATH itself, or the first *.repair
 * socket in directory PATH that passes both gates. PATH may be written
 * /proc/PID/root/REST (see src/policy/path-gate.ts). Every descriptor gate 1
 * held is closed before this returns: only the connection is left.
 */
export async function connectToPasst(given: string, timeoutMs: number | undefined, policy: Policy, warn: (line: string) => void): Promise<Reached> {
  const { pid, inside } = splitProcessRoot(given);
  const root = pid === undefined ? openHostRoot() : pinProcessRoot(pid);
  try {
    const grants = rulesForRoot(policy, root);
    const held = holdObject(root, inside);
    try {
      if (held.kind === 'directory') return await connectInDirectory(root, held, timeoutMs, policy, grants, warn);
      return connectToSocket(root, held, grants, policy);
    } finally {
      fs.closeSync(held.fd);
    }
  } finally {
    closeRoot(root);
  }
}
