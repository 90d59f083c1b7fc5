// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 2: capabilities, ids, securebits, NO_NEW_PRIVS, on every thread.
//
// In two steps around connect(). Before connecting, every thread but the
// main one takes its final state (CAP_NET_ADMIN alone, under an
// unprivileged account), and the main thread keeps what reaching passt's
// socket and the second step need (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
// CAP_SYS_PTRACE, the id changes); native/capabilities.cc signals every
// thread, and every thread's /proc/self/task/TID/status is read back
// through a descriptor that holds that thread. Once connected and the peer
// checked, the second step is the main thread's alone: it takes the final
// state, reads itself back with system calls, and the threads of the
// process must be exactly those held (a thread started in between would be
// a copy of the main thread as it was). Any difference from the plan ends
// the helper.
import * as fs from 'node:fs';
import { native } from '../addon';
import { HelperError, isNativeFailure, systemMessage } from '../errors';
import type { CredentialChange, HeldThread, OwnCredentials } from '../native.d';
import { lookUpAccount } from './account';

// linux/capability.h
/** tgkill(2)'s errno when no real-time signal can be queued. */
const EAGAIN = 11;

const CAP_DAC_OVERRIDE = 1;
const CAP_DAC_READ_SEARCH = 2;
const CAP_SETGID = 6;
const CAP_SETUID = 7;
const CAP_SETPCAP = 8;
const CAP_NET_ADMIN = 12;
const CAP_SYS_PTRACE = 19;

function capabilityMask(capabilities: readonly number[]): bigint {
  return capabilities.reduce((mask, cap) => mask | (1n << BigInt(cap)), 0n);
}

/** The credential lines of one thread's /proc/.../status. */
interface ThreadCredentials extends OwnCredentials {
  tid: number;
  /** 0 none, 1 strict, 2 filter. */
  seccomp: number;
}

/**
 * The fields of one thread's status, each line split once at its first ":"
 * (the first line of a name wins), the value trimmed: one pass over the
 * text instead of a regular expression built and run per field.
 */
function statusFields(status: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of status.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon);
    if (!fields.has(name)) fields.set(name, line.slice(colon + 1).trim());
  }
  return fields;
}

function parseStatus(tid: number, status: string): ThreadCredentials {
  const fields = statusFields(status);
  const field = (name: string): string => {
    const value = fields.get(name);
    if (value === undefined) throw new HelperError(`thread ${tid}: no ${name} line in its status`);
    return value;
  };
  const numbers = (name: string): number[] => {
    const value = field(name);
    return value === '' ? [] : value.split(/\s+/).map(Number);
  };
  const hex = (name: string): bigint => BigInt(`0x${field(name)}`);
  return {
    tid,
    inheritable: hex('CapInh'),
    permitted: hex('CapPrm'),
    effective: hex('CapEff'),
    bounding: hex('CapBnd'),
    ambient: hex('CapAmb'),
    uids: numbers('Uid'),
    gids: numbers('Gid'),
    groups: numbers('Groups'),
    noNewPrivs: Number(field('NoNewPrivs')),
    seccomp: Number(field('Seccomp')),
  };
}

/** Every thread of this process. A thread that exits while listed is skipped. */
function readThreads(): ThreadCredentials[] {
  const threads: ThreadCredentials[] = [];
  for (const tid of fs.readdirSync('/proc/self/task')) {
    let status: string;
    try {
      status = fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
    } catch {
      continue;
    }
    threads.push(parseStatus(Number(tid), status));
  }
  return threads;
}

/** What the first step planned and the second needs. */
export interface Privileges {
  /** The main thread's second step. */
  change: CredentialChange;
  /** The final state: every other thread's since the first step, the main thread's after the second. */
  final: OwnCredentials;
  /** The threads the first step verified, held until the second (their descriptors are closed by it). */
  threads: HeldThread[];
}

function lastCapability(): number {
  return Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
}

