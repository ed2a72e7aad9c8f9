import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Progress } from '../../src/progress.ts';

function capture() {
  const stream = new PassThrough();
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => (text += chunk));
  return { stream, text: () => text };
}

describe('Progress', () => {
  it('off a terminal: a plain line per step and per detail, counted against the total', () => {
    const err = capture();
    const out = capture();
    const progress = new Progress({ total: 2, stream: err.stream, tty: false });
    progress.step('starting redis');
    progress.print('redis   redis://127.0.0.1:1', out.stream);
    progress.step('starting 2 nodes');
    progress.update('1/2 ready');
    progress.update('1/2 ready');
    progress.update('2/2 ready');
    progress.done();
    expect(err.text()).toBe(
      '[1/2] starting redis\n[2/2] starting 2 nodes\n[2/2] starting 2 nodes: 1/2 ready\n[2/2] starting 2 nodes: 2/2 ready\n',
    );
    expect(out.text()).toBe('redis   redis://127.0.0.1:1\n');
  });

  it('on a terminal: one line rewritten in place, cleared around other output and at the end', () => {
    const err = capture();
    const out = capture();
    const progress = new Progress({ stream: err.stream, tty: true });
    progress.step('bench');
    progress.print('a line', out.stream);
    progress.done();
    expect(err.text()).toBe('\r\x1b[2K[1] bench\r\x1b[2K[1] bench\r\x1b[2K');
    expect(out.text()).toBe('a line\n');
  });
});
