// SPDX-License-Identifier: GPL-2.0-or-later
// What a failure report may carry out of the machine. Applied in the helper,
// to the message and the stack, before anything is written to the pipe to
// the forwarder: socket, directory and file paths, uids and gids, pids are
// replaced by placeholders unless the policy's telemetry.sentry.include
// names them. Pure functions (test/scrub.test.ts).
//
// Two nets: the values this run knows to be sensitive (FailureReport.known:
// the PATH argument, the socket, the policy file, the peer's executable,
// the peer's and the socket owner's ids, the pids), replaced wherever they
// appear; and patterns for what the helper's messages say ("uid N",
// "pid N", "uids [..]", any absolute path), which also catch values no one
// listed. Scrubbing too much costs a less precise report; too little, data
// the policy did not allow out.
import type { SentryInclude } from '../policy';
import type { FailureReport, ReportLine } from './report';

export const PATH_PLACEHOLDER = '[path]';
export const ID_PLACEHOLDER = '[id]';
export const PID_PLACEHOLDER = '[pid]';

/** A message or a stack is cut to this many characters, after scrubbing (never before: a cut value would escape). */
export const MAX_MESSAGE_LENGTH = 4096;
export const MAX_STACK_LENGTH = 16384;

export type Known = FailureReport['known'];

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// A character of a path segment: anything but a separator, white space,
// quotes, brackets and the punctuation messages put around a path ("PATH: why",
// "(PATH:LINE:COLUMN)", "[a, b]"). Glob characters are in: a rule's pattern is a path too.
const SEGMENT = String.raw`[^\s/"'\x60()<>[\]{},;:|]`;
// Where an absolute path may start: the text's start, white space, a quote, an
// opening bracket, "=", ",", ";" or ":". Not after a letter or a digit, so
// "TCP_REPAIR_ON/OFF", "I/O" and "1/2" are left alone.
const PATH_START = String.raw`(?<=^|[\s"'\x60(<[{=,;:])`;
const ABSOLUTE_PATH = new RegExp(String.raw`${PATH_START}(?:file://)?/${SEGMENT}+(?:/${SEGMENT}*)*`, 'g');

/**
 * Frames of the package itself, and any other mention of a file in it,
 * become relative to the package root ("dist/src/main.js:12:3"), so that
 * Sentry can still group by frame once every other path is gone. Applied
 * whatever the policy includes: where the package is installed says nothing
 * about passt's sockets.
 */
export function relativeToPackage(text: string, packageRoot: string): string {
  const root = packageRoot.replace(/\/+$/, '');
  if (root === '') return text;
  return text.replace(new RegExp(`${PATH_START}(?:file://)?${escapeRegExp(root)}/(?=${SEGMENT})`, 'g'), '');
}

/** Replaces each of `values` where it stands alone (not inside a longer path, word or number) with `placeholder`. */
function replaceKnown(text: string, values: readonly string[], placeholder: string): string {
  // Longest first: a path that contains another is replaced whole.
  const sorted = [...new Set(values)].filter((value) => value !== '').sort((a, b) => b.length - a.length);
  for (const value of sorted)
    text = text.replace(new RegExp(`(?<!${SEGMENT}|/)${escapeRegExp(value)}(?!${SEGMENT}|/${SEGMENT})`, 'g'), placeholder);
  return text;
}

/** A bare "/" or "." names nothing worth hiding and would hit every separator. */
function meaningfulPaths(paths: readonly string[]): string[] {
  return paths.filter((value) => value.replace(/[/.]/g, '') !== '');
}

/**
 * Every value of `paths` (first, as given: one may be relative, as the PATH
 * argument may, or hold characters the pattern stops at) and then every
 * absolute path in `text` becomes "[path]". Files of the package become
 * relative to `packageRoot` in between, and so survive.
 */
export function scrubPaths(text: string, paths: readonly string[], packageRoot = ''): string {
  text = replaceKnown(text, meaningfulPaths(paths), PATH_PLACEHOLDER);
  return relativeToPackage(text, packageRoot).replace(ABSOLUTE_PATH, PATH_PLACEHOLDER);
}

