// SPDX-License-Identifier: GPL-2.0-or-later
// The protocol loop: one request at a time until passt closes the connection.
import { native } from './addon';
import { HelperError, Refusal, Stopped, commandName, describeNativeFailure, isNativeFailure, isRequestRefusal } from './errors';
import { commandMask, type RuleLimits } from './limits';

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

/**
 * Serves requests on `sock` until passt closes it. Each request is applied
 * to all of its sockets or to none and confirmed before the next is read
 * (native/protocol.cc). Throws a Refusal or a HelperError on the first
 * refused or failed request or limit reached (`limits`, the governing
 * rule's; the session's clock started at `connectedMs`, monotonicMs()), and
 * a Stopped when SIGTERM, SIGINT or SIGHUP arrived: checked only between
 * requests, so the request in hand is always finished or rolled back.
 * `summarize` hears of each run of requests with the same command once it is
 * over (the command changed, passt closed, or the loop ended otherwise): a
 * log line per run rather than per request keeps writes off passt's
 * critical path.
 */
export function serve(sock: number, limits: RuleLimits, connectedMs: number, summarize: (summary: CommandSummary) => void): void {
  const allowedCommands = commandMask(limits.commands);
  const sessionDeadline = limits.sessionTimeout === undefined ? Infinity : connectedMs + limits.sessionTimeout * 1e3;
  const idleMs = limits.idleTimeout === undefined ? Infinity : limits.idleTimeout * 1e3;
  const timed = sessionDeadline !== Infinity || idleMs !== Infinity;
  let socketsLeft = limits.maxSocketsPerSession;
  let run: CommandSummary | undefined;
  try {
    for (;;) {
      // The wait for the next request ends at the idle timeout or the
      // session's deadline, whichever comes first; -1: no limit.
      const now = timed ? monotonicMs() : 0;
      // Checked here too: a request already queued is read without a wait.
      if (now >= sessionDeadline) throw sessionEnded(limits);
      const waitMs = timed ? Math.min(idleMs, sessionDeadline - now) : -1;
      let handled;
      try {
        handled = native.handleMessage(sock, waitMs, allowedCommands, limits.maxSocketsPerRequest, socketsLeft);
      } catch (error) {
        if (!isNativeFailure(error)) throw error;
        if (isRequestRefusal(error)) throw new Refusal('request', describeNativeFailure(error));
        throw new HelperError(describeNativeFailure(error));
      }
      if (handled === null) return;
      if (handled === 'signal') throw new Stopped(native.pendingSignal());
      if (handled === 'timeout') {
        if (monotonicMs() >= sessionDeadline) throw sessionEnded(limits);
        throw new Refusal('request', `session ended: no request for ${limits.idleTimeout} s (the rule's "idleTimeout")`);
      }
      socketsLeft -= handled.sockets;
      const command = commandName(handled.command);
      if (run !== undefined && run.command !== command) {
        summarize(run);
        run = undefined;
      }
      run ??= { command, requests: 0, sockets: 0, nanoseconds: 0 };
      run.requests++;
      run.sockets += handled.sockets;
      run.nanoseconds += handled.nanoseconds;
    }
  } finally {
    if (run !== undefined) summarize(run);
  }
}
