// SPDX-License-Identifier: GPL-2.0-or-later
// --explain PATH: which rule would allow PATH, or why none does, in words an
// administrator can act on. PATH is resolved by gate 1's own resolver
// (./path-gate.ts), as serving resolves it: /var/run -> /run, a process's
// root for /proc/PID/root/..., the same refusals. What does not exist yet is
// matched as written after the deepest existing ancestor, as a socket, or
// as a directory when PATH ends in "/".
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Refusal } from '../errors';
import { describePeerRule } from './index';
import type { Policy } from './load';
import { describeLimits } from '../limits';
import {
  closeRoot,
  describeLocation,
  describeProcessRootRule,
  openHostRoot,
  pinProcessRoot,
  processRootRefusal,
  resolveForExplain,
  rulesAllowingDirectory,
  rulesAllowingSocket,
  splitProcessRoot,
  type ResolutionRoot,
} from './path-gate';

export interface Explanation {
  allowed: boolean;
  text: string;
}

/** The rules that apply in `root`, with a line for each rule that does not. */
function applicableRules(policy: Policy, root: ResolutionRoot, lines: string[]) {
  const process = root.process;
  if (process === undefined) {
    for (const rule of policy.rules)
      if (rule.processRoot !== undefined) lines.push(`rule "${rule.name}": has "processRoot": it applies only to paths given as /proc/PID/root/...`);
    return policy.rules.filter((rule) => rule.processRoot === undefined);
  }
  lines.push(`process ${process.pid}: uids ${process.uids.join('/')}, gids ${process.gids.join('/')} (real/effective/saved/filesystem)`);
  return policy.rules.filter((rule) => {
    if (rule.processRoot === undefined) {
      lines.push(`rule "${rule.name}": has no "processRoot": it applies only to host paths`);
      return false;
    }
    const refusal = processRootRefusal(rule.processRoot, process);
    if (refusal !== undefined) lines.push(`rule "${rule.name}": asks for ${describeProcessRootRule(rule.processRoot)} to lend its root; ${refusal}`);
    return refusal === undefined;
  });
}

function explainIn(policy: Policy, root: ResolutionRoot, given: string, inside: string, lines: string[]): Explanation {
  const rules = applicableRules(policy, root, lines);
  const askedDirectory = given.endsWith('/');
  const resolved = resolveForExplain(root, inside);
  let checked: string;
  let isDirectory: boolean;
  if (resolved.held !== undefined) {
    fs.closeSync(resolved.held.fd);
    checked = resolved.held.path;
    isDirectory = resolved.held.kind === 'directory';
    if (checked !== path.posix.resolve(inside)) lines.push(`${given} resolves to ${describeLocation(checked, root.process)}`);
    if (askedDirectory && !isDirectory) lines.push(`${describeLocation(checked, root.process)} is a socket, not a directory: explained as a socket`);
  } else if (resolved.partial !== undefined) {
    const { existing, missing } = resolved.partial;
    checked = path.posix.resolve(existing, ...missing);
    isDirectory = askedDirectory;
    lines.push(
      `${describeLocation(existing, root.process)} exists; ${missing.join('/')} does not exist yet: matched as ${describeLocation(checked, root.process)}, as a ${isDirectory ? 'directory' : 'socket'}${isDirectory ? '' : ' (end PATH with "/" to ask about a directory)'}`,
    );
  } else {
    lines.push(`${given}: ${resolved.kind}: the helper connects only to a socket or waits only in a directory`);
    return { allowed: false, text: `${lines.join('\n')}\n` };
  }
  const shown = describeLocation(checked, root.process);
  const kind = isDirectory ? 'directory' : 'socket';
  const field = isDirectory ? 'directories' : 'sockets';
  const allowing = isDirectory ? rulesAllowingDirectory(rules, checked) : rulesAllowingSocket(rules, checked);
  for (const rule of rules) {
    const patterns = isDirectory ? rule.directories : rule.sockets;
    const match = patterns.find((pattern) => pattern.matches(checked));
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
      ? `${shown}: allowed as a ${kind} by rule${allowing.length > 1 ? 's' : ''} ${allowing.map((r) => `"${r.name}"`).join(', ')} of ${policy.file}`
      : `${shown}: no rule of ${policy.file} allows it as a ${kind}`,
  );
  return { allowed: allowing.length > 0, text: `${lines.join('\n')}\n` };
}

export function explainPath(policy: Policy, given: string): Explanation {
  const lines: string[] = [];
  const { pid, inside } = splitProcessRoot(given);
  let root: ResolutionRoot | undefined;
  try {
    root = pid === undefined ? openHostRoot() : pinProcessRoot(pid);
    return explainIn(policy, root, given, inside, lines);
  } catch (error) {
    if (!(error instanceof Refusal)) throw error;
    lines.push(`gate 1 (path) would refuse: ${error.message}`);
    return { allowed: false, text: `${lines.join('\n')}\n` };
  } finally {
    if (root !== undefined) closeRoot(root);
  }
}
