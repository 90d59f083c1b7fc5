// SPDX-License-Identifier: GPL-2.0-or-later
// passt-repair: the helper's entry point, read top to bottom.
// A named import: main.js is loaded at every start (it is not in the
// snapshot's heap, scripts/build-snapshot.js), and a namespace import copies
// every export of node:fs into a new object there (TypeScript's __importStar).
import { closeSync } from 'node:fs';
import { parseArguments, usage, type Invocation } from './cli';
import { connectToPasst } from './connect';
import { native } from './addon';
import { ExitCode, GATE_NUMBERS, HelperError, Refusal, SIGNAL_EXIT_BASE, Stopped, UsageError, type Phase } from './errors';
import { describeLimits } from './limits';
import { AuditLog, RuntimeMessages } from './log';
import { writeAnswer } from './output';
import { loadPolicy } from './policy';
import { serve } from './protocol';
import { chooseSandboxAccount, FALLBACK_ACCOUNT, SANDBOX_ACCOUNT } from './sandbox/account';
import { dropToNetAdmin, dropToReachSocket } from './sandbox/capabilities';
import { assertNoInheritedDescriptors } from './sandbox/descriptors';
import { installSeccompFilter, loadAllowlist, prepareSeccompFilter, refuseIoUring } from './sandbox/seccomp';
import { catchSignals, checkSignals, untilSignalled } from './signals';
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
 * Connects to passt and serves it. First, no descriptor the caller leaked is
 * open (src/sandbox/descriptors.ts). Then the gates, in this order, before
 * anything passt sends is read:
 * 1. the path policy (load the policy; the path is checked while connecting),
 * 2. capabilities (dropped to what reaching the socket needs, then to CAP_NET_ADMIN),
 * 4. the peer's credentials (SO_PEERCRED right after connect),
 * 3. seccomp (built before connecting, loaded as the last step before the protocol loop).
 * A signal (SIGTERM, SIGINT, SIGHUP) ends the wait for passt's socket at
 * once, and the synchronous steps after it at the next step: a Stopped error.
 */
