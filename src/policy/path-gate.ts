// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 1, the path policy: which socket or directory the helper may connect
// to or wait in, decided on the object it holds open, never on text the
// kernel renders for it.
//
// The helper resolves PATH itself, one component at a time from a root it
// holds: "/" of its own mount namespace (a host path), or the root of a
// pinned process for a path written /proc/PID/root/REST (KubeVirt's form).
// Each component is opened with openat2() so that no link is ever followed
// by the kernel; a symlink's target is read and walked the same way (an
// absolute one from the same root, so a process's symlinks never leave its
// root), ".." pops the helper's own stack and never goes above the root, and
// symlinks on /proc (magic links such as /proc/PID/root or /proc/PID/fd/N,
// which lead into other mount namespaces) are refused. The canonical path a
// rule is matched against is built from the names the helper opened. The
// object must be a socket or a directory, not deleted, on a mount of the
// namespace it was resolved in; and before it is used the canonical path is
// resolved once more, links forbidden, and must reach the very object held
// (device, inode and mount id), so a swap in between is refused.
import * as fs from 'node:fs';
import { native } from '../addon';
import { HelperError, Refusal, isNativeFailure, systemMessage } from '../errors';
import type { ObjectStat } from '../native.d';
import type { Pattern, Policy, ProcessRootRule, Rule } from './load';

// sys/stat.h
const S_IFSOCK = 0o140000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;
/** The kernel's own limit on symlinks in one resolution (MAXSYMLINKS). */
const MAX_SYMLINKS = 40;
const EPERM = 1;
const ENOENT = 2;
const ESRCH = 3;
const EACCES = 13;

/** PATH written as /proc/PID/root/REST: a path inside the root of process PID. */
/** include/linux/threads.h: the largest pid a 64-bit kernel gives. */
const PID_MAX_LIMIT = 4194304;

const PROCESS_ROOT_FORM = /^\/proc\/([1-9][0-9]{0,9})\/root(\/.*)?$/;

/** A process whose root a path was resolved in, pinned and its ids read. */
export interface RootProcess {
  pid: number;
  /** Real, effective, saved and filesystem uids, as /proc/PID/status gives them to the helper. */
  uids: readonly number[];
  gids: readonly number[];
}

/** Where a path is resolved: the helper's own root, or a pinned process's. */
export interface ResolutionRoot {
  fd: number;
  /** undefined: the helper's own root and mount namespace. */
  process: RootProcess | undefined;
  /** The mounts of the namespace the root belongs to: mount id -> filesystem type. */
  mounts: ReadonlyMap<number, string>;
  /** The pidfd that pins `process`; -1 for the host. */
  pidfd: number;
  /** /proc/PID held open; -1 for the host. */
  procFd: number;
}

/** A socket or directory held open (O_PATH) with the path the helper built for it. */
export interface HeldObject {
  fd: number;
  kind: 'socket' | 'directory';
  /** Canonical, absolute, inside the root it was resolved in. */
  path: string;
  owner: number;
  stat: ObjectStat;
}

/** How a path is named in messages: as is, or with the process whose root it is in. */
export function describeLocation(insidePath: string, process: RootProcess | undefined): string {
  return process === undefined ? insidePath : `${insidePath} in the root of pid ${process.pid}`;
}

function refuse(message: string): never {
  throw new Refusal('path', message);
}

function parseMounts(mountinfo: string): Map<number, string> {
  const mounts = new Map<number, string>();
  for (const line of mountinfo.split('\n')) {
    const separator = line.indexOf(' - ');
    if (separator < 0) continue;
    mounts.set(Number(line.slice(0, line.indexOf(' '))), line.slice(separator + 3).split(' ')[0]!);
  }
  return mounts;
}

function closeIfOpen(fd: number): void {
  if (fd >= 0) fs.closeSync(fd);
}

export function closeRoot(root: ResolutionRoot): void {
  closeIfOpen(root.fd);
  closeIfOpen(root.pidfd);
  closeIfOpen(root.procFd);
}

