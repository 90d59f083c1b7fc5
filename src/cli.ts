// SPDX-License-Identifier: GPL-2.0-or-later
// The command line: `passt-repair [OPTIONS] PATH`, as libvirt and KubeVirt
// call the C helper, plus options that only narrow what it does.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { closest } from './closest';
import { UsageError } from './errors';
import { DEFAULT_POLICY_FILE, type LogFormat } from './policy';

/**
 * --help, with the paths of this installation. The manual is a file beside
 * the package in an npm install; a Debian package has it only under
 * /usr/share/man, where "man passt-repair" finds it.
 */
export function usage(): string {
  // Where the helper is installed: dist/src/cli.js is two levels below it.
  // Computed here, not when the module loads: the start-up snapshot loads
  // it at build time (scripts/build-snapshot.js), elsewhere.
  const installed = path.resolve(__dirname, '../..');
  const page = path.join(installed, 'passt-repair.1');
  const manual = fs.existsSync(page) ? `man ${page}` : 'man passt-repair';
  return `Usage: passt-repair [OPTIONS] PATH
       passt-repair [--policy FILE] --explain PATH
       passt-repair --check-policy [FILE]

Sets and clears TCP repair mode on sockets that passt(1) passes over its
repair socket, so that passt needs no capability to migrate TCP connections.

PATH is passt's repair socket, or a directory in which to wait for a socket
whose name ends in ".repair" (one that exists already, or one created later).

The helper connects only where the policy file allows, and serves only a
passt the policy names (see the policy schema below).

Options:
  --policy FILE      the policy (default: ${DEFAULT_POLICY_FILE})
  --check-policy [FILE]
                     check the policy (FILE, or as --policy names it) and exit
                     0 if it is valid, 1 if it is not
  --explain PATH     print which rule of the policy allows PATH, or why none
                     does, and exit 0 if one does, 1 if none does
  --timeout SECONDS  give up waiting for the socket in directory mode after
                     SECONDS (default: wait as long as it takes)
  --log-format FORMAT
                     the audit log on standard error: "text" (default) or
                     "json", one object a line; overrides the policy's "log"
  -h, --help         print this help and exit
  -V, --version      print the version and exit

Exit status: 0 when passt closes the connection, 1 on any error (a refused
path, peer or request, or a limit of the rule, included), 2 on a usage error
or an unusable policy, 128+N when stopped cleanly by signal N: SIGHUP (129),
SIGINT (130) or SIGTERM (143), after the request in hand.

Installed files:
  the manual         ${manual}
  the policy schema  ${path.join(installed, 'policy/policy.schema.json')}
  example policies   ${path.join(installed, 'policy/examples')}/
`;
}

export type Invocation = (
  | { action: 'help' }
  | { action: 'version' }
  | { action: 'check-policy'; policyFile: string }
  | { action: 'explain'; path: string; policyFile: string }
  | { action: 'serve'; path: string; timeoutMs: number | undefined; policyFile: string }
) & {
  /** The command line's --log-format, which wins over the policy's "log". Usage errors are always text. */
  logFormat: LogFormat | undefined;
};

/** The options --help documents, the one list a misspelt option is compared with. */
function knownOptions(): string[] {
  const text = usage();
  return [...new Set(text.slice(text.indexOf('\nOptions:\n')).match(/(?<![\w-])--?[A-Za-z][\w-]*/g) ?? [])];
}

function unknownOption(arg: string): UsageError {
  const name = arg.includes('=') ? arg.slice(0, arg.indexOf('=')) : arg;
  const suggestion = closest(name, knownOptions());
  return new UsageError(`unknown option "${arg}"${suggestion === undefined ? '' : `; did you mean "${suggestion}"?`}`);
}

function parseLogFormat(text: string | undefined): LogFormat {
  if (text !== 'text' && text !== 'json') throw new UsageError(`--log-format needs "text" or "json", not "${text ?? ''}"`);
  return text;
}

function parseTimeout(text: string | undefined): number {
  const seconds = Number(text);
  if (text === undefined || text.trim() === '' || !Number.isFinite(seconds) || seconds <= 0 || seconds > 86400 * 365)
    throw new UsageError(`--timeout needs a number of seconds greater than 0, not "${text ?? ''}"`);
  return Math.ceil(seconds * 1000);
}

export function parseArguments(args: readonly string[]): Invocation {
  let path: string | undefined;
  let timeoutMs: number | undefined;
  let policyFile: string | undefined;
  let explain: string | undefined;
  let checkPolicy = false;
  let logFormat: LogFormat | undefined;
  let optionsEnded = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!optionsEnded && arg.startsWith('-') && arg !== '-') {
      const [name, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
      switch (name) {
        case '--':
          optionsEnded = true;
          continue;
        case '-h':
        case '--help':
          return { action: 'help', logFormat };
        case '-V':
        case '--version':
          return { action: 'version', logFormat };
        case '--timeout':
          timeoutMs = parseTimeout(inline ?? args[++i]);
          continue;
        case '--log-format':
          logFormat = parseLogFormat(inline ?? args[++i]);
          continue;
        case '--policy':
          policyFile = inline ?? args[++i];
          if (policyFile === undefined || policyFile === '') throw new UsageError(`--policy needs a FILE, the policy to use (the default is ${DEFAULT_POLICY_FILE})`);
          continue;
        case '--explain':
          explain = inline ?? args[++i];
          if (explain === undefined || explain === '') throw new UsageError("--explain needs a PATH, the socket or directory to explain");
          continue;
        case '--check-policy':
          // Its FILE is optional, so it is taken as the operand below.
          checkPolicy = true;
          if (inline !== undefined) policyFile = inline;
          continue;
        default:
          throw unknownOption(arg);
      }
    }
    if (path !== undefined) throw new UsageError(`one PATH expected, got "${path}" and "${arg}"; a helper serves one socket or directory`);
    if (arg === '') throw new UsageError("PATH is empty; name passt's repair socket, or the directory in which passt will create it");
    path = arg;
  }
  if (checkPolicy) {
    if (explain !== undefined || timeoutMs !== undefined)
      throw new UsageError(`--check-policy does not go with ${explain !== undefined ? '--explain' : '--timeout'}; check the policy first, then run the other`);
    if (path !== undefined && policyFile !== undefined)
      throw new UsageError(`one policy FILE expected, got "${policyFile}" and "${path}"; give it either after --check-policy or with --policy`);
    return { action: 'check-policy', policyFile: path ?? policyFile ?? DEFAULT_POLICY_FILE, logFormat };
  }
  if (explain !== undefined) {
    if (path !== undefined) throw new UsageError(`--explain takes one PATH, got "${explain}" and "${path}"; explain one path at a time`);
    if (timeoutMs !== undefined) throw new UsageError('--explain does not go with --timeout: --explain waits for nothing; drop --timeout');
    return { action: 'explain', path: explain, policyFile: policyFile ?? DEFAULT_POLICY_FILE, logFormat };
  }
  if (path === undefined) throw new UsageError("PATH is missing; name passt's repair socket, or the directory in which passt will create it");
  return { action: 'serve', path, timeoutMs, policyFile: policyFile ?? DEFAULT_POLICY_FILE, logFormat };
}
