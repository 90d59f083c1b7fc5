// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 4: who is behind the connection. Read right after connect(), before
// anything passt sends is read.
import { native } from '../addon';
import { HelperError, Refusal, isNativeFailure, systemMessage } from '../errors';
import type { ConnectedSocket } from '../connect';
import type { PeerCredentials } from '../native.d';
import { peerRefusal } from './index';
import type { Rule } from './load';
import { describeLocation } from './path-gate';

function describePeer(peer: PeerCredentials): string {
  const alive = peer.alive === false ? ' (exited since it listened)' : '';
  return `pid ${peer.pid}${alive}, uid ${peer.uid}, gid ${peer.gid}`;
}

export interface AllowedPeer {
  /** The rule that allows both the path and the peer. */
  rule: Rule;
  peer: PeerCredentials;
  /** Its executable, when it could be read and the process still runs. */
  exe: string | undefined;
  /** How the audit log names it: pid (and whether that process has exited since it listened), uid, gid. */
  description: string;
}

/**
 * Returns the rule that allows the peer on `connection`, or throws a refusal
 * (gate 4, exit 1) naming the peer. Called by src/connect.ts right after
 * each connect(), so that in directory mode a refused peer is skipped.
 */
export function checkPeer(connection: ConnectedSocket): AllowedPeer {
  let peer: PeerCredentials;
  try {
    peer = native.peerCredentials(connection.sock);
  } catch (error) {
    if (isNativeFailure(error))
      throw new HelperError(`cannot read the credentials of the peer on ${describeLocation(connection.path, connection.rootProcess)}: ${systemMessage(error.errno)}`);
    throw error;
  }
  const refusals: string[] = [];
  for (const rule of connection.rules) {
    const refusal = peerRefusal(rule, peer, connection.owner);
    // An executable read for a pid whose process has exited may be another's.
    if (refusal === undefined) return { rule, peer, exe: peer.alive === false ? undefined : peer.exe, description: describePeer(peer) };
    refusals.push(`rule "${rule.name}": ${refusal}`);
  }
  throw new Refusal('peer', `peer refused on ${describeLocation(connection.path, connection.rootProcess)}: ${describePeer(peer)}; ${refusals.join('; ')}`);
}
