// passt-repair: the helper's entry point, read top to bottom.
import * as fs from 'node:fs';
import { USAGE, parseArguments } from './cli';
import { connectToPasst } from './connect';
import { ExitCode, HelperError } from './errors';
import { serve } from './protocol';

const VERSION: string = require('../../package.json').version;

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
      fs.writeSync(process.stdout.fd, `passt-repair ${VERSION}\n`);
      return ExitCode.Done;
    case 'serve': {
      // The gates, in this order, before anything passt sends is read:
      // 1. the path policy (load the policy; the path is checked while connecting),
      // 2. capabilities (dropped to what reaching the socket needs, then to CAP_NET_ADMIN),
      // 4. the peer's credentials (SO_PEERCRED right after connect),
      // 3. seccomp (the last step before the protocol loop).
      const connection = await connectToPasst(invocation.path, invocation.timeoutMs);
      try {
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
      if (error.exitCode === ExitCode.Usage) say('try "passt-repair --help"');
      process.exitCode = error.exitCode;
    } else {
      say(`internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      process.exitCode = ExitCode.Failure;
    }
  },
);
