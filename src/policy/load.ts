// SPDX-License-Identifier: GPL-2.0-or-later
// Reading the policy file: trusted only if nobody but root (or the helper's
// own uid) can have written it, parsed strictly, validated against
// policy/policy.schema.json (validator generated at build time) and by the
// checks of check.ts, and every problem reported at once, like a compiler's
// errors: FILE:LINE:COLUMN: /pointer: what is wrong; what to do.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ExitCode, HelperError } from '../errors';
import { closest } from '../closest';
import { ruleLimits, type LimitsDocument, type RuleLimits } from '../limits';
import { documentProblems, environmentProblems, type Problem } from './check';
import type { SandboxSettings } from '../sandbox/settings';
import { JsonSyntaxError, parseJson, pointerKeys, pointerToken, type Position } from './json';
import { compilePattern } from './pattern';
import { validatePolicySchema } from './validate.generated';

export const DEFAULT_POLICY_FILE = '/etc/passt-repair/policy.json';
/** A policy is a few kilobytes; anything far larger is not one. */
const MAX_POLICY_BYTES = 1 << 20;

export interface Pattern {
  source: string;
  matches(path: string): boolean;
}

export interface PeerRule {
  sameOwner: boolean;
  uids: readonly number[] | undefined;
  gids: readonly number[] | undefined;
}

/** Which processes may lend their root (/proc/PID/root/...) to a rule's paths: all present conditions hold. */
export interface ProcessRootRule {
  uids: readonly number[] | undefined;
  gids: readonly number[] | undefined;
}

export interface Rule {
  name: string;
  sockets: readonly Pattern[];
  directories: readonly Pattern[];
  peer: PeerRule;
  /** What a session served under this rule may do (src/limits.ts). */
  limits: RuleLimits;
  /** Present: the rule's patterns name paths inside a process's root, given as /proc/PID/root/...; absent: host paths. */
  processRoot: ProcessRootRule | undefined;
}

export type LogFormat = 'text' | 'json';

/** What a Sentry report may carry unscrubbed. */
export type SentryInclude = 'paths' | 'ids' | 'pids';

export interface SentrySettings {
  dsn: string;
  environment: string;
  include: ReadonlySet<SentryInclude>;
}

export interface Policy {
  file: string;
  sandbox: SandboxSettings;
  log: { format: LogFormat };
  /** Reporting to Sentry, when the policy opts in. */
  sentry: SentrySettings | undefined;
  rules: readonly Rule[];
}

/** A policy that cannot be used: exit 2, connect nowhere. */
export class PolicyError extends HelperError {
  constructor(message: string | readonly string[]) {
    super(message, ExitCode.Usage);
  }
}

// The file as the schema guarantees it to be.
interface PolicyDocument {
  version: 1;
  sandbox?: { user?: string; seccomp?: 'kill' | 'log' };
  log?: { format?: LogFormat };
  telemetry?: { sentry?: { dsn: string; environment?: string; include?: SentryInclude[] } };
  rules: {
    name: string;
    sockets: string[];
    directories?: string[];
    peer: { sameOwner?: boolean; uids?: number[]; gids?: number[] };
    processRoot?: { uids?: number[]; gids?: number[] };
    limits?: LimitsDocument;
  }[];
}

