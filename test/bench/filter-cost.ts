// SPDX-License-Identifier: GPL-2.0-or-later
// The benchmark's probe of what the seccomp filter costs per system call.
// Run by test/bench/bench.ts through the tests' runtime launcher (the helper's
// runtime, flags and sandbox): times the request loop's getsockopt calls in
// a native loop, loads the helper's own filter (the allowlist, built by the
// same native calls), times them again, and prints one JSON line.
import * as fs from 'node:fs';
import { installSeccompFilter, loadAllowlist, prepareSeccompFilter, refuseIoUring } from '../../src/sandbox/seccomp';
import { passt } from '../passt-double/passt-double';

const SOL_SOCKET = 1;
const SO_PROTOCOL = 38;
const SOL_TCP = 6;
const TCP_REPAIR = 19;
const CALLS = Number(process.argv[2] ?? 1_000_000);

const sock = passt.tcpSocket(4);
/** The median of five timed loops of each call: ns per call. */
function measure(): { soProtocolNs: number; tcpRepairNs: number } {
  const median = (level: number, name: number) => {
    const runs = Array.from({ length: 5 }, () => passt.timeGetsockopt(sock, level, name, CALLS)).sort((a, b) => a - b);
    return runs[2]!;
  };
  return { soProtocolNs: median(SOL_SOCKET, SO_PROTOCOL), tcpRepairNs: median(SOL_TCP, TCP_REPAIR) };
}

const bare = measure();
installSeccompFilter(prepareSeccompFilter({ user: 'nobody', seccomp: 'kill' }, loadAllowlist()), refuseIoUring());
const filtered = measure();
fs.writeSync(1, `${JSON.stringify({ calls: CALLS, bare, filtered })}\n`);
