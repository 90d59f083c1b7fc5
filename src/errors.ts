// SPDX-License-Identifier: GPL-2.0-or-later
// Exit codes, and the one place where failures are put into words.
import { getSystemErrorMessage } from 'node:util';
import type { NativeFailure } from './native.d';
import { COMMAND_VALUES, commandsInMask } from './limits';

export const enum ExitCode {
  /** passt closed the connection: the work is done. */
  Done = 0,
  /** Anything that went wrong after the command line was understood. */
  Failure = 1,
  /** The command line itself was wrong. */
  Usage = 2,
}

/** Plus the signal's number: stopped cleanly by SIGHUP (129), SIGINT (130) or SIGTERM (143). */
export const SIGNAL_EXIT_BASE = 128;

/** A failure the helper reports with one line (or a few: a policy's schema errors) and an exit code. */
export class HelperError extends Error {
  /** The message's lines, each one line of the text audit log. */
  readonly lines: readonly string[];

  constructor(
    message: string | readonly string[],
    /** An ExitCode, or SIGNAL_EXIT_BASE + N (Stopped). */
    readonly exitCode: number = ExitCode.Failure,
  ) {
    const lines = typeof message === 'string' ? [message] : message;
    super(lines.join('\n'));
    this.lines = lines;
  }
}

/** Where in a run something happened: the audit log's and the reports' "phase". */
export type Phase = 'descriptors' | 'policy' | 'connect' | 'capabilities' | 'peer' | 'seccomp' | 'serve' | 'internal';

/**
 * What refused: gate 1 (the path policy), gate 4 (the peer's credentials), or
 * the protocol loop's checks of a request. Gates 2 and 3 refuse nothing:
 * they fail or they hold.
 */
export type Gate = 'path' | 'peer' | 'request';

export const GATE_NUMBERS: Readonly<Record<Gate, number | undefined>> = { path: 1, peer: 4, request: undefined };

/** The policy or the protocol said no: exit 1, logged as a refusal naming the gate. */
export class Refusal extends HelperError {
  constructor(
    readonly gate: Gate,
    message: string,
  ) {
    super(message);
  }
}

/** The signals the helper catches (native/signals.cc), by number. */
export const SIGNAL_NAMES: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 15: 'SIGTERM' };

/** SIGTERM, SIGINT or SIGHUP ended the run where it could stop cleanly: exit 128 + N. */
export class Stopped extends HelperError {
  readonly signal: string;
  constructor(signalNumber: number) {
    const signal = SIGNAL_NAMES[signalNumber] ?? `signal ${signalNumber}`;
    super(`stopped by ${signal}`, SIGNAL_EXIT_BASE + signalNumber);
    this.signal = signal;
  }
}

export class UsageError extends HelperError {
  constructor(message: string) {
    super(message, ExitCode.Usage);
  }
}

export function isNativeFailure(error: unknown): error is NativeFailure {
  return error instanceof Error && typeof (error as NativeFailure).code === 'string';
}

export function systemMessage(errno: number | undefined): string {
  return errno === undefined ? 'unknown error' : getSystemErrorMessage(-errno);
}

/** The commands' names by value: the one list is limits.ts's COMMAND_VALUES. */
const COMMAND_NAMES = new Map<number, string>(Object.entries(COMMAND_VALUES).map(([name, value]) => [value, name]));

export function commandName(command: number): string {
  return COMMAND_NAMES.get(command) ?? `unknown command ${command}`;
}

// include/net/tcp_states.h
const TCP_STATES = [
  'unknown', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT',
  'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV',
];
const DOMAINS: Record<number, string> = { 1: 'AF_UNIX', 2: 'AF_INET', 10: 'AF_INET6', 16: 'AF_NETLINK', 17: 'AF_PACKET', 43: 'AF_SMC' };
const TYPES: Record<number, string> = { 1: 'SOCK_STREAM', 2: 'SOCK_DGRAM', 3: 'SOCK_RAW', 5: 'SOCK_SEQPACKET' };
const PROTOCOLS: Record<number, string> = { 0: 'default', 6: 'TCP', 17: 'UDP', 256: 'SMC', 262: 'MPTCP' };

