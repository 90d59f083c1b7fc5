// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 1 (which paths the helper may connect to: ./path-gate.ts) and gate 4
// (which passt processes it may serve: ./peer.ts), decided by the policy
// file. See policy/policy.schema.json for the format, SECURITY.md for the
// reasoning.
//
// Each rule is a grant. A socket path is allowed by the rules whose
// "sockets" patterns match it (in directory mode: only among the rules whose
// "directories" patterns matched the directory); the peer behind it is
// served if one of those same rules also allows the peer.
export { DEFAULT_POLICY_FILE, PolicyError, loadPolicy } from './load';
export type { LogFormat, Policy, ProcessRootRule, Rule, PeerRule, SentryInclude, SentrySettings } from './load';
import type { PeerCredentials } from '../native.d';
import type { Rule } from './load';

/** Why `rule` does not allow the peer, or undefined if it does. */
export function peerRefusal(rule: Rule, peer: PeerCredentials, socketOwner: number): string | undefined {
  if (rule.peer.sameOwner && peer.uid !== socketOwner) return `uid ${peer.uid} does not own the socket (uid ${socketOwner} does)`;
  if (rule.peer.uids !== undefined && !rule.peer.uids.includes(peer.uid)) return `uid ${peer.uid} is not in uids [${rule.peer.uids.join(', ')}]`;
  if (rule.peer.gids !== undefined && !rule.peer.gids.includes(peer.gid)) return `gid ${peer.gid} is not in gids [${rule.peer.gids.join(', ')}]`;
  return undefined;
}

/** What a rule asks of the peer, in words, for --explain. */
export function describePeerRule(rule: Rule): string {
  const conditions: string[] = [];
  if (rule.peer.sameOwner) conditions.push('owns the socket');
  if (rule.peer.uids !== undefined) conditions.push(`has uid ${rule.peer.uids.join(' or ')}`);
  if (rule.peer.gids !== undefined) conditions.push(`has gid ${rule.peer.gids.join(' or ')}`);
  return conditions.length === 0 ? 'any peer' : `a peer that ${conditions.join(', ')}`;
}