interface SchemaError {
  instancePath: string;
  schemaPath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

const validate = validatePolicySchema as unknown as { (data: unknown): boolean; errors?: SchemaError[] | null };

const S_ISVTX = 0o1000;

function modeText(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
}

/** sshd's and sudo's rule: owned by root or by us, and not writable by group or others unless a sticky directory. */
function checkTrusted(file: string, stats: fs.Stats): void {
  const euid = process.geteuid!();
  if (stats.uid !== 0 && stats.uid !== euid)
    throw new PolicyError(
      `${file}: owned by uid ${stats.uid}; a policy and every directory above it must be owned by root${euid === 0 ? '' : ` or uid ${euid}`} (chown root ${file})`,
    );
  const sticky = stats.isDirectory() && (stats.mode & S_ISVTX) !== 0;
  if ((stats.mode & 0o022) !== 0 && !sticky)
    throw new PolicyError(`${file}: mode ${modeText(stats.mode)} is writable by group or others; a policy and every directory above it must not be (chmod go-w ${file})`);
}

/** What kind of file `stats` is, in words, for the message refusing a policy that is not a regular file. */
function kindOf(stats: fs.Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/** A file system failure while reading the policy, in our words (never Node's), with what to do. */
function readFailure(file: string, error: NodeJS.ErrnoException): PolicyError {
  switch (error.code) {
    case 'ENOENT':
      return new PolicyError(
        `${file}: no policy file here; install one with "passt-repair-install-policy" (as root, then edit it), or name another with --policy FILE`,
      );
    case 'EACCES':
    case 'EPERM':
      return new PolicyError(`${file}: permission denied while reading the policy; run as root, or name a policy this user may read with --policy FILE`);
    case 'ENOTDIR':
      return new PolicyError(`${file}: a component of this path is not a directory; name the policy file with --policy FILE`);
    case 'ELOOP':
      return new PolicyError(`${file}: a loop of symbolic links; name the policy file by its real path`);
    case 'ENAMETOOLONG':
      return new PolicyError(`${file}: the path is too long; name the policy file by a shorter path`);
    default:
      return new PolicyError(`${file}: cannot read the policy (error ${error.code ?? 'unknown'}); check the file and every directory above it`);
  }
}

/** Reads the policy file after checking that nobody untrusted can have written it. */
function readTrustedFile(file: string): { text: string; owner: number } {
  const absolute = path.resolve(file);
  let fd: number | undefined;
  try {
    // Named by its real path: a symlink would let whoever controls the
    // link's directory choose which file is the policy. realpath(3), not
    // Node.js's JavaScript walk (an lstat per component, and more code to
    // compile at every start): the same answer, or the same error code.
    const real = fs.realpathSync.native(absolute);
    if (real !== absolute) throw new PolicyError(`${file}: reached through a symlink (to ${real}); name the policy file by its real path`);
    fd = fs.openSync(absolute, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    const stats = fs.fstatSync(fd);
    if (!stats.isFile()) throw new PolicyError(`${file}: ${kindOf(stats)}, not a policy file; name the policy file itself with --policy FILE`);
    checkTrusted(absolute, stats);
    for (let directory = path.dirname(absolute); ; directory = path.dirname(directory)) {
      checkTrusted(directory, fs.lstatSync(directory));
      if (directory === '/') break;
    }
    if (stats.size > MAX_POLICY_BYTES) throw new PolicyError(`${file}: ${stats.size} bytes; a policy is at most ${MAX_POLICY_BYTES}: is this the right file?`);
    return { text: fs.readFileSync(fd, 'utf8'), owner: stats.uid };
  } catch (error) {
    if (error instanceof PolicyError) throw error;
    throw readFailure(file, error as NodeJS.ErrnoException);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

const TYPE_NAMES: Record<string, string> = { object: 'an object', array: 'an array', string: 'a string', number: 'a number', integer: 'an integer', boolean: 'true or false', null: 'null' };

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a number';
  return TYPE_NAMES[typeof value] ?? typeof value;
}

/** The value a JSON pointer names, or undefined. */
function valueAt(document: unknown, pointer: string): unknown {
  let value = document;
  for (const key of pointerKeys(pointer)) {
    if (value === null || typeof value !== 'object' || !Object.prototype.hasOwnProperty.call(value, key)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

interface SchemaNode {
  $ref?: string;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
}

/** The keys the schema allows in the object at `instancePath`, found by walking the schema along it. */
function keysAllowedAt(instancePath: string): string[] {
  const root = policySchema() as SchemaNode;
  const follow = (node: SchemaNode | undefined): SchemaNode | undefined => (node?.$ref === undefined ? node : (valueAt(root, node.$ref.replace(/^#/, '')) as SchemaNode | undefined));
  let node = follow(root);
  for (const key of pointerKeys(instancePath)) node = follow(node?.properties?.[key] ?? node?.items);
  return Object.keys(node?.properties ?? {}).filter((key) => key !== '$schema');
}

// Read only to word a message about an unknown key: the validator itself is generated at build time.
function policySchema(): unknown {
  return require('../../../policy/policy.schema.json') as unknown;
}

/** What is wrong with a path pattern the schema refused, and how to write it. */
function patternMistake(pattern: string): string {
  if (pattern === '') return 'an empty pattern; write an absolute path such as "/run/passt/*.repair"';
  if (!pattern.startsWith('/')) return `"${pattern}" is relative; patterns are absolute paths: write "/${pattern}"`;
  if (pattern === '/') return '"/" alone names no directory or socket; write the path of one, such as "/run/passt"';
  const segments = pattern.slice(1).split('/');
  const tidy = path.posix.normalize(pattern).replace(/(.)\/$/, '$1');
  if (segments.includes('..')) return `"${pattern}" has a ".." segment; patterns match paths with every symlink and ".." resolved: write the path it means without ".."`;
  if (segments.includes('.')) return `"${pattern}" has a "." segment; write it without: "${tidy}"`;
  if (pattern.endsWith('/')) return `"${pattern}" ends in "/"; write it without: "${tidy}" (a "directories" pattern names the directory itself)`;
  if (segments.includes('')) return `"${pattern}" has an empty segment ("//"); write it with single slashes: "${tidy}"`;
  const starry = segments.find((segment) => segment !== '**' && segment.includes('**'));
  if (starry !== undefined)
    return `"${pattern}" has "**" inside the segment "${starry}"; "**" must be a whole segment ("/run/**/x", any depth), and "*" matches within one segment`;
  return `"${pattern}" is not a valid path pattern (see "definitions/pattern" in policy/policy.schema.json)`;
}

function plural(count: unknown, word: string): string {
  return `${String(count)} ${word}${count === 1 ? '' : 's'}`;
}

function schemaErrorLine(error: SchemaError, document: unknown): Problem {
  const at = error.instancePath;
  const p = error.params;
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      const known = keysAllowedAt(at);
      const suggestion = closest(key, known);
      const hint =
        suggestion !== undefined
          ? `did you mean "${suggestion}"?`
          : known.length > 0
            ? `the keys allowed here are ${known.map((k) => `"${k}"`).join(', ')}`
            : 'remove it';
      return { pointer: `${at}/${pointerToken(key)}`, message: `unknown key "${key}"; ${hint}` };
    }
    case 'required':
      return { pointer: at, message: `missing the required key "${String(p.missingProperty)}"; add it` };
    case 'const':
      return { pointer: at, message: `expected ${JSON.stringify(p.allowedValue)}, found ${JSON.stringify(valueAt(document, at))}` };
    case 'enum':
      return { pointer: at, message: `expected one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, found ${JSON.stringify(valueAt(document, at))}` };
    case 'type':
      return { pointer: at, message: `expected ${String(p.type).split(',').map((type) => TYPE_NAMES[type] ?? type).join(' or ')}, found ${typeName(valueAt(document, at))}` };
    case 'pattern':
      if (error.schemaPath.startsWith('#/definitions/pattern/')) return { pointer: at, message: patternMistake(String(valueAt(document, at))) };
      return { pointer: at, message: `${JSON.stringify(valueAt(document, at))} is not allowed here: expected a string matching ${String(p.pattern)}` };
    case 'minLength':
      return { pointer: at, message: p.limit === 1 ? 'is empty; expected a non-empty string' : `expected at least ${plural(p.limit, 'character')}` };
    case 'maxLength':
      return { pointer: at, message: `is too long; expected at most ${plural(p.limit, 'character')}` };
    case 'minItems':
      return { pointer: at, message: `expected at least ${plural(p.limit, 'item')}, found ${(valueAt(document, at) as unknown[]).length}` };
    case 'uniqueItems':
      return { pointer: at, message: `items ${Math.min(Number(p.i), Number(p.j))} and ${Math.max(Number(p.i), Number(p.j))} are the same; remove one` };
    case 'minimum':
      return { pointer: at, message: `expected at least ${String(p.limit)}, found ${JSON.stringify(valueAt(document, at))}` };
    case 'maximum':
      return { pointer: at, message: `expected at most ${String(p.limit)}, found ${JSON.stringify(valueAt(document, at))}` };
    case 'exclusiveMinimum':
      return { pointer: at, message: `expected more than ${String(p.limit)}, found ${JSON.stringify(valueAt(document, at))}` };
    case 'exclusiveMaximum':
      return { pointer: at, message: `expected less than ${String(p.limit)}, found ${JSON.stringify(valueAt(document, at))}` };
    default:
      return { pointer: at, message: error.message ?? error.keyword };
  }
}

interface Located {
  at: Position;
  text: string;
}

function located(file: string, positions: Map<string, Position>, problem: Problem): Located {
  const { pointer, message } = problem;
  let at = positions.get(pointer);
  // A pointer to a key that is not there (a required key) is reported at its object.
  for (let parent = pointer; at === undefined && parent !== ''; ) {
    parent = parent.slice(0, parent.lastIndexOf('/'));
    at = positions.get(parent);
  }
  const where = at ?? { line: 1, column: 1 };
  return { at: where, text: `${file}:${where.line}:${where.column}: ${pointer === '' ? '/' : pointer}: ${message}` };
}

/** One message, a problem a line, in the order of the file. */
function report(file: string, positions: Map<string, Position>, problems: readonly Problem[]): PolicyError {
  const lines = problems
    .map((problem) => located(file, positions, problem))
    .sort((a, b) => a.at.line - b.at.line || a.at.column - b.at.column)
    .map((line) => line.text);
  return new PolicyError([...new Set(lines)]);
}

/** Parses policy text and lists every problem the schema and the checks of check.ts find in it. */
function examine(file: string, text: string): { value: unknown; positions: Map<string, Position>; problems: Problem[]; sound: (pointer: string) => boolean } {
  let parsed;
  try {
    parsed = parseJson(text);
  } catch (error) {
    if (!(error instanceof JsonSyntaxError)) throw error;
    throw new PolicyError(`${file}:${error.position.line}:${error.position.column}: invalid JSON: ${error.message}`);
  }
  const { value, positions } = parsed;
  const schemaProblems = validate(value) ? [] : (validate.errors ?? []).map((error) => schemaErrorLine(error, value));
  const faulty = schemaProblems.map((problem) => problem.pointer);
  // Only what the schema found nothing wrong with (at it or inside it) is checked further.
  const sound = (pointer: string): boolean => !faulty.some((bad) => bad === pointer || bad.startsWith(`${pointer}/`));
  return { value, positions, problems: [...schemaProblems, ...documentProblems(value, sound, positions)], sound };
}

function toPolicy(file: string, value: unknown): Policy {
  const document = value as PolicyDocument;
  const pattern = (source: string): Pattern => ({ source, matches: compilePattern(source) });
  const sentry = document.telemetry?.sentry;
  return {
    file,
    sandbox: { user: document.sandbox?.user, seccomp: document.sandbox?.seccomp ?? 'kill' },
    log: { format: document.log?.format ?? 'text' },
    sentry: sentry && { dsn: sentry.dsn, environment: sentry.environment ?? 'production', include: new Set(sentry.include ?? []) },
    rules: document.rules.map((rule) => ({
      name: rule.name,
      sockets: rule.sockets.map(pattern),
      directories: (rule.directories ?? []).map(pattern),
      peer: { sameOwner: rule.peer.sameOwner ?? true, uids: rule.peer.uids, gids: rule.peer.gids },
      limits: ruleLimits(rule.limits),
      processRoot: rule.processRoot && { uids: rule.processRoot.uids, gids: rule.processRoot.gids },
    })),
  };
}

/** Parses and validates policy text (nothing outside the text is checked); `file` names it in messages. */
export function parsePolicy(file: string, text: string): Policy {
  const { value, positions, problems } = examine(file, text);
  if (problems.length > 0) throw report(file, positions, problems);
  return toPolicy(file, value);
}

/**
 * Loads the policy, failing closed with a PolicyError (exit 2) that lists
 * every problem: what serving and --check-policy refuse, checked in one place.
 */
export function loadPolicy(file: string): Policy {
  const { text, owner } = readTrustedFile(file);
  const { value, positions, problems, sound } = examine(file, text);
  problems.push(...environmentProblems(value, sound, owner));
  if (problems.length > 0) throw report(file, positions, problems);
  return toPolicy(file, value);
}
