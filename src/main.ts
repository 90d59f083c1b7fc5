// passt-repair: the helper's entry point, read top to bottom.
import * as fs from 'node:fs';
import { USAGE, parseArguments, type Invocation } from './cli';
import { connectToPasst } from './connect';
import { ExitCode, GATE_NUMBERS, HelperError, Refusal, UsageError, type Phase } from './errors';
import { AuditLog } from './log';
import { loadPolicy } from './policy';
import { checkPeer } from './policy/peer';
import { serve } from './protocol';
import { dropToNetAdmin, dropToReachSocket } from './sandbox/capabilities';
import { installSeccompFilter, loadAllowlist, prepareSeccompFilter } from './sandbox/seccomp';
import type { FailureReport, Reporter } from './telemetry/report';

// Modules and files that only --version, --explain and telemetry need are
// loaded when asked for: start-up time counts, as passt waits for the helper.
function version(): string {
  return (require('../../package.json') as { version: string }).version;
}

const log = new AuditLog('text');

/** What a serving run has done so far: the audit log's end line and the failure reports draw on it. */
interface Run {
  phase: Phase;
  started: boolean;
  requests: number;
  sockets: number;
  reporter: Reporter | undefined;
  /** Values to scrub from failure reports unless the policy includes them. */
  known: FailureReport['known'];
}

function milliseconds(nanoseconds: number): number {
  return Math.round(nanoseconds / 1e3) / 1e3;
}

function logStart(invocation: Extract<Invocation, { action: 'serve' }>, run: Run): void {
  if (run.started) return;
  run.started = true;
  const fields = { version: version(), pid: process.pid, path: invocation.path, policy: invocation.policyFile };
  log.write('info', 'start', `start: passt-repair ${fields.version}, pid ${fields.pid}, path ${fields.path}, policy ${fields.policy}`, fields);
}

/**
 * Connects to passt and serves it. The gates, in this order, before anything
 * passt sends is read:
 * 1. the path policy (load the policy; the path is checked while connecting),
 * 2. capabilities (dropped to what reaching the socket needs, then to CAP_NET_ADMIN),
 * 4. the peer's credentials (SO_PEERCRED right after connect),
 * 3. seccomp (built before connecting, loaded as the last step before the protocol loop).
 */
async function serveRun(invocation: Extract<Invocation, { action: 'serve' }>, run: Run): Promise<void> {
  run.phase = 'policy';
  const policy = loadPolicy(invocation.policyFile);
  log.format = invocation.logFormat ?? policy.log.format;
  logStart(invocation, run);
  run.known.paths.push(invocation.path, policy.file);
  if (policy.sandbox.seccomp === 'log')
    log.write('warning', 'warning', 'WARNING: seccomp is in LOG mode (policy "sandbox": {"seccomp": "log"}): forbidden system calls are only logged, not stopped. Never use this in production.');
  // The forwarder starts while the helper still can start a process that
  // then drops every privilege (src/telemetry/forwarder.ts).
  if (policy.sentry !== undefined) {
    const { startReporter } = require('./telemetry/reporter') as typeof import('./telemetry/reporter');
    run.reporter = startReporter(policy.sentry, policy.sandbox.user, version());
  }
  // Gate 3's filter is built now: after connecting, passt is waiting.
  const filter = prepareSeccompFilter(policy.sandbox, loadAllowlist({ telemetry: run.reporter !== undefined }));

  run.phase = 'capabilities';
  const privileges = dropToReachSocket(policy.sandbox);
  run.phase = 'connect';
  const connection = await connectToPasst(invocation.path, invocation.timeoutMs, policy, (line) => log.write('warning', 'warning', line));
  try {
    run.known.paths.push(connection.path);
    run.known.ids.push(connection.owner);
    run.phase = 'peer';
    const { rule, peer, exe } = checkPeer(connection);
    run.known.pids.push(peer.pid);
    run.known.ids.push(peer.uid, peer.gid);
    if (exe !== undefined) run.known.paths.push(exe);
    log.write(
      'info',
      'connected',
      `connected to ${connection.path}, allowed by rule "${rule.name}": peer pid ${peer.pid}, uid ${peer.uid}, gid ${peer.gid}, executable ${exe ?? 'unknown'}`,
      { socket: connection.path, rule: rule.name, peerPid: peer.pid, peerUid: peer.uid, peerGid: peer.gid, peerExe: exe },
    );
    run.phase = 'capabilities';
    dropToNetAdmin(privileges);
    run.phase = 'seccomp';
    installSeccompFilter(filter);
    run.phase = 'serve';
    serve(connection.sock, (summary) => {
      run.requests += summary.requests;
      run.sockets += summary.sockets;
      const durationMs = milliseconds(summary.nanoseconds);
      log.write('info', 'command', `${summary.command}: ${summary.requests} request(s), ${summary.sockets} socket(s), ${durationMs} ms`, {
        command: summary.command,
        requests: summary.requests,
        sockets: summary.sockets,
        durationMs,
      });
    });
  } finally {
    fs.closeSync(connection.sock);
  }
}

