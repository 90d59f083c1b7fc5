// Exit codes, and the one place where failures are put into words.
import { getSystemErrorMessage } from 'node:util';
import type { NativeFailure } from './native.d';

export const enum ExitCode {
  /** passt closed the connection: the work is done. */
  Done = 0,
  /** Anything that went wrong after the command line was understood. */
  Failure = 1,
  /** The command line itself was wrong. */
  Usage = 2,
}

/** A failure the helper reports with one line (or a few: a policy's schema errors) and an exit code. */
export class HelperError extends Error {
  /** The message's lines, each one line of the text audit log. */
  readonly lines: readonly string[];

  constructor(
    message: string | readonly string[],
    readonly exitCode: ExitCode = ExitCode.Failure,
  ) {
    const lines = typeof message === 'string' ? [message] : message;
    super(lines.join('\n'));
    this.lines = lines;
  }
}

/** Where in a run something happened: the audit log's and the reports' "phase". */
export type Phase = 'policy' | 'connect' | 'capabilities' | 'peer' | 'seccomp' | 'serve' | 'internal';

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

const COMMAND_NAMES: Record<number, string> = {
  1: 'TCP_REPAIR_ON',
  0: 'TCP_REPAIR_OFF',
  [-1]: 'TCP_REPAIR_OFF_NO_WP',
};

export function commandName(command: number): string {
  return COMMAND_NAMES[command] ?? `unknown command ${command}`;
}

// include/net/tcp_states.h
const TCP_STATES = [
  'unknown', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT',
  'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV',
];
const DOMAINS: Record<number, string> = { 1: 'AF_UNIX', 2: 'AF_INET', 10: 'AF_INET6', 16: 'AF_NETLINK', 17: 'AF_PACKET' };
const TYPES: Record<number, string> = { 1: 'SOCK_STREAM', 2: 'SOCK_DGRAM', 3: 'SOCK_RAW', 5: 'SOCK_SEQPACKET' };
const PROTOCOLS: Record<number, string> = { 0: 'default', 6: 'TCP', 17: 'UDP', 262: 'MPTCP' };

function named(table: Record<number, string>, value: unknown): string {
  return table[value as number] ?? String(value);
}

function rollbackNote(failure: NativeFailure): string {
  const unrestored = failure.unrestored as number;
  const note = `rolled back ${failure.rolledBack as number} socket(s) already switched`;
  return unrestored > 0 ? `${note}; ${unrestored} could NOT be restored` : note;
}

/** Puts a native failure into one line. */
export function describeNativeFailure(failure: NativeFailure): string {
  const f = failure as NativeFailure & Record<string, number>;
  const which = `descriptor ${f.index + 1} of ${f.descriptors}`;
  switch (f.code) {
    case 'SOCKET_FAILED':
      return `cannot create a UNIX socket: ${systemMessage(f.errno)}`;
    case 'RECEIVE_FAILED':
      return `cannot receive a request from passt: ${systemMessage(f.errno)}`;
    case 'CONTROL_TRUNCATED':
      return `request refused: the kernel truncated its descriptors (MSG_CTRUNC, ${f.descriptors} arrived; is RLIMIT_NOFILE too low?)`;
    case 'WRONG_LENGTH':
      return `request refused: ${f.bytes === 0 ? 'no command byte' : 'more than one byte'} where exactly one command byte is expected`;
    case 'NO_DESCRIPTORS':
      return `request refused: command ${f.command} came without an SCM_RIGHTS control message`;
    case 'UNEXPECTED_CONTROL':
      return `request refused: ${f.controlMessages} control messages where exactly one SCM_RIGHTS message is expected`;
    case 'WRONG_DESCRIPTOR_COUNT':
      return `request refused: ${f.descriptors} descriptors where 1 to 253 are expected`;
    case 'UNKNOWN_COMMAND':
      return `request refused: unknown command ${f.command} (expected 1 TCP_REPAIR_ON, 0 TCP_REPAIR_OFF or -1 TCP_REPAIR_OFF_NO_WP)`;
    case 'NOT_A_SOCKET':
      return `request refused: ${which} is not a socket; no socket was changed`;
    case 'NOT_TCP':
      return `request refused: ${which} is not a TCP socket (${named(DOMAINS, f.domain)}, ${named(TYPES, f.type)}, protocol ${named(PROTOCOLS, f.protocol)}); no socket was changed`;
    case 'REPAIR_FAILED':
      return `${commandName(f.command)} failed on ${which} (TCP state ${TCP_STATES[f.tcpState] ?? f.tcpState}): ${systemMessage(f.errno)}; ${rollbackNote(f)}`;
    case 'REPLY_FAILED':
      return `cannot send the reply to passt: ${systemMessage(f.errno)}; ${rollbackNote(f)}`;
    default:
      return `${f.code}: ${systemMessage(f.errno)}`;
  }
}