function named(table: Record<number, string>, value: unknown): string {
  return table[value as number] ?? String(value);
}

function rollbackNote(failure: NativeFailure): string {
  const unrestored = failure.unrestored as number;
  const note = `rolled back ${failure.rolledBack as number} socket(s) already switched`;
  return unrestored > 0 ? `${note}; ${unrestored} could NOT be restored` : note;
}

type Described = NativeFailure & Record<string, number>;

function which(f: Described): string {
  return `descriptor ${f.index + 1} of ${f.descriptors}`;
}

/**
 * The protocol loop's refusals: failures that are the request's fault, each
 * put into words. The one list of them: anything not here (setsockopt or the
 * reply failing, ...) is an error.
 */
const REQUEST_REFUSALS: Record<string, (f: Described) => string> = {
  CONTROL_TRUNCATED: (f) => `request refused: the kernel truncated its descriptors (MSG_CTRUNC, ${f.descriptors} arrived; is RLIMIT_NOFILE too low?)`,
  WRONG_LENGTH: (f) => `request refused: ${f.bytes === 0 ? 'no command byte' : 'more than one byte'} where exactly one command byte is expected`,
  NO_DESCRIPTORS: (f) => `request refused: command ${f.command} came without an SCM_RIGHTS control message`,
  UNEXPECTED_CONTROL: (f) => `request refused: ${f.controlMessages} control messages where exactly one SCM_RIGHTS message is expected`,
  WRONG_DESCRIPTOR_COUNT: (f) => `request refused: ${f.descriptors} descriptors where 1 to 253 are expected`,
  UNKNOWN_COMMAND: (f) => `request refused: unknown command ${f.command} (expected 1 TCP_REPAIR_ON, 0 TCP_REPAIR_OFF or -1 TCP_REPAIR_OFF_NO_WP)`,
  COMMAND_NOT_ALLOWED: (f) =>
    `request refused: ${commandName(f.command)} is not among the rule's "commands" (${commandsInMask(f.allowedCommands).join(', ')}); no socket was changed`,
  TOO_MANY_SOCKETS: (f) => `request refused: ${f.descriptors} sockets, over the rule's "maxSocketsPerRequest" of ${f.limit}; no socket was changed`,
  SESSION_SOCKETS_EXCEEDED: (f) =>
    `request refused: ${f.descriptors} sockets, over what the rule's "maxSocketsPerSession" leaves this session (${f.left}); no socket was changed`,
  NOT_A_SOCKET: (f) => `request refused: ${which(f)} is not a socket; no socket was changed`,
  NOT_TCP: (f) =>
    `request refused: ${which(f)} is not a TCP socket (${named(DOMAINS, f.domain)}, ${named(TYPES, f.type)}, protocol ${named(PROTOCOLS, f.protocol)}); no socket was changed`,
};

/** Whether a native failure is a request the protocol loop refused (rather than an error). */
export function isRequestRefusal(failure: NativeFailure): boolean {
  return Object.hasOwn(REQUEST_REFUSALS, failure.code);
}

/** Puts a native failure into one line. */
export function describeNativeFailure(failure: NativeFailure): string {
  const f = failure as Described;
  if (isRequestRefusal(f)) return REQUEST_REFUSALS[f.code]!(f);
  switch (f.code) {
    case 'SOCKET_FAILED':
      return `cannot create a UNIX socket: ${systemMessage(f.errno)}`;
    case 'RECEIVE_FAILED':
      return `cannot receive a request from passt: ${systemMessage(f.errno)}`;
    case 'WAIT_FAILED':
      return `cannot wait for a request from passt: ${systemMessage(f.errno)}`;
    case 'REPAIR_FAILED':
      return `${commandName(f.command)} failed on ${which(f)} (TCP state ${TCP_STATES[f.tcpState] ?? f.tcpState}): ${systemMessage(f.errno)}; ${rollbackNote(f)}`;
    case 'REPLY_FAILED':
      return `cannot send the reply to passt: ${systemMessage(f.errno)}; ${rollbackNote(f)}`;
    default:
      return `${f.code}: ${systemMessage(f.errno)}`;
  }
}