/** Logs why a serving run failed, reports it when telemetry is on, and gives its exit code. */
function logFailure(error: unknown, run: Run): ExitCode {
  const failure: FailureReport = { level: 'error', phase: run.phase, message: '', exitCode: ExitCode.Failure, known: run.known };
  if (error instanceof Refusal) {
    const number = GATE_NUMBERS[error.gate];
    const message = number === undefined ? error.message : `gate ${number} (${error.gate}) refused: ${error.message}`;
    log.write('error', 'refused', message, { gate: error.gate, reason: error.message });
    Object.assign(failure, { gate: error.gate, message });
  } else if (error instanceof HelperError) {
    log.write('error', 'error', error.message, { phase: run.phase, reason: error.message });
    Object.assign(failure, { message: error.message, exitCode: error.exitCode });
  } else {
    const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
    log.write('error', 'error', `internal error: ${stack}`, { phase: run.phase, reason: `internal error: ${stack}` });
    const type = error instanceof Error ? error.name : typeof error;
    Object.assign(failure, { level: 'fatal', message: `internal error: ${error instanceof Error ? error.message : String(error)}`, error: { type, stack } });
  }
  run.reporter?.report(failure);
  return failure.exitCode;
}

async function serveAndLog(invocation: Extract<Invocation, { action: 'serve' }>): Promise<ExitCode> {
  const run: Run = { phase: 'policy', started: false, requests: 0, sockets: 0, reporter: undefined, known: { paths: [], ids: [], pids: [process.pid] } };
  let exitCode: ExitCode = ExitCode.Done;
  let reason = 'done';
  try {
    await serveRun(invocation, run);
  } catch (error) {
    logStart(invocation, run);
    exitCode = logFailure(error, run);
    reason = error instanceof Refusal ? 'refused' : 'error';
  }
  // Since the process started, Node's own start-up included.
  const durationMs = Math.round(process.uptime() * 1e6) / 1e3;
  const ended = reason === 'done' ? 'passt closed the connection' : `${reason} (exit ${exitCode})`;
  const dropped = log.dropped > 0 ? `; ${log.dropped} log line(s) dropped` : '';
  log.write(reason === 'done' ? 'info' : 'error', 'end', `end: ${ended}; ${run.requests} request(s), ${run.sockets} socket(s) in ${durationMs} ms${dropped}`, {
    reason,
    exitCode,
    requests: run.requests,
    sockets: run.sockets,
    durationMs,
    droppedLines: log.dropped,
  });
  await run.reporter?.close();
  return exitCode;
}

async function main(invocation: Invocation): Promise<ExitCode> {
  if (invocation.logFormat !== undefined) log.format = invocation.logFormat;
  switch (invocation.action) {
    case 'help':
      fs.writeSync(process.stdout.fd, USAGE);
      return ExitCode.Done;
    case 'version':
      fs.writeSync(process.stdout.fd, `passt-repair ${version()}\n`);
      return ExitCode.Done;
    case 'check-policy':
      try {
        loadPolicy(invocation.policyFile);
      } catch (error) {
        if (!(error instanceof HelperError)) throw error;
        log.write('error', 'error', error.message, { phase: 'policy', reason: error.message });
        return ExitCode.Failure;
      }
      fs.writeSync(process.stdout.fd, `${invocation.policyFile}: valid\n`);
      return ExitCode.Done;
    case 'explain': {
      const { explainPath } = require('./policy/explain') as typeof import('./policy/explain');
      const explanation = explainPath(loadPolicy(invocation.policyFile), invocation.path);
      fs.writeSync(process.stdout.fd, explanation.text);
      return explanation.allowed ? ExitCode.Done : ExitCode.Failure;
    }
    case 'serve':
      return serveAndLog(invocation);
  }
}

new Promise<Invocation>((resolve) => resolve(parseArguments(process.argv.slice(2))))
  .then(main)
  .then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      if (error instanceof HelperError) {
        if (error instanceof UsageError) {
          log.write('error', 'error', error.message, { reason: error.message });
          log.write('error', 'error', 'try "passt-repair --help"');
        } else log.write('error', 'error', error.message, { phase: 'policy', reason: error.message });
        process.exitCode = error.exitCode;
      } else {
        const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
        log.write('error', 'error', `internal error: ${stack}`, { phase: 'internal', reason: `internal error: ${stack}` });
        process.exitCode = ExitCode.Failure;
      }
    },
  );
