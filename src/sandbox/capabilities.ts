// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 2: capabilities, ids, securebits, NO_NEW_PRIVS, on every thread.
//
// In two steps around connect(): first down to what reaching passt's socket
// needs (CAP_NET_ADMIN, the two DAC overrides for a socket in another user's
// 0700 directory, and what the second step needs), then, once connected and
// the peer checked, to CAP_NET_ADMIN alone under an unprivileged account.
// native/capabilities.cc applies each step to every thread; after each step
// every thread's /proc/self/task/TID/status is read back and any difference
// from the plan ends the helper.
import * as fs from 'node:fs';
import { native } from '../addon';
import { HelperError, isNativeFailure, systemMessage } from '../errors';
import type { CredentialChange } from '../native.d';
import { type Account, lookUpAccount } from './account';

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
interface ThreadCredentials {
  tid: number;
  inheritable: bigint;
  permitted: bigint;
  effective: bigint;
  bounding: bigint;
  ambient: bigint;
  /** Real, effective, saved, filesystem. */
  uids: number[];
  gids: number[];
  groups: number[];
  noNewPrivs: number;
  /** 0 none, 1 strict, 2 filter. */
  seccomp: number;
}

function parseStatus(tid: number, status: string): ThreadCredentials {
  const field = (name: string): string => {
    const match = new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(status);
    if (!match) throw new HelperError(`thread ${tid}: no ${name} line in its status`);
    return match[1]!.trim();
  };
  const numbers = (name: string): number[] => (field(name) === '' ? [] : field(name).split(/\s+/).map(Number));
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

/** What the first step found and the second needs. */
export interface Privileges {
  /** CAP_SETPCAP was held: securebits are locked and the bounding set shrinks. */
  setpcap: boolean;
  /** The bounding set as started, which stays when it cannot shrink. */
  startBounding: bigint;
  /** The account to become, or null when the helper already runs without uid, gid or group 0. */
  account: Account | null;
  uids: number[];
  gids: number[];
  groups: number[];
}

function lastCapability(): number {
  return Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
}

function apply(change: CredentialChange): void {
  try {
    native.applyCredentials(change);
  } catch (error) {
    if (!isNativeFailure(error)) throw error;
    if (error.code === 'THREAD_UNRESPONSIVE')
      throw new HelperError(`thread ${error.tid as number} did not answer signal ${error.signal as number}: cannot drop its privileges`);
    if (error.code === 'SIGNAL_FAILED')
      throw new HelperError(
        `cannot signal thread ${error.tid as number} to drop its privileges: ${systemMessage(error.errno)}${error.errno === EAGAIN ? ' (no room to queue a signal: the pending-signal limit, RLIMIT_SIGPENDING, ulimit -i, is reached)' : ''}`,
      );
    if (error.code === 'CREDENTIALS_FAILED')
      throw new HelperError(`cannot drop privileges: ${error.step as string} failed: ${systemMessage(error.errno)}`);
    throw new HelperError(`cannot drop privileges (${error.code}): ${systemMessage(error.errno)}`);
  }
}

function sameList(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

/** Reads every thread back; throws naming the first thread and line that differ from `expected`. */
function verifyEveryThread(expected: Omit<ThreadCredentials, 'tid' | 'seccomp'>, allowLess: boolean): void {
  for (const thread of readThreads()) {
    const wrong = (what: string, found: unknown, wanted: unknown): never => {
      throw new HelperError(`thread ${thread.tid} kept privileges: ${what} is ${String(found)}, expected ${String(wanted)}`);
    };
    for (const set of ['inheritable', 'permitted', 'effective', 'bounding', 'ambient'] as const) {
      const ok = allowLess ? (thread[set] & ~expected[set]) === 0n : thread[set] === expected[set];
      if (!ok) wrong(`its ${set} capability set`, `0x${thread[set].toString(16)}`, `0x${expected[set].toString(16)}`);
    }
    if (!sameList(thread.uids, expected.uids)) wrong('Uid', thread.uids, expected.uids);
    if (!sameList(thread.gids, expected.gids)) wrong('Gid', thread.gids, expected.gids);
    if (!sameList([...thread.groups].sort((a, b) => a - b), expected.groups)) wrong('Groups', thread.groups, expected.groups);
    if (thread.noNewPrivs !== 1) wrong('NoNewPrivs', thread.noNewPrivs, 1);
  }
}

/**
 * Gate 2, first step, before connecting: every thread keeps only
 * CAP_NET_ADMIN, what reaching the socket needs (CAP_DAC_OVERRIDE,
 * CAP_DAC_READ_SEARCH), what opening another process's root and naming
 * the peer's executable need (CAP_SYS_PTRACE, when held) and what the second step needs (CAP_SETUID,
 * CAP_SETGID and CAP_SETPCAP, when the ids must change). Securebits are set
 * and locked and the bounding set shrinks when CAP_SETPCAP allows.
 */
export function dropToReachSocket(user: string): Privileges {
  const [start] = readThreads().filter((thread) => thread.tid === process.pid);
  if (!start) throw new HelperError('cannot read the main thread in /proc/self/task');
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
  // drops it, and checks every thread for it.
  if (held(CAP_SYS_PTRACE)) keep.push(CAP_SYS_PTRACE);
  if (account) keep.push(CAP_SETUID, CAP_SETGID);
  if (setpcap) keep.push(CAP_SETPCAP);
  apply({ keep, lastCapability: lastCapability(), lockSecurebits: setpcap, dropBoundingSet: setpcap, ids: null });

  const kept = capabilityMask(keep);
  const privileges: Privileges = {
    setpcap,
    startBounding: start.bounding,
    account,
    uids: start.uids,
    gids: start.gids,
    groups: [...start.groups].sort((a, b) => a - b),
  };
  verifyEveryThread(
    {
      inheritable: 0n,
      permitted: kept,
      effective: kept,
      bounding: setpcap ? kept : start.bounding,
      ambient: 0n,
      uids: privileges.uids,
      gids: privileges.gids,
      groups: privileges.groups,
      noNewPrivs: 1,
    },
    true,
  );
  return privileges;
}

/**
 * Gate 2, second step, once connected and the peer checked: every thread
 * becomes the unprivileged account (when it ran with uid, gid or group 0)
 * and keeps CAP_NET_ADMIN alone, in the permitted and effective sets; the
 * bounding set too when CAP_SETPCAP was held.
 */
export function dropToNetAdmin(privileges: Privileges): void {
  const { account, setpcap } = privileges;
  apply({
    keep: [CAP_NET_ADMIN],
    lastCapability: lastCapability(),
    lockSecurebits: false,
    dropBoundingSet: setpcap,
    ids: account && { uid: account.uid, gid: account.gid, groups: account.groups },
  });
  const netAdmin = capabilityMask([CAP_NET_ADMIN]);
  verifyEveryThread(
    {
      inheritable: 0n,
      permitted: netAdmin,
      effective: netAdmin,
      bounding: setpcap ? netAdmin : privileges.startBounding,
      ambient: 0n,
      uids: account ? [account.uid, account.uid, account.uid, account.uid] : privileges.uids,
      gids: account ? [account.gid, account.gid, account.gid, account.gid] : privileges.gids,
      groups: account ? account.groups : privileges.groups,
      noNewPrivs: 1,
    },
    false,
  );
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