/** Whether the process a pidfd pins still runs: fdinfo's "Pid:" turns -1 once it has exited. */
function pidfdAlive(pidfd: number): boolean {
  const line = /^Pid:\s*(-?\d+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${pidfd}`, 'utf8'));
  return line !== null && Number(line[1]) > 0;
}

function statusIds(status: string, name: 'Uid' | 'Gid'): number[] {
  const line = new RegExp(`^${name}:\\s*(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s*$`, 'm').exec(status);
  if (line === null) throw new HelperError(`no ${name} line in a process's status`);
  return line.slice(1, 5).map(Number);
}

/**
 * Pins process `pid` and opens its root: /proc/PID held as a directory,
 * pidfd_open(), its status and mountinfo read through the held directory
 * (reads there fail once that process is gone, whoever gets the PID next),
 * its root opened through the held directory, and finally the pidfd
 * confirmed alive: all of it belongs to the one process the pidfd pins.
 */
export function pinProcessRoot(pid: number): ResolutionRoot {
  const root: ResolutionRoot = { fd: -1, process: undefined, mounts: new Map(), pidfd: -1, procFd: -1 };
  const failed = (step: string, error: unknown): never => {
    closeRoot(root);
    if (!isNativeFailure(error)) throw error;
    if (error.errno === ENOENT || error.errno === ESRCH) refuse(`process ${pid} (in /proc/${pid}/root) does not exist or has exited`);
    const hint = error.errno === EACCES || error.errno === EPERM ? " (another user's process root needs CAP_SYS_PTRACE)" : '';
    refuse(`cannot ${step} of process ${pid}: ${systemMessage(error.errno)}${hint}`);
  };
  try {
    root.procFd = native.openProcessDirectory(pid);
  } catch (error) {
    failed('open the /proc entry', error);
  }
  let status = '';
  let step = 'open a pidfd';
  try {
    root.pidfd = native.pidfdOpen(pid);
    step = 'read the mounts';
    root.mounts = parseMounts(native.readProcessFile(root.procFd, 'mountinfo'));
    step = 'open the root';
    root.fd = native.openProcessRoot(root.procFd);
    // Its ids as they are once the root is held: a process that changed
    // them (setuid) before is judged on what it is now.
    step = 'read the status';
    status = native.readProcessFile(root.procFd, 'status');
  } catch (error) {
    failed(step, error);
  }
  try {
    if (!pidfdAlive(root.pidfd)) refuse(`process ${pid} exited while its root was being opened`);
    root.process = { pid, uids: statusIds(status, 'Uid'), gids: statusIds(status, 'Gid') };
  } catch (error) {
    closeRoot(root);
    throw error;
  }
  return root;
}

export function openHostRoot(): ResolutionRoot {
  const fd = native.openHostRoot();
  return { fd, process: undefined, mounts: parseMounts(fs.readFileSync('/proc/self/mountinfo', 'utf8')), pidfd: -1, procFd: -1 };
}

/** The root PATH is to be resolved in and what to resolve there: REST of /proc/PID/root/REST, or PATH itself. */
export function splitProcessRoot(given: string): { pid: number | undefined; inside: string } {
  // Not normalized as text: ".." is the walk's to resolve (after a symlink,
  // "a/.." is not where "a" was), and it never leaves the root.
  const absolute = given.startsWith('/') ? given : `${process.cwd()}/${given}`;
  const form = PROCESS_ROOT_FORM.exec(absolute);
  if (form === null) return { pid: undefined, inside: absolute };
  const pid = Number(form[1]);
  // The kernel's PID_MAX_LIMIT: a larger number names no process (and would
  // wrap to another one in a 32-bit pid).
  if (pid > PID_MAX_LIMIT) refuse(`/proc/${form[1]}/root: ${form[1]} is not a process id (at most ${PID_MAX_LIMIT})`);
  return { pid, inside: form[2] ?? '/' };
}

/** Fails unless the process is still the one pinned: a root of a process that is gone lends nothing. */
export function confirmAlive(root: ResolutionRoot): void {
  if (root.process !== undefined && !pidfdAlive(root.pidfd)) refuse(`process ${root.process.pid}, whose root the path is in, has exited`);
}

function components(text: string): string[] {
  return text.split('/').filter((name) => name !== '' && name !== '.');
}

/** The end of a walk that stopped at a name that does not exist: what does, and what is left. */
export interface PartialWalk {
  /** The deepest existing ancestor, canonical. */
  existing: string;
  /** The components after it, as written. */
  missing: string[];
}

/**
 * Walks `inside` from `root`, as described at the top of this file. Returns
 * the object reached, held open, with its canonical path; or, when
 * `partial` and a component does not exist, how far it got.
 * `linksAllowed` false: any symlink met is a refusal (the re-check of a
 * canonical path, which has none).
 */
function walk(root: ResolutionRoot, inside: string, options: { linksAllowed: boolean; partial: boolean }): { fd: number; path: string; stat: ObjectStat } | PartialWalk {
  const where = (names: readonly { name: string }[]): string => `/${names.map((entry) => entry.name).join('/')}`;
  const shown = (names: readonly { name: string }[]): string => describeLocation(where(names), root.process);
  const queue = components(inside);
  const stack: { name: string; fd: number; stat: ObjectStat }[] = [];
  let links = 0;
  try {
    while (queue.length > 0) {
      const name = queue.shift()!;
      if (name === '..') {
        // Never above the root: the root's ".." is the root.
        const top = stack.pop();
        if (top !== undefined) fs.closeSync(top.fd);
        continue;
      }
      const parent = stack.length > 0 ? stack[stack.length - 1]!.fd : root.fd;
      let fd: number;
      try {
        fd = native.openComponent(parent, name, false);
      } catch (error) {
        if (!isNativeFailure(error)) throw error;
        if (error.errno === ENOENT && options.partial) return { existing: where(stack), missing: [name, ...queue] };
        const at = where([...stack, { name }]);
        const problem = `${describeLocation(inside, root.process)}: ${systemMessage(error.errno)}${at === inside ? '' : ` (at ${at})`}`;
        // In the re-check, a path that no longer opens was changed under the
        // helper: refused. On the first walk the file system said no
        // (missing, not a directory, no access): an error, not the policy's
        // decision.
        if (!options.linksAllowed) refuse(problem);
        throw new HelperError(problem);
      }
      let stat: ObjectStat;
      try {
        stat = native.statObject(fd);
      } catch (error) {
        fs.closeSync(fd);
        if (!isNativeFailure(error)) throw error;
        if (error.code === 'STAT_INCOMPLETE') throw new HelperError('the kernel gives no mount id (statx STATX_MNT_ID, Linux 5.8+): gate 1 cannot work');
        refuse(`${shown([...stack, { name }])}: ${systemMessage(error.errno)}`);
      }
      if (stat.type !== S_IFLNK) {
        stack.push({ name, fd, stat });
        continue;
      }
      let target: string;
      try {
        const filesystem = root.mounts.get(stat.mountId);
        // A mount the namespace did not list when the walk began (mounted
        // since): nothing known about it is trusted, its links least.
        if (filesystem === undefined) refuse(`${shown([...stack, { name }])} is a symlink on a mount outside the mount namespace it was resolved in (mount id ${stat.mountId}): not followed`);
        if (filesystem === 'proc')
          refuse(
            `${shown([...stack, { name }])} is a symlink on /proc (a magic link such as /proc/PID/root or /proc/PID/fd/N leads into another mount namespace, whose paths prove nothing here): not followed; name a process's root as /proc/PID/root/... with a rule that has "processRoot"`,
          );
        if (!options.linksAllowed) refuse(`${shown([...stack, { name }])} is a symlink now: the path checked has changed since`);
        if (++links > MAX_SYMLINKS) refuse(`${shown([...stack, { name }])}: more than ${MAX_SYMLINKS} symlinks (${systemMessage(40)})`);
        target = native.readSymlink(fd);
      } finally {
        fs.closeSync(fd);
      }
      // Absolute targets start again at the root held (a process's root,
      // for a path inside one); relative ones continue from here.
      if (target.startsWith('/')) for (const entry of stack.splice(0)) fs.closeSync(entry.fd);
      queue.unshift(...components(target));
    }
    const top = stack.pop();
    if (top === undefined) refuse(`${describeLocation('/', root.process)} is the root directory itself`);
    return { fd: top.fd, path: where([...stack, top]), stat: top.stat };
  } finally {
    for (const entry of stack) fs.closeSync(entry.fd);
  }
}

/** Checks what the walk reached: not deleted, on a mount of the namespace it was resolved in. Closes it on refusal. */
function checkObject(root: ResolutionRoot, fd: number, objectPath: string, stat: ObjectStat): void {
  const shown = describeLocation(objectPath, root.process);
  let problem: string | undefined;
  if (stat.nlink === 0) problem = `${shown} is deleted (unlinked after it was opened)`;
  // A socket has one name. A hard link would give another's listener an
  // allowed name (fs.protected_hardlinks=0 lets anyone make one).
  else if (stat.type === S_IFSOCK && stat.nlink !== 1) problem = `${shown} has ${stat.nlink} hard links: a socket reached through a second name is not served`;
  else if (!root.mounts.has(stat.mountId))
    problem =
      root.process === undefined
        ? `${shown} is on a mount outside the helper's mount namespace (mount id ${stat.mountId})`
        : `${shown} is on a mount outside the mount namespace of process ${root.process.pid} (mount id ${stat.mountId})`;
  if (problem !== undefined) {
    fs.closeSync(fd);
    refuse(problem);
  }
}

function kindOf(stat: ObjectStat): 'socket' | 'directory' | undefined {
  return stat.type === S_IFSOCK ? 'socket' : stat.type === S_IFDIR ? 'directory' : undefined;
}

/**
 * Resolves `inside` in `root` and holds the object: a socket or a
 * directory. Anything else, a deleted object or one on a foreign mount, is
 * refused.
 */
export function holdObject(root: ResolutionRoot, inside: string): HeldObject {
  const reached = walk(root, inside, { linksAllowed: true, partial: false });
  if (!('fd' in reached)) throw new Error('unreachable: a full walk never stops early');
  const kind = kindOf(reached.stat);
  if (kind === undefined) {
    fs.closeSync(reached.fd);
    throw new HelperError(`${describeLocation(reached.path, root.process)} is not a socket or a directory`);
  }
  checkObject(root, reached.fd, reached.path, reached.stat);
  return { fd: reached.fd, kind, path: reached.path, owner: reached.stat.uid, stat: reached.stat };
}

/**
 * The socket `name` in the held directory, held: one component, opened
 * beneath the directory on its own mount, no link followed. undefined when
 * it is gone or is not a socket (a symlink is never followed here).
 */
export function holdEntry(root: ResolutionRoot, directory: HeldObject, name: string): HeldObject | undefined {
  if (name.includes('/') || name === '.' || name === '..') return undefined;
  let fd: number;
  try {
    fd = native.openComponent(directory.fd, name, true);
  } catch (error) {
    if (isNativeFailure(error)) return undefined; // gone, or on another mount (EXDEV)
    throw error;
  }
  let stat: ObjectStat;
  try {
    stat = native.statObject(fd);
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
  if (stat.type !== S_IFSOCK || stat.nlink === 0) {
    fs.closeSync(fd);
    return undefined;
  }
  const entryPath = `${directory.path}/${name}`;
  checkObject(root, fd, entryPath, stat);
  return { fd, kind: 'socket', path: entryPath, owner: stat.uid, stat };
}

/**
 * The re-check between the decision and its use: the canonical path the
 * rule matched, resolved again from the same root with no link allowed,
 * must reach the very object held. Refuses otherwise.
 */
export function confirmBinding(root: ResolutionRoot, held: HeldObject): void {
  confirmAlive(root);
  const again = walk(root, held.path, { linksAllowed: false, partial: true });
  const shown = describeLocation(held.path, root.process);
  if (!('fd' in again)) refuse(`${shown} no longer exists: it was removed or replaced after it was opened`);
  const same = again.stat.identity === held.stat.identity && again.stat.mountId === held.stat.mountId;
  fs.closeSync(again.fd);
  if (!same) refuse(`${shown} now names another object than the one opened: replaced after it was opened`);
  const now = native.statObject(held.fd);
  if (now.nlink === 0) refuse(`${shown} is deleted (unlinked after it was opened)`);
}

/** Why `rule` does not let `process` lend its root, or undefined if it does. */
export function processRootRefusal(rule: ProcessRootRule, process: RootProcess): string | undefined {
  const outside = (ids: readonly number[], allowed: readonly number[]): number | undefined => ids.find((id) => !allowed.includes(id));
  const uid = rule.uids && outside(process.uids, rule.uids);
  if (uid !== undefined) return `its uid ${uid} is not in uids [${rule.uids!.join(', ')}]`;
  const gid = rule.gids && outside(process.gids, rule.gids);
  if (gid !== undefined) return `its gid ${gid} is not in gids [${rule.gids!.join(', ')}]`;
  return undefined;
}

/** What a rule asks of a process that lends its root, in words, for --explain. */
export function describeProcessRootRule(rule: ProcessRootRule): string {
  const conditions: string[] = [];
  if (rule.uids !== undefined) conditions.push(`every uid in [${rule.uids.join(', ')}]`);
  if (rule.gids !== undefined) conditions.push(`every gid in [${rule.gids.join(', ')}]`);
  return conditions.length === 0 ? 'any process' : `a process with ${conditions.join(' and ')}`;
}

/**
 * The rules that apply in `root` at all: those without "processRoot" for
 * host paths; for a process's root, those whose "processRoot" allows that
 * process. Refuses, naming every rule's reason, when none does.
 */
export function rulesForRoot(policy: Policy, root: ResolutionRoot): Rule[] {
  const process = root.process;
  if (process === undefined) return policy.rules.filter((rule) => rule.processRoot === undefined);
  const reasons: string[] = [];
  const rules = policy.rules.filter((rule) => {
    if (rule.processRoot === undefined) return false;
    const refusal = processRootRefusal(rule.processRoot, process);
    if (refusal !== undefined) reasons.push(`rule "${rule.name}": ${refusal}`);
    return refusal === undefined;
  });
  if (rules.length > 0) return rules;
  const ids = `uids ${process.uids.join('/')}, gids ${process.gids.join('/')}`;
  if (reasons.length === 0) refuse(`/proc/${process.pid}/root: no rule of ${policy.file} has "processRoot": paths inside another process's root are not allowed`);
  refuse(`/proc/${process.pid}/root: process ${process.pid} (${ids}) may not lend its root: ${reasons.join('; ')}`);
}

function matching(rules: readonly Rule[], field: 'sockets' | 'directories', objectPath: string): Rule[] {
  return rules.filter((rule) => rule[field].some((pattern: Pattern) => pattern.matches(objectPath)));
}

/** The rules among `rules` that allow connecting to the socket at canonical `socketPath`. */
export function rulesAllowingSocket(rules: readonly Rule[], socketPath: string): Rule[] {
  return matching(rules, 'sockets', socketPath);
}

/** The rules among `rules` that allow waiting in the directory at canonical `directoryPath`. */
export function rulesAllowingDirectory(rules: readonly Rule[], directoryPath: string): Rule[] {
  return matching(rules, 'directories', directoryPath);
}

/** For --explain: how far `inside` resolves in `root`, the way serving resolves it. */
export function resolveForExplain(root: ResolutionRoot, inside: string): { held: HeldObject | undefined; partial: PartialWalk | undefined; kind: string | undefined } {
  const reached = walk(root, inside, { linksAllowed: true, partial: true });
  if (!('fd' in reached)) return { held: undefined, partial: reached, kind: undefined };
  const kind = kindOf(reached.stat);
  if (kind === undefined) {
    fs.closeSync(reached.fd);
    return { held: undefined, partial: undefined, kind: 'neither a socket nor a directory' };
  }
  checkObject(root, reached.fd, reached.path, reached.stat);
  return { held: { fd: reached.fd, kind, path: reached.path, owner: reached.stat.uid, stat: reached.stat }, partial: undefined, kind };
}
