// SPDX-License-Identifier: GPL-2.0-or-later
// The bare Node.js floor of the benchmark: a process that only connects to
// the UNIX socket PATH and exits when passt closes the connection. It sets the
// lowest start-up time and resident memory a helper on this runtime can have.
//
// The benchmark runs it with the helper's Node binary, flags and environment,
// but directly: the real helper also pays for its sh launcher (sh, then env,
// then node), and that cost is part of what the comparison measures.
import * as net from 'node:net';

const socketPath = process.argv[2];
if (socketPath === undefined) {
  process.stderr.write('usage: bare-node PATH\n');
  process.exit(2);
}
// Reading keeps the socket open until EOF; nothing else keeps the process alive.
net.connect(socketPath).resume();
