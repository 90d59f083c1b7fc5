// passt-repair: the helper's entry point, read top to bottom.
import * as fs from 'node:fs';
import { USAGE, parseArguments } from './cli';
import { connectToPasst } from './connect';
import { ExitCode, HelperError, UsageError } from './errors';
import { loadPolicy } from './policy';
import { checkPeer } from './policy/peer';
import { serve } from './protocol';
import { dropToNetAdmin, dropToReachSocket } from './sandbox/capabilities';
import { installSeccompFilter, loadAllowlist } from './sandbox/seccomp';

// Modules and files that only --version and --explain need are loaded when
// asked for: start-up time counts, as passt waits for the helper.
function version(): string {
  return (require('../../package.json') as { version: string }).version;
}

function say(line: string): void {
  fs.writeSync(process.stderr.fd, `passt-repair: ${line}\n`);
}

async function main(args: readonly string[]): Promise<ExitCode> {
  const invocation = parseArguments(args);
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
        say(error.message);
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
    case 'serve': {
      // The gates, in this order, before anything passt sends is read:
      // 1. the path policy (load the policy; the path is checked while connecting),
      // 2. capabilities (dropped to what reaching the socket needs, then to CAP_NET_ADMIN),
      // 4. the peer's credentials (SO_PEERCRED right after connect),
      // 3. seccomp (the last step before the protocol loop).
      const policy = loadPolicy(invocation.policyFile);
      if (policy.sandbox.seccomp === 'log')
        say('WARNING: seccomp is in LOG mode (policy "sandbox": {"seccomp": "log"}): forbidden system calls are only logged, not stopped. Never use this in production.');
      const allowlist = loadAllowlist();
      const privileges = dropToReachSocket(policy.sandbox);
      const connection = await connectToPasst(invocation.path, invocation.timeoutMs, policy, say);
      try {
        checkPeer(connection);
        dropToNetAdmin(privileges);
        installSeccompFilter(policy.sandbox, allowlist);
        serve(connection.sock);
      } finally {
        fs.closeSync(connection.sock);
      }
      return ExitCode.Done;
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof HelperError) {
      say(error.message);
      if (error instanceof UsageError) say('try "passt-repair --help"');
      process.exitCode = error.exitCode;
    } else {
      say(`internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      process.exitCode = ExitCode.Failure;
    }
  },
);
