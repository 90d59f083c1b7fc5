// --explain PATH: which rule would allow PATH, or why none does, in words an
// administrator can act on. Resolved the way the helper resolves it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describePeerRule, rulesAllowingDirectory, rulesAllowingSocket } from './index';
import type { Policy } from './load';
import { describeLimits } from '../limits';

export interface Explanation {
  allowed: boolean;
  text: string;
}

export function explainPath(policy: Policy, given: string): Explanation {
  const lines: string[] = [];
  let resolved: string;
  let isDirectory = false;
  try {
    resolved = fs.realpathSync(given);
    isDirectory = fs.statSync(resolved).isDirectory();
  } catch {
    resolved = path.resolve(given);
    lines.push(`${given} does not exist (yet): matched as written, as a socket path`);
  }
  if (resolved !== path.resolve(given)) lines.push(`${given} resolves to ${resolved}`);
  const kind = isDirectory ? 'directory' : 'socket';
  const field = isDirectory ? 'directories' : 'sockets';
  const allowing = isDirectory ? rulesAllowingDirectory(policy.rules, resolved) : rulesAllowingSocket(policy.rules, resolved);
  for (const rule of policy.rules) {
    const patterns = isDirectory ? rule.directories : rule.sockets;
    const match = patterns.find((pattern) => pattern.matches(resolved));
    if (match === undefined) {
      lines.push(`rule "${rule.name}": no "${field}" pattern matches${patterns.length === 0 ? ' (it has none)' : ` (${patterns.map((p) => JSON.stringify(p.source)).join(', ')})`}`);
      continue;
    }
    lines.push(`rule "${rule.name}": "${field}" pattern ${JSON.stringify(match.source)} matches; it serves ${describePeerRule(rule)}`);
    if (describeLimits(rule.limits) !== undefined) lines.push(`  its limits: ${describeLimits(rule.limits)}`);
    if (isDirectory)
      lines.push(`  a socket found there must match one of its "sockets" patterns: ${rule.sockets.map((p) => JSON.stringify(p.source)).join(', ')}`);
  }
  lines.push(
    allowing.length > 0
      ? `${resolved}: allowed as a ${kind} by rule${allowing.length > 1 ? 's' : ''} ${allowing.map((r) => `"${r.name}"`).join(', ')} of ${policy.file}`
      : `${resolved}: no rule of ${policy.file} allows it as a ${kind}`,
  );
  return { allowed: allowing.length > 0, text: `${lines.join('\n')}\n` };
}