async function serveRun(invocation: Extract<Invocation, { action: 'serve' }>, run: Run): Promise<void> {
  run.phase = 'descriptors';
  assertNoInheritedDescriptors();
  run.phase = 'policy';
  const policy = loadPolicy(invocation.policyFile);
  log.format = invocation.logFormat ?? policy.log.format;
  logStart(invocation, run);
  // An audited run with no audit log is not one: nothing is connected.
  if (log.lost !== undefined) throw new HelperError(`cannot write the audit log to standard error (${log.lost}): refusing to serve without it`);
  run.known.paths.push(invocation.path, policy.file);
  if (policy.sandbox.seccomp === 'log')
    log.write('warning', 'warning', 'WARNING: seccomp is in LOG mode (policy "sandbox": {"seccomp": "log"}): forbidden system calls are only logged, not stopped. Never use this in production.');
  const sandboxAccount = chooseSandboxAccount(policy.sandbox.user);
  if (sandboxAccount.fallback && process.getuid!() === 0)
    log.write(
      'warning',
      'warning',
      `WARNING: no "${SANDBOX_ACCOUNT}" account: running as "${FALLBACK_ACCOUNT}", which other processes share: any of them can signal the helper or lower its limits. Create it (see passt-repair(1)).`,
    );
  // The forwarder starts while the helper still can give it the sandbox
  // account's ids (src/telemetry/reporter.ts).
  if (policy.sentry !== undefined) {
    const { startReporter } = require('./telemetry/reporter') as typeof import('./telemetry/reporter');
    run.reporter = startReporter(policy.sentry, sandboxAccount.name, version());
  }
  // The runtime's own messages go to the audit log: its process.stderr
  // would cost start-up time and calls the filter forbids (src/log).
  new RuntimeMessages(log).install();
  // Gate 3's filter is built now: after connecting, passt is waiting.
  const filter = prepareSeccompFilter(policy.sandbox, loadAllowlist({ telemetry: run.reporter !== undefined }));
  // The protocol loop's second thread (native/worker.cc), started while a
  // thread may still be created and before gate 2 changes the credentials
  // of every thread, this one's included. Without it, batches run serially.
  native.startWorker();
  const ioUring = refuseIoUring();

  run.phase = 'capabilities';
  const privileges = dropToReachSocket(sandboxAccount.name);
  run.phase = 'connect';
  // Gate 4 runs inside, right after each connect(): in directory mode a
  // socket whose peer it refuses is skipped and the wait goes on.
  const { connection, allowed } = await untilSignalled(
    connectToPasst(invocation.path, invocation.timeoutMs, policy, (line) => log.write('warning', 'warning', line)).catch((error: unknown) => {
      if (error instanceof Refusal && error.gate === 'peer') run.phase = 'peer';
      throw error;
    }),
  );
  const connectedMs = process.uptime() * 1e3;
  try {
    checkSignals();
    const { rule, peer, exe, description } = allowed;
    const rootPid = connection.rootProcess?.pid;
    const socket = rootPid === undefined ? connection.path : `/proc/${rootPid}/root${connection.path}`;
    run.known.paths.push(socket, connection.path);
    run.known.ids.push(connection.owner);
    if (rootPid !== undefined) run.known.pids.push(rootPid);
    run.known.pids.push(peer.pid);
    run.known.ids.push(peer.uid, peer.gid);
    if (exe !== undefined) run.known.paths.push(exe);
    const where = rootPid === undefined ? connection.path : `${connection.path} inside the root of pid ${rootPid}`;
    const limits = describeLimits(rule.limits);
    log.write(
      'info',
      'connected',
      `connected to ${where}, allowed by rule "${rule.name}": peer ${description}, executable ${exe ?? 'unknown'}${limits === undefined ? '' : `; limits: ${limits}`}`,
      { socket, rootPid, insidePath: rootPid === undefined ? undefined : connection.path, rule: rule.name, peerPid: peer.pid, peerUid: peer.uid, peerGid: peer.gid, peerExe: exe, limits },
    );
    checkSignals();
    run.phase = 'capabilities';
    dropToNetAdmin(privileges);
    checkSignals();
    run.phase = 'seccomp';
    installSeccompFilter(filter, ioUring);
    checkSignals();
    run.phase = 'serve';
    await serve(connection.sock, rule.limits, connectedMs, (summary) => {
      run.requests += summary.requests;
      run.sockets += summary.sockets;
      const durationMs = milliseconds(summary.nanoseconds);
      // toFixed, not `${durationMs}`: converting a fraction to a string goes
      // through V8's number-string cache, which promotes each new string to
      // the old generation; with a line per request when passt alternates
      // commands, that grew the heap for as long as no major GC ran (issue 13).
      log.write('info', 'command', `${summary.command}: ${summary.requests} request(s), ${summary.sockets} socket(s), ${durationMs.toFixed(3)} ms`, {
        command: summary.command,
        requests: summary.requests,
        sockets: summary.sockets,
        durationMs,
      });
    });
  } catch (error) {
    // Whatever ended the session, passt must not read the close as a
    // success: the failure byte first (native/protocol.cc, kFailureByte).
    native.sendFailure(connection.sock);
    throw error;
  } finally {
    closeSync(connection.sock);
  }
}

/** An error that is a bug in the helper: the log's line (with the stack trace), the report's message, and what it was. */
function internalError(error: unknown): { reason: string; message: string; type: string; stack: string } {
  const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return {
    reason: `internal error: ${stack}`,
    message: `internal error: ${error instanceof Error ? error.message : String(error)}`,
    type: error instanceof Error ? error.name : typeof error,
    stack,
  };
}

/** Logs why a serving run failed, reports it when telemetry is on, and gives its exit code. */
function logFailure(error: unknown, run: Run): number {
  const failure: FailureReport = { level: 'error', phase: run.phase, message: '', exitCode: ExitCode.Failure, known: run.known };
  if (error instanceof Stopped) {
    // Not a failure: told to stop, and stopped cleanly. The end line says so.
    failure.exitCode = error.exitCode;
    return failure.exitCode;
  }
  if (error instanceof Refusal) {
    const number = GATE_NUMBERS[error.gate];
    const message = number === undefined ? error.message : `gate ${number} (${error.gate}) refused: ${error.message}`;
    log.write('error', 'refused', message, { gate: error.gate, reason: error.message });
    Object.assign(failure, { gate: error.gate, message });
  } else if (error instanceof HelperError) {
    log.write('error', 'error', error.lines, { phase: run.phase, reason: error.message });
    Object.assign(failure, { message: error.message, exitCode: error.exitCode });
  } else {
    const { reason, message, type, stack } = internalError(error);
    log.write('error', 'error', reason.split('\n'), { phase: run.phase, reason });
    Object.assign(failure, { level: 'fatal', message, error: { type, stack } });
  }
  run.reporter?.report(failure);
  return failure.exitCode;
}

