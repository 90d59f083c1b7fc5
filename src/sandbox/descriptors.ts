// SPDX-License-Identifier: GPL-2.0-or-later
// The sandboxed helper holds only what it needs: no descriptor its caller
// leaked. A regular file or an rtnetlink socket left open (the latter made
// powerful by the CAP_NET_ADMIN the helper keeps) would stay usable through
// every gate, since gate 3 allows read, write and sendto on any descriptor.
// bin/passt-repair's launcher closes everything above standard error before
// Node starts (native/launcher.c); this check makes sure of it, so that the
// helper run any other way (dist/src/main.js on a plain node) fails closed.
import * as fs from 'node:fs';
import { HelperError } from '../errors';

const STDERR = 2;

/**
 * What Node and libuv open before any JavaScript runs: epoll instances,
 * eventfds and pipes (the signal and worker wake-ups). Node marks every
 * descriptor close-on-exec at start-up, inherited ones included, so the
 * flag cannot tell them apart; their kinds can. A pipe a caller leaked looks
 * like the runtime's own and passes: it reaches only whoever holds its
 * other end, nothing in the kernel the helper's privileges would open.
 * libuv's io_uring rings (a runtime started without the launcher) are its
 * own too; gate 3 refuses to load its filter with one (native/seccomp.cc).
 */
const RUNTIME_KINDS = new Set(['anon_inode:[eventpoll]', 'anon_inode:[eventfd]', 'anon_inode:[io_uring]']);

function isRuntimeDescriptor(target: string): boolean {
  return RUNTIME_KINDS.has(target) || /^pipe:\[\d+\]$/.test(target);
}

/** Every descriptor this process holds, in order, with what /proc/self/fd says it points to. */
export function openDescriptors(): Map<number, string> {
  const held = new Map<number, string>();
  for (const fd of fs.readdirSync('/proc/self/fd').map(Number).sort((a, b) => a - b)) {
    try {
      held.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // the directory's own descriptor, closed once listed
    }
  }
  return held;
}

/** Fails closed when a descriptor above standard error is not the runtime's own: it came from the caller. */
export function assertNoInheritedDescriptors(): void {
  const leaked: string[] = [];
  for (const [fd, target] of openDescriptors()) if (fd > STDERR && !isRuntimeDescriptor(target)) leaked.push(`${fd} (${target})`);
  if (leaked.length > 0)
    throw new HelperError(
      `descriptor${leaked.length > 1 ? 's' : ''} ${leaked.join(', ')} left open by the caller; refusing to run with them: start the helper through bin/passt-repair, which closes them`,
    );
}
