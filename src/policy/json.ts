// SPDX-License-Identifier: GPL-2.0-or-later
// A strict JSON parser (RFC 8259) that remembers where each value starts, so
// that a schema error can be reported at the line and column an
// administrator must edit. JSON.parse cannot: it keeps no positions, and it
// silently lets a duplicate key override the first.

export interface Position {
  line: number;
  column: number;
}

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly position: Position,
  ) {
    super(message);
  }
}

export interface ParsedJson {
  value: unknown;
  /** Where each JSON pointer ("" is the whole document) is: an object member at its key, anything else where it starts. */
  positions: Map<string, Position>;
}

/** Escapes one reference token of a JSON pointer (RFC 6901). */
export function pointerToken(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The keys a JSON pointer names, in order, unescaped. */
export function pointerKeys(pointer: string): string[] {
  return pointer
    .split('/')
    .slice(1)
    .map((token) => token.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/**
 * How deep arrays and objects may nest. A policy needs 4 levels; the limit
 * keeps the recursive parser (and the schema validator after it) far from
 * the runtime's stack limit, which a deeply nested file would otherwise hit.
 */
export const MAX_NESTING_DEPTH = 64;

export function parseJson(text: string): ParsedJson {
  const positions = new Map<string, Position>();
  let index = 0;
  let line = 1;
  let lineStart = 0;

  const here = (): Position => ({ line, column: index - lineStart + 1 });
  const fail = (message: string): never => {
    throw new JsonSyntaxError(message, here());
  };
  const describeNext = (): string => (index >= text.length ? 'the end of the file' : JSON.stringify(text[index]));
  /** The usual reason, when there is one, why what comes next is not JSON. */
  const adviceForNext = (): string => {
    if (text[index] === "'") return '; JSON strings and keys take double quotes, not single';
    if (text.startsWith('//', index) || text.startsWith('/*', index)) return '; JSON allows no comments: remove it';
    return '';
  };

  function skipWhitespace(): void {
    while (index < text.length) {
      const c = text[index];
      if (c === '\n') {
        line++;
        lineStart = index + 1;
      } else if (c !== ' ' && c !== '\t' && c !== '\r') return;
      index++;
    }
  }

  function expect(c: string): void {
    if (text[index] !== c) fail(`expected "${c}", found ${describeNext()}${adviceForNext()}`);
    index++;
  }

  /** Steps over a "," between members or elements; one before the closing bracket is the commonest JSON mistake, so it is named. */
  function skipComma(closing: '}' | ']'): void {
    const comma = here();
    index++;
    skipWhitespace();
    if (text[index] === closing)
      throw new JsonSyntaxError(`a trailing comma before "${closing}": JSON allows no comma after the last ${closing === '}' ? 'member' : 'element'}; remove it`, comma);
  }

  function parseString(): string {
    const start = here();
    expect('"');
    let result = '';
    for (;;) {
      if (index >= text.length) throw new JsonSyntaxError('this string is never closed; add its closing double quote', start);
      const c = text[index]!;
      if (c === '"') {
        index++;
        return result;
      }
      if (c < ' ') fail('a control character (a line break or a tab, say) inside a string; escape it ("\\n", "\\t") or close the string before it');
      if (c !== '\\') {
        result += c;
        index++;
        continue;
      }
      const escaped = text[index + 1];
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (escaped !== undefined && escaped in simple) {
        result += simple[escaped];
        index += 2;
      } else if (escaped === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(index + 2, index + 6))) {
        result += String.fromCharCode(parseInt(text.slice(index + 2, index + 6), 16));
        index += 6;
      } else fail(`invalid escape "\\${escaped ?? ''}" in a string; JSON knows \\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX (write "\\\\" for a backslash)`);
    }
  }

  function parseNumber(): number {
    const match = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(text.slice(index));
    if (match === null) fail(`expected a value, found ${describeNext()}${adviceForNext()}`);
    index += match![0].length;
    return Number(match![0]);
  }

  function parseValue(pointer: string, depth: number): unknown {
    skipWhitespace();
    if (!positions.has(pointer)) positions.set(pointer, here());
    const c = text[index];
    if ((c === '{' || c === '[') && depth >= MAX_NESTING_DEPTH) fail(`nested deeper than ${MAX_NESTING_DEPTH} levels`);
    if (c === '{') {
      index++;
      const object: Record<string, unknown> = {};
      skipWhitespace();
      if (text[index] === '}') {
        index++;
        return object;
      }
      for (;;) {
        skipWhitespace();
        const keyPosition = here();
        if (text[index] !== '"') {
          const bare = /^[A-Za-z_$][\w$]*/.exec(text.slice(index))?.[0];
          fail(`expected a key in double quotes, found ${describeNext()}${bare !== undefined ? `; write "${bare}"` : adviceForNext()}`);
        }
        const key = parseString();
        if (Object.prototype.hasOwnProperty.call(object, key))
          throw new JsonSyntaxError(`duplicate key "${key}" (first at line ${positions.get(`${pointer}/${pointerToken(key)}`)!.line}); keep one of them`, keyPosition);
        positions.set(`${pointer}/${pointerToken(key)}`, keyPosition);
        skipWhitespace();
        expect(':');
        // defineProperty: a key named "__proto__" is data, never a prototype.
        Object.defineProperty(object, key, { value: parseValue(`${pointer}/${pointerToken(key)}`, depth + 1), enumerable: true, writable: true, configurable: true });
        skipWhitespace();
        if (text[index] === ',') {
          skipComma('}');
          continue;
        }
        expect('}');
        return object;
      }
    }
    if (c === '[') {
      index++;
      const array: unknown[] = [];
      skipWhitespace();
      if (text[index] === ']') {
        index++;
        return array;
      }
      for (;;) {
        array.push(parseValue(`${pointer}/${array.length}`, depth + 1));
        skipWhitespace();
        if (text[index] === ',') {
          skipComma(']');
          continue;
        }
        expect(']');
        return array;
      }
    }
    if (c === '"') return parseString();
    for (const [word, value] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, index)) {
        index += word.length;
        return value;
      }
    }
    return parseNumber();
  }

  const value = parseValue('', 0);
  skipWhitespace();
  if (index < text.length) fail(`expected the end of the file, found ${describeNext()}`);
  return { value, positions };
}
