// The protocol loop: one request at a time until passt closes the connection.
import { native } from './addon';
import { HelperError, Refusal, commandName, describeNativeFailure, isNativeFailure } from './errors';

/** Consecutive requests with the same command, for the audit log. */
export interface CommandSummary {
  command: string;
  requests: number;
  sockets: number;
  /** The helper's own time on them, not the time spent waiting for passt. */
  nanoseconds: number;
}

/** Failures that are the request's fault: the protocol loop's refusals. The rest (setsockopt or the reply failing) are errors. */
const REFUSED_REQUESTS = new Set([
  'CONTROL_TRUNCATED', 'WRONG_LENGTH', 'NO_DESCRIPTORS', 'UNEXPECTED_CONTROL', 'WRONG_DESCRIPTOR_COUNT', 'UNKNOWN_COMMAND', 'NOT_A_SOCKET', 'NOT_TCP',
]);

/**
 * Serves requests on `sock` until passt closes it. Each request is applied
 * to all of its sockets or to none and confirmed before the next is read
 * (native/protocol.cc). Throws a Refusal or a HelperError on the first
 * refused or failed request: passt then sees the connection close without a
 * reply. `summarize` hears of each run of requests with the same command
 * once it is over (the command changed, passt closed, or a request failed):
 * a log line per run rather than per request keeps writes off passt's
 * critical path.
 */
export function serve(sock: number, summarize: (summary: CommandSummary) => void): void {
  let run: CommandSummary | undefined;
  try {
    for (;;) {
      let handled;
      try {
        handled = native.handleMessage(sock);
      } catch (error) {
        if (!isNativeFailure(error)) throw error;
        if (REFUSED_REQUESTS.has(error.code)) throw new Refusal('request', describeNativeFailure(error));
        throw new HelperError(describeNativeFailure(error));
      }
      if (handled === null) return;
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
