// Gate 4: who is behind the connection. Read right after connect(), before
// anything passt sends is read.
import * as fs from 'node:fs';
import { native } from '../addon';
import { HelperError, isNativeFailure, systemMessage } from '../errors';
import type { PeerCredentials } from '../native.d';
import { peerRefusal } from './index';
import type { Rule } from './load';

export interface ConnectedSocket {
  sock: number;
  path: string;
  owner: number;
  rules: readonly Rule[];
}

/**
 * The pid the peer's pidfd stands for: that of the very process that
 * listened, -1 if it has exited since (passt daemonizes after listening).
 */
function pidfdPid(pidfd: number): number | undefined {
  try {
    const line = /^Pid:\s*(-?\d+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${pidfd}`, 'utf8'));
    return line === null ? undefined : Number(line[1]);
  } finally {
    fs.closeSync(pidfd);
  }
}

function describePeer(peer: PeerCredentials, livePid: number | undefined): string {
  const alive = livePid === -1 ? ' (exited since it listened)' : '';
  return `pid ${peer.pid}${alive}, uid ${peer.uid}, gid ${peer.gid}`;
}

/** Returns the rule that allows the peer on `connection`, or throws (exit 1) naming the peer. */
export function checkPeer(connection: ConnectedSocket): Rule {
  let peer: PeerCredentials;
  try {
    peer = native.peerCredentials(connection.sock);
  } catch (error) {
    if (isNativeFailure(error)) throw new HelperError(`cannot read the credentials of the peer on ${connection.path}: ${systemMessage(error.errno)}`);
    throw error;
  }
  const livePid = peer.pidfd >= 0 ? pidfdPid(peer.pidfd) : undefined;
  const refusals: string[] = [];
  for (const rule of connection.rules) {
    const refusal = peerRefusal(rule, peer, connection.owner);
    if (refusal === undefined) return rule;
    refusals.push(`rule "${rule.name}": ${refusal}`);
  }
  throw new HelperError(`peer refused on ${connection.path}: ${describePeer(peer, livePid)}; ${refusals.join('; ')}`);
}
