// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 4: who is behind the connection. Read right after connect(), before
// anything passt sends is read.
import * as fs from 'node:fs';
import { native } from '../addon';
import { HelperError, Refusal, isNativeFailure, systemMessage } from '../errors';
import type { ConnectedSocket } from '../connect';
import type { PeerCredentials } from '../native.d';
import { peerRefusal } from './index';
import type { Rule } from './load';
import { describeLocation } from './path-gate';

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

/** The peer's executable, for the audit log: readable with CAP_SYS_PTRACE (kept until the second drop), or for our own uid. */
function executable(pid: number): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
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
  const where = describeLocation(connection.path, connection.rootProcess);
  let peer: PeerCredentials;
  try {
    peer = native.peerCredentials(connection.sock);
  } catch (error) {
    if (isNativeFailure(error)) throw new HelperError(`cannot read the credentials of the peer on ${where}: ${systemMessage(error.errno)}`);
    throw error;
  }
  // Read before the pidfd is: while that process lives, its pid names no other.
  const exe = executable(peer.pid);
  const livePid = peer.pidfd >= 0 ? pidfdPid(peer.pidfd) : undefined;
  const refusals: string[] = [];
  for (const rule of connection.rules) {
    const refusal = peerRefusal(rule, peer, connection.owner);
    if (refusal === undefined) return { rule, peer, exe: livePid === -1 ? undefined : exe, description: describePeer(peer, livePid) };
    refusals.push(`rule "${rule.name}": ${refusal}`);
  }
  throw new Refusal('peer', `peer refused on ${where}: ${describePeer(peer, livePid)}; ${refusals.join('; ')}`);
}
