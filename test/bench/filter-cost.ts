// SPDX-License-Identifier: GPL-2.0-or-later
// The benchmark's probe of what the seccomp filter costs per system call.
// Run by test/bench/bench.ts through the tests' runtime launcher (the helper's
// runtime, flags and sandbox): times each of the protocol loop's system calls
// in a native loop, loads the helper's own filter (the allowlist, built by
// the same native calls), times them again, and prints one JSON line.
import * as fs from 'node:fs';
import { installSeccompFilter, loadAllowlist, prepareSeccompFilter, refuseIoUring } from '../../src/sandbox/seccomp';
import { passt } from '../passt-double/passt-double';
import type { HotCall } from '../passt-double/native.d';

/** The calls timed, in the order the protocol loop makes them per descriptor, then per request. */
export const HOT_CALLS: readonly HotCall[] = ['getsockopt SO_PROTOCOL', 'getsockopt TCP_REPAIR', 'setsockopt TCP_REPAIR', 'recvmsg', 'sendto', 'close_range', 'ppoll'];

export type CallCosts = Record<HotCall, number>;

if (require.main === module) {
  const calls = Number(process.argv[2] ?? 1_000_000);
  const tcp = passt.tcpSocket(4);
  const [unix] = passt.socketPair();
  /** The median of five timed loops of each call: ns per call. */
  const measure = (): CallCosts => {
    const costs = {} as CallCosts;
    for (const call of HOT_CALLS) {
      const fd = call.includes('sockopt') ? tcp : unix;
      const runs = Array.from({ length: 5 }, () => passt.timeCall(call, fd, calls)).sort((a, b) => a - b);
      costs[call] = runs[2]!;
    }
    return costs;
  };
  const bare = measure();
  installSeccompFilter(prepareSeccompFilter({ user: 'nobody', seccomp: 'kill' }, loadAllowlist()), refuseIoUring());
  const filtered = measure();
  fs.writeSync(1, `${JSON.stringify({ calls, bare, filtered })}\n`);
}
