// SPDX-License-Identifier: GPL-2.0-or-later
// The protocol loop: requests, one at a time, until passt closes the connection.
import { native } from './addon';
import { HelperError, Refusal, Stopped, commandName, describeNativeFailure, isNativeFailure, isRequestRefusal } from './errors';
import { commandMask, type RuleLimits } from './limits';
import type { Served, ServedRun } from './native.d';

/** Consecutive requests with the same command, for the audit log. */
export interface CommandSummary {
  command: string;
  requests: number;
  sockets: number;
  /** The helper's own time on them, not the time spent waiting for passt. */
  nanoseconds: number;
}

/** Milliseconds on a monotonic clock (libuv's), without loading a module for it. */
function monotonicMs(): number {
  return process.uptime() * 1e3;
}

function sessionEnded(limits: RuleLimits): Refusal {
  return new Refusal('request', `session ended: the rule's "sessionTimeout" of ${limits.sessionTimeout} s has passed since connecting`);
}

function idleEnded(limits: RuleLimits): Refusal {
  return new Refusal('request', `session ended: no request for ${limits.idleTimeout} s (the rule's "idleTimeout")`);
}

// The loop gives the event loop a turn every REQUESTS_PER_YIELD requests and
// whenever passt has sent nothing for IDLE_YIELD_MS. Without a turn V8's
// foreground tasks never run (finishing incremental marking, the memory
// reducer), so no major GC happens and the heap grows for as long as passt
// keeps sending (issue 13). One turn costs a few microseconds; at 64
// requests it is a small fraction of a request's own cost (see the bench).
// Between turns the requests are served in native code (serveRequests),
// which comes back here only when the command changes, passt goes quiet or
// the session ends. Signals are still checked only there, before a request
// is read: a turn happens between requests, never inside one.
const REQUESTS_PER_YIELD = 64;
const IDLE_YIELD_MS = 100;

/** Resolves after one turn of the event loop (the poll phase runs V8's queued tasks). */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Serves requests on `sock` until passt closes it. Each request is applied
 * to all of its sockets or to none and confirmed before the next is read
 * (native/protocol.cc). Rejects with a Refusal or a HelperError on the first
 * refused or failed request or limit reached (`limits`, the governing
 * rule's; the session's clock started at `connectedMs`, monotonicMs()), and
 * with a Stopped when SIGTERM, SIGINT or SIGHUP arrived: checked only between
 * requests, so the request in hand is always finished or rolled back.
 * `summarize` hears of each run of requests with the same command once it is
 * over (the command changed, passt closed, or the loop ended otherwise): a
 * log line per run rather than per request keeps writes off passt's
 * critical path.
 */
export async function serve(sock: number, limits: RuleLimits, connectedMs: number, summarize: (summary: CommandSummary) => void): Promise<void> {
  const allowedCommands = commandMask(limits.commands);
  const sessionDeadline = limits.sessionTimeout === undefined ? Infinity : connectedMs + limits.sessionTimeout * 1e3;
  const idleMs = limits.idleTimeout === undefined ? Infinity : limits.idleTimeout * 1e3;
  const timed = sessionDeadline !== Infinity || idleMs !== Infinity;
  let socketsLeft = limits.maxSocketsPerSession;
  let run: CommandSummary | undefined;
  let sinceYield = 0;
  // When the current wait for a request began: the idle timeout counts from
  // the end of the previous request, across the turns given while waiting.
  let idleSince: number | undefined;
  // Counts what was confirmed, and summarises each run once the command changes.
  const record = (runs: readonly ServedRun[]) => {
    for (const served of runs) {
      socketsLeft -= served.sockets;
      sinceYield += served.requests;
      const command = commandName(served.command);
      if (run !== undefined && run.command !== command) {
        summarize(run);
        run = undefined;
      }
      run ??= { command, requests: 0, sockets: 0, nanoseconds: 0 };
      run.requests += served.requests;
      run.sockets += served.sockets;
      run.nanoseconds += served.nanoseconds;
    }
  };
  try {
    for (;;) {
      const now = timed ? monotonicMs() : 0;
      idleSince ??= now;
      // Checked here too: a request already queued is read without a wait.
      if (now >= sessionDeadline) throw sessionEnded(limits);
      // The wait ends after IDLE_YIELD_MS, at the idle timeout or at the
      // session's deadline, whichever comes first (0: only what is queued);
      // each wait after a reply after IDLE_YIELD_MS or the idle timeout, the
      // deadline being the native side's to hold.
      const waitMs = timed ? Math.max(0, Math.min(IDLE_YIELD_MS, idleSince + idleMs - now, sessionDeadline - now)) : IDLE_YIELD_MS;
      let served: Served;
      try {
        served = native.serveRequests(
          sock,
          waitMs,
          Math.min(IDLE_YIELD_MS, idleMs),
          sessionDeadline - now,
          allowedCommands,
          limits.maxSocketsPerRequest,
          socketsLeft,
          REQUESTS_PER_YIELD - sinceYield,
        );
      } catch (error) {
        if (!isNativeFailure(error)) throw error;
        // The requests confirmed before the failed one count and are logged.
        record((error.served as ServedRun[] | undefined) ?? []);
        if (isRequestRefusal(error)) throw new Refusal('request', describeNativeFailure(error));
        throw new HelperError(describeNativeFailure(error));
      }
      record(served.runs);
      if (served.end === 'closed') return;
      if (served.end === 'signal') throw new Stopped(native.pendingSignal());
      if (served.end === 'timeout') {
        if (timed) {
          const waited = monotonicMs();
          if (served.runs.length > 0) idleSince = waited - served.waitedMs;
          if (waited >= sessionDeadline) throw sessionEnded(limits);
          if (waited - idleSince! >= idleMs) throw idleEnded(limits);
        }
        // passt is idle: a turn costs it nothing now.
        sinceYield = 0;
        await yieldToEventLoop();
        continue;
      }
      // "yield" or "command": requests were served just now.
      idleSince = undefined;
      if (sinceYield >= REQUESTS_PER_YIELD) {
        sinceYield = 0;
        await yieldToEventLoop();
      }
    }
  } finally {
    if (run !== undefined) summarize(run);
  }
}
