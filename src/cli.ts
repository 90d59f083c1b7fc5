// The command line: `passt-repair [OPTIONS] PATH`, as libvirt and KubeVirt
// call the C helper, plus options that only narrow what it does.
import { UsageError } from './errors';

export const USAGE = `Usage: passt-repair [OPTIONS] PATH

Sets and clears TCP repair mode on sockets that passt(1) passes over its
repair socket, so that passt needs no capability to migrate TCP connections.

PATH is passt's repair socket, or a directory in which to wait for a socket
whose name ends in ".repair" (one that exists already, or one created later).

Options:
  --timeout SECONDS  give up waiting for the socket in directory mode after
                     SECONDS (default: wait as long as it takes)
  -h, --help         print this help and exit
  -V, --version      print the version and exit

Exit status: 0 when passt closes the connection, 1 on any error, 2 on a
usage error.
`;

export type Invocation =
  | { action: 'help' }
  | { action: 'version' }
  | { action: 'serve'; path: string; timeoutMs: number | undefined };

function parseTimeout(text: string | undefined): number {
  const seconds = Number(text);
  if (text === undefined || text.trim() === '' || !Number.isFinite(seconds) || seconds <= 0 || seconds > 86400 * 365)
    throw new UsageError(`--timeout needs a number of seconds greater than 0, not "${text ?? ''}"`);
  return Math.ceil(seconds * 1000);
}

export function parseArguments(args: readonly string[]): Invocation {
  let path: string | undefined;
  let timeoutMs: number | undefined;
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
          return { action: 'help' };
        case '-V':
        case '--version':
          return { action: 'version' };
        case '--timeout':
          timeoutMs = parseTimeout(inline ?? args[++i]);
          continue;
        default:
          throw new UsageError(`unknown option "${arg}"`);
      }
    }
    if (path !== undefined) throw new UsageError(`one PATH expected, got "${path}" and "${arg}"`);
    if (arg === '') throw new UsageError('PATH is empty');
    path = arg;
  }
  if (path === undefined) throw new UsageError('PATH is missing');
  return { action: 'serve', path, timeoutMs };
}
