// SPDX-License-Identifier: GPL-2.0-or-later
// The checks of a policy beyond its schema: everything that can be known
// wrong before a migration starts. loadPolicy runs them for serving, for
// --check-policy and for --explain alike, so whatever --check-policy calls
// valid, serving accepts, and the other way round.
//
// They read the parsed document, which may have failed the schema: each
// looks only at values the schema found nothing wrong with (`sound`), so
// that every problem is reported at once, not only the first.
import * as path from 'node:path';
import { HelperError } from '../errors';
import { lookUpAccount } from '../sandbox/account';
import type { Position } from './json';
import { directoryCanHoldSocket } from './overlap';

/** A problem found in the policy: where (a JSON pointer) and what, with what to do. */
export interface Problem {
  pointer: string;
  message: string;
}

type Sound = (pointer: string) => boolean;

function member(value: unknown, key: string): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.prototype.hasOwnProperty.call(value, key)) return undefined;
  return (value as Record<string, unknown>)[key];
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** Rule names given twice. */
function duplicateNames(document: unknown, sound: Sound, positions: Map<string, Position>): Problem[] {
  const first = new Map<string, string>();
  const problems: Problem[] = [];
  list(member(document, 'rules')).forEach((rule, index) => {
    const pointer = `/rules/${index}/name`;
    const name = member(rule, 'name');
    if (typeof name !== 'string' || !sound(pointer)) return;
    const earlier = first.get(name);
    if (earlier === undefined) first.set(name, pointer);
    else problems.push({ pointer, message: `a rule named "${name}" exists already (line ${positions.get(earlier)?.line ?? '?'}); rename one of them: names must be unique` });
  });
  return problems;
}

/**
 * "directories" patterns under which no "sockets" pattern of the same rule
 * can match the "NAME.repair" socket that directory mode waits for: such a
 * rule lets the helper wait there and then refuses every socket it finds.
 * Decided exactly by overlap.ts for the patterns as written; it cannot know
 * which directories exist or where their symlinks lead.
 */
function directoriesWithoutSockets(document: unknown, sound: Sound): Problem[] {
  const problems: Problem[] = [];
  list(member(document, 'rules')).forEach((rule, index) => {
    const at = `/rules/${index}`;
    if (!sound(`${at}/sockets`) || !sound(`${at}/directories`)) return;
    const sockets = list(member(rule, 'sockets')).filter((pattern): pattern is string => typeof pattern === 'string');
    list(member(rule, 'directories')).forEach((directory, item) => {
      if (typeof directory !== 'string' || sockets.length === 0) return;
      if (sockets.some((socket) => directoryCanHoldSocket(directory, socket))) return;
      const name = member(rule, 'name');
      problems.push({
        pointer: `${at}/directories/${item}`,
        message:
          `no "sockets" pattern of ${typeof name === 'string' ? `rule "${name}"` : 'this rule'} can match a socket NAME.repair in a directory "${directory}" matches, ` +
          `so the helper would wait there and refuse what it finds; add a "sockets" pattern such as "${directory}/*.repair"`,
      });
    });
  });
  return problems;
}

/** What the policy's text alone shows to be wrong. */
export function documentProblems(document: unknown, sound: Sound, positions: Map<string, Position>): Problem[] {
  return [...duplicateNames(document, sound, positions), ...directoriesWithoutSockets(document, sound)];
}

/** The sandbox account, when the policy names one: it must exist and be unprivileged. */
function sandboxAccount(document: unknown, sound: Sound): Problem[] {
  const user = member(member(document, 'sandbox'), 'user');
  if (typeof user !== 'string' || !sound('/sandbox/user')) return [];
  try {
    lookUpAccount(user);
    return [];
  } catch (error) {
    if (!(error instanceof HelperError)) throw error;
    return [{ pointer: '/sandbox/user', message: `${error.message}; name an existing unprivileged account, or create one (useradd --system ${user})` }];
  }
}

/**
 * Reporting needs the optional dependencies of package.json (Sentry's SDK:
 * most hosts never report to Sentry, and it is a large part of an install).
 * Each must resolve from here as the forwarder's require() will; package.json
 * names them, so this holds no list of its own. Returns what to do about the
 * first one missing.
 */
function missingOptionalPackage(): string | undefined {
  const manifest = require('../../../package.json') as { optionalDependencies: Record<string, string> };
  for (const [name, version] of Object.entries(manifest.optionalDependencies)) {
    try {
      require.resolve(name);
    } catch {
      // Where npm installs it so that it resolves from here: the project (or
      // global lib/) whose node_modules holds the helper, or the helper's own
      // directory when it is installed outside one (the Debian package).
      const root = path.resolve(__dirname, '../../..');
      const prefix = path.basename(path.dirname(root)) === 'node_modules' ? path.dirname(path.dirname(root)) : root;
      return `reporting to Sentry needs the optional package ${name}, which is not installed; install it with "npm install --omit=dev --prefix ${prefix} ${name}@${version}", or remove "sentry"`;
    }
  }
  return undefined;
}

/** Telemetry: only in a policy owned by root, and only with its optional packages installed. */
function telemetry(document: unknown, sound: Sound, owner: number): Problem[] {
  const problems: Problem[] = [];
  const settings = member(document, 'telemetry');
  if (settings === undefined) return problems;
  // Reports leave the machine: only the administrator decides that, not a
  // user who runs the helper with a policy of their own.
  if (owner !== 0)
    problems.push({ pointer: '/telemetry', message: `honoured only in a policy owned by root, and this one is owned by uid ${owner}; remove "telemetry" or have root own the file` });
  if (typeof member(member(settings, 'sentry'), 'dsn') === 'string' && sound('/telemetry/sentry')) {
    const missing = missingOptionalPackage();
    if (missing !== undefined) problems.push({ pointer: '/telemetry/sentry', message: missing });
  }
  return problems;
}

/** What is wrong with the policy on this machine: accounts and installed packages it relies on, who owns it. */
export function environmentProblems(document: unknown, sound: Sound, owner: number): Problem[] {
  return [...sandboxAccount(document, sound), ...telemetry(document, sound, owner)];
}