/** A number standing alone: not part of a longer number, word, version or path segment. */
function replaceNumbers(text: string, numbers: readonly number[], placeholder: string): string {
  for (const number of new Set(numbers))
    text = text.replace(new RegExp(`(?<![\\w.])${number}(?!\\w|\\.\\d)`, 'g'), placeholder);
  return text;
}

const ID_WORDS = String.raw`\b(uids?|gids?|euid|egid|owner|groups?|Uid|Gid|Groups)`;
const NUMBER_LIST = String.raw`\d+(?:(?:\s*,\s*|\s+or\s+)\d+)*`;

/**
 * "uid 1000", "gid 1000", "group 0", "owned by uid 1000", "uids [1, 2]",
 * "has uid 1 or 2", "Uid is 0,0,0,0, expected ..." and every value of
 * `known.ids` (but 0, root's, which is no one's secret and would hit every
 * other 0) become "[id]".
 */
export function scrubIds(text: string, ids: readonly number[]): string {
  text = text
    .replace(new RegExp(String.raw`\b(Uid|Gid|Groups) is [\d,\s]*, expected [\d,\s]*`, 'g'), `$1 is ${ID_PLACEHOLDER}, expected ${ID_PLACEHOLDER}`)
    .replace(new RegExp(String.raw`${ID_WORDS}(\s*[=:]?\s*)\[[\d,\s]*\]`, 'g'), `$1$2[${ID_PLACEHOLDER}]`)
    .replace(new RegExp(`${ID_WORDS}(\\s*[=:]?\\s*)${NUMBER_LIST}\\b`, 'g'), `$1$2${ID_PLACEHOLDER}`);
  return replaceNumbers(text, ids.filter((id) => id > 0), ID_PLACEHOLDER);
}

/**
 * "pid 1234", "thread 1234" and "tid 1234" (a thread's id is a pid) and
 * every value of `known.pids` (but 0 and 1) become "[pid]".
 */
export function scrubPids(text: string, pids: readonly number[]): string {
  text = text.replace(/\b(pids?|ppid|tids?|thread|Pid|Tgid|PPid)(\s*[=:]?\s*)\d+\b/g, `$1$2${PID_PLACEHOLDER}`);
  return replaceNumbers(text, pids.filter((pid) => pid > 1), PID_PLACEHOLDER);
}

export interface ScrubOptions {
  include: ReadonlySet<SentryInclude>;
  known: Known;
  /** The package's root directory: its files are named relative to it. */
  packageRoot: string;
}

/** Everything the policy does not include, out of one text (a message or a stack). */
export function scrubText(text: string, options: ScrubOptions): string {
  const { include, known, packageRoot } = options;
  // Paths first: a path may hold an id ("/run/user/1000/..."), which the
  // id pass then scrubs even when paths are included.
  text = include.has('paths') ? relativeToPackage(text, packageRoot) : scrubPaths(text, known.paths, packageRoot);
  if (!include.has('ids')) text = scrubIds(text, known.ids);
  if (!include.has('pids')) text = scrubPids(text, known.pids);
  return text;
}

function cut(text: string, length: number): string {
  return text.length <= length ? text : `${text.slice(0, length - 1)}…`;
}

/** What leaves the helper for the forwarder: the report scrubbed, without `known`. */
export type ScrubbedReport = Omit<ReportLine, 'type' | 'time'>;

export function scrubReport(report: FailureReport, options: Omit<ScrubOptions, 'known'>): ScrubbedReport {
  const scrub = { ...options, known: report.known };
  const scrubbed: ScrubbedReport = {
    level: report.level,
    phase: report.phase,
    message: cut(scrubText(report.message, scrub), MAX_MESSAGE_LENGTH),
    exitCode: report.exitCode,
  };
  if (report.gate !== undefined) scrubbed.gate = report.gate;
  if (report.error !== undefined)
    scrubbed.error = { type: cut(scrubText(report.error.type, scrub), 200), stack: cut(scrubText(report.error.stack, scrub), MAX_STACK_LENGTH) };
  return scrubbed;
}
