// The protocol loop: one request at a time until passt closes the connection.
import { native } from './addon';
import { HelperError, describeNativeFailure, isNativeFailure } from './errors';

export interface SessionTotals {
  requests: number;
  sockets: number;
}

/**
 * Serves requests on `sock` until passt closes it. Each request is applied
 * to all of its sockets or to none and confirmed before the next is read
 * (native/protocol.cc). Throws a HelperError on the first refused or failed
 * request: passt then sees the connection close without a reply.
 */
export function serve(sock: number): SessionTotals {
  const totals: SessionTotals = { requests: 0, sockets: 0 };
  for (;;) {
    let handled;
    try {
      handled = native.handleMessage(sock);
    } catch (error) {
      if (isNativeFailure(error)) throw new HelperError(describeNativeFailure(error));
      throw error;
    }
    if (handled === null) return totals;
    totals.requests++;
    totals.sockets += handled.sockets;
  }
}
