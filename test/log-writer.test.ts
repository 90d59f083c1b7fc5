// SPDX-License-Identifier: GPL-2.0-or-later
// The audit log's writer (src/log/writer.ts) on a real pipe: a line is
// encoded by the native call, and a reader with room for only part of it
// gets the rest, byte for byte, before any other line, even when the cut
// falls inside a character.
import t from 'tap';
import * as fs from 'node:fs';
import { native } from '../src/addon';
import { NonBlockingWriter } from '../src/log/writer';

/** Everything the pipe holds now. */
function drain(fd: number): Buffer {
  const chunks: Buffer[] = [];
  const chunk = Buffer.alloc(65536);
  for (;;) {
    let read: number;
    try {
      read = fs.readSync(fd, chunk);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw error;
    }
    if (read === 0) break;
    chunks.push(Buffer.from(chunk.subarray(0, read)));
  }
  return Buffer.concat(chunks);
}

t.test('a line cut by a full pipe: its rest, cut inside a two-byte character, goes out first and whole', async (t) => {
  const pipe = native.makePipe();
  t.teardown(() => {
    fs.closeSync(pipe.read);
    fs.closeSync(pipe.write);
  });
  native.setNonBlocking(pipe.read);
  native.setNonBlocking(pipe.write);
  // Full, then a little under one page freed: more than PIPE_BUF bytes are
  // written in part (pipe(7)), so the line below cannot go in whole.
  const filler = Buffer.alloc(4096, 'x');
  for (;;) {
    try {
      fs.writeSync(pipe.write, filler);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw error;
    }
  }
  const held = drain(pipe.read).length;
  // One ASCII byte, then two-byte characters: every even byte offset past the first falls inside one.
  const first = `x${'é'.repeat(5000)}\n`;
  const second = 'after\n';
  const writer = new NonBlockingWriter(pipe.write);
  // Refilled to leave 4096 + 1000 bytes of room, an odd split of the line's 10,002 bytes.
  fs.writeSync(pipe.write, Buffer.alloc(held - 5096, 'y'));
  t.ok(writer.write(first), 'the line is taken, in part');
  const part = drain(pipe.read).subarray(held - 5096);
  const bytes = Buffer.from(first);
  t.ok(part.length > 0 && part.length < bytes.length, `${part.length} of its ${bytes.length} bytes went out`);
  t.ok(writer.write(second), 'the next line is taken once there is room');
  const rest = drain(pipe.read);
  t.same(Buffer.concat([part, rest]), Buffer.concat([bytes, Buffer.from(second)]), 'the rest of the first line, then the second: every byte, in order');
  t.equal(writer.dropped, 0, 'nothing dropped');
});