/** A native failure of gate 2 in words. */
function credentialsFailure(error: unknown): unknown {
  if (!isNativeFailure(error)) return error;
  if (error.code === 'THREAD_UNRESPONSIVE')
    return new HelperError(`thread ${error.tid as number} did not answer signal ${error.signal as number}: cannot drop its privileges`);
  if (error.code === 'SIGNAL_FAILED')
    return new HelperError(
      `cannot signal thread ${error.tid as number} to drop its privileges: ${systemMessage(error.errno)}${error.errno === EAGAIN ? ' (no room to queue a signal: the pending-signal limit, RLIMIT_SIGPENDING, ulimit -i, is reached)' : ''}`,
    );
  if (error.code === 'CREDENTIALS_FAILED') return new HelperError(`cannot drop privileges: ${error.step as string} failed: ${systemMessage(error.errno)}`);
  if (error.code === 'HOLD_THREAD_FAILED' && error.tid !== undefined)
    return new HelperError(`cannot read back thread ${error.tid as number}'s credentials: ${systemMessage(error.errno)}`);
  return new HelperError(`cannot drop privileges (${error.code}): ${systemMessage(error.errno)}`);
}

function sameList(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

function sorted(list: readonly number[]): number[] {
  return [...list].sort((a, b) => a - b);
}

/** Throws naming `thread` and the first line that differs from `expected`; with `allowLess`, a capability set may hold less than planned. */
function verifyThread(tid: number, found: OwnCredentials, expected: OwnCredentials, allowLess: boolean): void {
  const wrong = (what: string, value: unknown, wanted: unknown): never => {
    throw new HelperError(`thread ${tid} kept privileges: ${what} is ${String(value)}, expected ${String(wanted)}`);
  };
  for (const set of ['inheritable', 'permitted', 'effective', 'bounding', 'ambient'] as const) {
    const ok = allowLess ? (found[set] & ~expected[set]) === 0n : found[set] === expected[set];
    if (!ok) wrong(`its ${set} capability set`, `0x${found[set].toString(16)}`, `0x${expected[set].toString(16)}`);
  }
  if (!sameList(found.uids, expected.uids)) wrong('Uid', found.uids, expected.uids);
  if (!sameList(found.gids, expected.gids)) wrong('Gid', found.gids, expected.gids);
  if (!sameList(sorted(found.groups), sorted(expected.groups))) wrong('Groups', found.groups, expected.groups);
  if (found.noNewPrivs !== 1) wrong('NoNewPrivs', found.noNewPrivs, 1);
}

/** Closes the descriptors that hold the threads. */
function release(threads: readonly HeldThread[]): void {
  for (const { fd } of threads) fs.closeSync(fd);
}

/**
 * Gate 2, first step, before connecting. Every thread but the main one
 * takes the final state: CAP_NET_ADMIN alone in its permitted and
 * effective sets, the sandbox account's ids when the helper runs with uid,
 * gid or group 0 (`user`). The main thread keeps CAP_NET_ADMIN, what
 * reaching the socket needs (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), what
 * opening another process's root and naming the peer's executable need
 * (CAP_SYS_PTRACE, when held) and what the second step needs (CAP_SETUID,
 * CAP_SETGID and CAP_SETPCAP, when the ids must change). Securebits are set
 * and locked and every thread's bounding set, the main one's included,
 * shrinks to CAP_NET_ADMIN when CAP_SETPCAP allows. Every thread is held
 * and read back.
 */
export function dropToReachSocket(user: string): Privileges {
  const last = lastCapability();
  let start: OwnCredentials;
  try {
    start = native.readOwnCredentials(last);
  } catch (error) {
    throw credentialsFailure(error);
  }
  const held = (cap: number): boolean => (start.permitted & (1n << BigInt(cap))) !== 0n;
  if (!held(CAP_NET_ADMIN))
    throw new HelperError('started without CAP_NET_ADMIN, which TCP_REPAIR needs: run it as root or with CAP_NET_ADMIN as an ambient capability');

  const privileged = [...start.uids, ...start.gids, ...start.groups].includes(0);
  const account = privileged ? lookUpAccount(user) : null;
  if (account && !(held(CAP_SETUID) && held(CAP_SETGID) && held(CAP_SETPCAP)))
    throw new HelperError(
      `runs with uid, gid or group 0 but without CAP_SETUID, CAP_SETGID and CAP_SETPCAP: cannot become "${account.name}" keeping CAP_NET_ADMIN`,
    );
  const setpcap = held(CAP_SETPCAP);
  const keep = [CAP_NET_ADMIN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH];
  // For gate 1 to open /proc/PID/root of another uid's process (KubeVirt's
  // form), and to read the peer's /proc/PID/exe for the audit log (passt
  // runs as another user and makes itself not dumpable). The second step
  // drops it.
  if (held(CAP_SYS_PTRACE)) keep.push(CAP_SYS_PTRACE);
  if (account) keep.push(CAP_SETUID, CAP_SETGID);
  if (setpcap) keep.push(CAP_SETPCAP);

  const ids = account && { uid: account.uid, gid: account.gid, groups: account.groups };
  const netAdmin = capabilityMask([CAP_NET_ADMIN]);
  const final: OwnCredentials = {
    inheritable: 0n,
    permitted: netAdmin,
    effective: netAdmin,
    bounding: setpcap ? netAdmin : start.bounding,
    ambient: 0n,
    uids: account ? [account.uid, account.uid, account.uid, account.uid] : start.uids,
    gids: account ? [account.gid, account.gid, account.gid, account.gid] : start.gids,
    groups: account ? account.groups : start.groups,
    noNewPrivs: 1,
  };
  const kept = capabilityMask(keep);
  const reachSocket: OwnCredentials = { ...start, inheritable: 0n, permitted: kept, effective: kept, bounding: final.bounding, ambient: 0n, noNewPrivs: 1 };
  // The main thread's bounding set takes its final state now too: it only
  // limits what execve() could grant, not what the thread holds, so the
  // capabilities the main thread keeps until the second step need no room
  // in it, and each drop after connecting would replace the credentials
  // again while passt waits.
  const bounding = setpcap ? [CAP_NET_ADMIN] : null;
  try {
    native.applyCredentials(
      { keep, lastCapability: last, lockSecurebits: setpcap, bounding, ids: null },
      // Securebits first: NO_SETUID_FIXUP keeps CAP_NET_ADMIN across the uid change.
      { keep: [CAP_NET_ADMIN], lastCapability: last, lockSecurebits: setpcap, bounding, ids },
    );
  } catch (error) {
    throw credentialsFailure(error);
  }

  let threads: HeldThread[];
  try {
    threads = native.holdThreads();
  } catch (error) {
    throw credentialsFailure(error);
  }
  try {
    for (const { tid, status } of threads) {
      if (status === undefined) continue; // exited since it was held: no later thread can pass for it
      if (tid === process.pid) verifyThread(tid, parseStatus(tid, status), reachSocket, true);
      else verifyThread(tid, parseStatus(tid, status), final, false);
    }
  } catch (error) {
    release(threads);
    throw error;
  }
  return { change: { keep: [CAP_NET_ADMIN], lastCapability: last, lockSecurebits: false, bounding: null, ids }, final, threads };
}

/**
 * Gate 2, second step, once connected and the peer checked: the main
 * thread takes the final state the others took in the first step and is
 * read back; then every thread of the process must be one the first step
 * held. The held descriptors are closed.
 */
export function dropToNetAdmin(privileges: Privileges): void {
  try {
    native.applyToCallingThread(privileges.change);
    verifyThread(process.pid, native.readOwnCredentials(privileges.change.lastCapability), privileges.final, false);
  } catch (error) {
    release(privileges.threads);
    throw credentialsFailure(error);
  }
  let late: number[];
  try {
    late = native.releaseThreads(privileges.threads);
  } catch (error) {
    throw credentialsFailure(error);
  }
  if (late.length > 0)
    throw new HelperError(`thread ${late[0]} started after gate 2's first step, as a copy of the main thread's privileges of then: refusing to run with it`);
}

/**
 * The telemetry forwarder's check of itself (src/telemetry/sandbox.ts):
 * the helper starts it with no capability, without uid, gid or group 0,
 * with NO_NEW_PRIVS and under its filter (src/telemetry/reporter.ts,
 * native/launcher.c). Every thread must show exactly that; the bounding set
 * stays as it was (emptying it takes CAP_SETPCAP, and with NO_NEW_PRIVS it
 * grants nothing).
 */
export function verifyUnprivileged(): void {
  for (const thread of readThreads()) {
    const wrong = (what: string, found: unknown): never => {
      throw new HelperError(`thread ${thread.tid} is privileged: ${what} is ${String(found)}`);
    };
    for (const set of ['inheritable', 'permitted', 'effective', 'ambient'] as const)
      if (thread[set] !== 0n) wrong(`its ${set} capability set`, `0x${thread[set].toString(16)}`);
    if ([...thread.uids, ...thread.gids, ...thread.groups].includes(0)) wrong('Uid, Gid or Groups', [thread.uids, thread.gids, thread.groups].join(' / '));
    if (thread.noNewPrivs !== 1) wrong('NoNewPrivs', thread.noNewPrivs);
    if (thread.seccomp !== 2) wrong('Seccomp', thread.seccomp);
  }
}
