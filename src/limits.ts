// SPDX-License-Identifier: GPL-2.0-or-later
// A rule's limits on the session it governs (policy key "limits"): which
// commands passt may send, how many sockets per request and per session,
// and how long the session may sit idle or last. Enforced by the protocol
// loop before any socket is touched: the command and counts in
// native/protocol.cc, the timeouts as the request wait's timeout.

/** The commands by their kernel value (linux/tcp.h), as the policy names them. */
export const COMMAND_VALUES = { TCP_REPAIR_ON: 1, TCP_REPAIR_OFF: 0, TCP_REPAIR_OFF_NO_WP: -1 } as const;
export type CommandName = keyof typeof COMMAND_VALUES;

/** SCM_MAX_FD: the most descriptors one request can carry, and the default per request. */
export const MAX_SOCKETS_PER_REQUEST = 253;

export interface RuleLimits {
  /** The commands passt may send; all three when the policy names none. */
  commands: readonly CommandName[];
  maxSocketsPerRequest: number;
  /** Infinity: no limit. */
  maxSocketsPerSession: number;
  /** Seconds without a request after which the session ends; undefined: none. */
  idleTimeout: number | undefined;
  /** Seconds after connecting after which the session ends; undefined: none. */
  sessionTimeout: number | undefined;
}

/** "limits" as the schema guarantees it to be. */
export interface LimitsDocument {
  commands?: CommandName[];
  maxSocketsPerRequest?: number;
  maxSocketsPerSession?: number;
  idleTimeout?: number;
  sessionTimeout?: number;
}

/** A rule's limits with the defaults filled in: today's behaviour, nothing limited. */
export function ruleLimits(document: LimitsDocument | undefined): RuleLimits {
  return {
    commands: document?.commands ?? (Object.keys(COMMAND_VALUES) as CommandName[]),
    maxSocketsPerRequest: document?.maxSocketsPerRequest ?? MAX_SOCKETS_PER_REQUEST,
    maxSocketsPerSession: document?.maxSocketsPerSession ?? Infinity,
    idleTimeout: document?.idleTimeout,
    sessionTimeout: document?.sessionTimeout,
  };
}

/** serveRequests' allowedCommands: bit (value + 1) for each command allowed. */
export function commandMask(commands: readonly CommandName[]): number {
  return commands.reduce((mask, name) => mask | (1 << (COMMAND_VALUES[name] + 1)), 0);
}

/** The command names a mask allows, for messages. */
export function commandsInMask(mask: number): CommandName[] {
  return (Object.keys(COMMAND_VALUES) as CommandName[]).filter((name) => (mask & (1 << (COMMAND_VALUES[name] + 1))) !== 0);
}

/** The limits that differ from the defaults, in words; undefined when there are none. */
export function describeLimits(limits: RuleLimits): string | undefined {
  const parts: string[] = [];
  if (limits.commands.length < Object.keys(COMMAND_VALUES).length) parts.push(`commands ${limits.commands.join(', ')}`);
  if (limits.maxSocketsPerRequest < MAX_SOCKETS_PER_REQUEST) parts.push(`at most ${limits.maxSocketsPerRequest} socket(s) per request`);
  if (limits.maxSocketsPerSession !== Infinity) parts.push(`at most ${limits.maxSocketsPerSession} socket(s) per session`);
  if (limits.idleTimeout !== undefined) parts.push(`idle timeout ${limits.idleTimeout} s`);
  if (limits.sessionTimeout !== undefined) parts.push(`session timeout ${limits.sessionTimeout} s`);
  return parts.length === 0 ? undefined : parts.join(', ');
}
