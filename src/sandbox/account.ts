// SPDX-License-Identifier: GPL-2.0-or-later
// The unprivileged account a helper started as root becomes: from
// /etc/passwd and /etc/group, read while still privileged (no NSS, no
// libc: the helper never loads modules for name lookups).
import * as fs from 'node:fs';
import { HelperError } from '../errors';

export interface Account {
  name: string;
  uid: number;
  gid: number;
  /** The primary group and every group of /etc/group that lists the account, as initgroups(3) would. */
  groups: number[];
}

/**
 * The helper's own system account, created by the install step
 * (bin/passt-repair-install-policy, a package's postinst). No other process
 * runs as it, so none can signal the helper or lower its limits.
 */
export const SANDBOX_ACCOUNT = 'passt-repair';
/** The account used when SANDBOX_ACCOUNT does not exist, with a warning: shared with other daemons. */
export const FALLBACK_ACCOUNT = 'nobody';

/** The sandbox account's name, and whether it is the shared fallback. */
export interface SandboxAccountChoice {
  name: string;
  fallback: boolean;
}

/**
 * The account the policy names; without one, SANDBOX_ACCOUNT when it
 * exists, else FALLBACK_ACCOUNT (`fallback` true: the caller warns).
 */
export function chooseSandboxAccount(user: string | undefined, passwd = '/etc/passwd'): SandboxAccountChoice {
  if (user !== undefined) return { name: user, fallback: false };
  return fields(passwd, SANDBOX_ACCOUNT) === undefined ? { name: FALLBACK_ACCOUNT, fallback: true } : { name: SANDBOX_ACCOUNT, fallback: false };
}

function fields(file: string, wanted: string): string[] | undefined {
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const columns = line.split(':');
    if (columns[0] === wanted) return columns;
  }
  return undefined;
}

function id(text: string | undefined, what: string): number {
  if (text === undefined || !/^\d+$/.test(text)) throw new HelperError(`${what} is not a number: "${text ?? ''}"`);
  return Number(text);
}

/** Looks `name` up; refuses an unknown account and one that would keep uid, gid or a group 0. */
export function lookUpAccount(name: string, passwd = '/etc/passwd', group = '/etc/group'): Account {
  const entry = fields(passwd, name);
  if (!entry) throw new HelperError(`the sandbox account "${name}" is not in ${passwd}`);
  const uid = id(entry[2], `${passwd}: the uid of "${name}"`);
  const gid = id(entry[3], `${passwd}: the gid of "${name}"`);
  const groups = new Set([gid]);
  for (const line of fs.readFileSync(group, 'utf8').split('\n')) {
    const columns = line.split(':');
    if (columns.length >= 4 && columns[3]!.split(',').includes(name)) groups.add(id(columns[2], `${group}: the gid of "${columns[0]}"`));
  }
  if (uid === 0 || groups.has(0))
    throw new HelperError(`the sandbox account "${name}" has uid or group 0: it must be an unprivileged account`);
  return { name, uid, gid, groups: [...groups].sort((a, b) => a - b) };
}