async function serveAndLog(invocation: Extract<Invocation, { action: 'serve' }>): Promise<number> {
  const run: Run = { phase: 'descriptors', started: false, requests: 0, sockets: 0, reporter: undefined, known: { paths: [], ids: [], pids: [process.pid] } };
  let exitCode: number = ExitCode.Done;
  let reason = 'done';
  let signal: string | undefined;
  catchSignals();
  try {
    await serveRun(invocation, run);
  } catch (error) {
    logStart(invocation, run);
    exitCode = logFailure(error, run);
    reason = error instanceof Stopped ? 'signal' : error instanceof Refusal ? 'refused' : 'error';
    if (error instanceof Stopped) signal = error.signal;
  }
  // Since the process started, Node's own start-up included.
  const durationMs = Math.round(process.uptime() * 1e6) / 1e3;
  // A log lost while serving is reported by the exit status: no line can say it.
  const lost = log.lost;
  if (lost !== undefined && exitCode === ExitCode.Done) {
    exitCode = ExitCode.Failure;
    reason = 'error';
  }
  const ended = reason === 'done' ? 'passt closed the connection' : signal !== undefined ? `stopped by ${signal} (exit ${exitCode})` : `${reason} (exit ${exitCode})`;
  const dropped = `${log.dropped > 0 ? `; ${log.dropped} log line(s) dropped` : ''}${lost === undefined ? '' : `; audit log lost: ${lost}`}`;
  log.write(reason === 'done' ? 'info' : reason === 'signal' ? 'warning' : 'error', 'end', `end: ${ended}; ${run.requests} request(s), ${run.sockets} socket(s) in ${durationMs} ms${dropped}`, {
    reason,
    signal,
    exitCode,
    requests: run.requests,
    sockets: run.sockets,
    durationMs,
    droppedLines: log.dropped,
  });
  await run.reporter?.close();
  return exitCode;
}

/** The exit code: an ExitCode, or SIGNAL_EXIT_BASE + N when stopped by signal N. */
async function main(invocation: Invocation): Promise<number> {
  if (invocation.logFormat !== undefined) log.format = invocation.logFormat;
  switch (invocation.action) {
    case 'help':
      writeAnswer(usage());
      return ExitCode.Done;
    case 'version':
      writeAnswer(`passt-repair ${version()}\n`);
      return ExitCode.Done;
    case 'check-policy':
      try {
        loadPolicy(invocation.policyFile);
      } catch (error) {
        if (!(error instanceof HelperError)) throw error;
        log.write('error', 'error', error.lines, { phase: 'policy', reason: error.message });
        return ExitCode.Failure;
      }
      writeAnswer(`${invocation.policyFile}: valid\n`);
      return ExitCode.Done;
    case 'explain': {
      const { explainPath } = require('./policy/explain') as typeof import('./policy/explain');
      const explanation = explainPath(loadPolicy(invocation.policyFile), invocation.path);
      writeAnswer(explanation.text);
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
      // Stopped by a signal while waiting for passt's socket, the wait's
      // watch and timers are still pending: end now, the end line written.
      if (code > SIGNAL_EXIT_BASE) process.exit(code);
      process.exitCode = code;
    },
    (error: unknown) => {
      if (error instanceof HelperError) {
        if (error instanceof UsageError) {
          log.write('error', 'error', error.lines, { reason: error.message });
          log.write('error', 'error', 'try "passt-repair --help"');
        } else log.write('error', 'error', error.lines, { phase: 'policy', reason: error.message });
        process.exitCode = error.exitCode;
      } else {
        const { reason } = internalError(error);
        log.write('error', 'error', reason.split('\n'), { phase: 'internal', reason });
        process.exitCode = ExitCode.Failure;
      }
    },
  );
