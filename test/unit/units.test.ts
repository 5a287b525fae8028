import assert from 'node:assert/strict';
import { parseBytes, parseInteger } from '../../src/cli/units';

describe('parseBytes', () => {
  const accepted: Array<[string, number]> = [
    ['0', 0],
    ['4096', 4096],
    ['512b', 512],
    ['64M', 64 * 1024 * 1024],
    ['64m', 64 * 1024 * 1024],
    ['64MB', 64 * 1024 * 1024],
    ['64MiB', 64 * 1024 * 1024],
    ['1k', 1024],
    ['1KiB', 1024],
    ['1G', 1024 ** 3],
    ['1gib', 1024 ** 3],
    ['10G', 10 * 1024 ** 3],
    ['2T', 2 * 1024 ** 4],
    [' 8M ', 8 * 1024 * 1024],
    ['8191T', 8191 * 1024 ** 4],
  ];
  for (const [text, bytes] of accepted) {
    it(`parses ${JSON.stringify(text)} as ${bytes}`, () => {
      assert.equal(parseBytes(text), bytes);
    });
  }

  const rejected = ['', ' ', 'M', '-1', '1.5G', '0x10', '1e6', '64 M', '1P', '1GG', '1Gi', 'ten', '12abc'];
  for (const text of rejected) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseBytes(text), /not a size/);
    });
  }

  it('rejects a bare "iB" suffix without a unit letter ("10iB")', () => {
    // "10iB" is neither bytes ("10B") nor a binary unit ("10KiB"); it must not quietly mean 10.
    assert.throws(() => parseBytes('10iB'), /not a size/);
  });

  it('rejects sizes beyond 2^53', () => {
    assert.throws(() => parseBytes('8192T'), /too large/);
    assert.throws(() => parseBytes('99999999999999999999'), /too large/);
  });
});

describe('parseInteger', () => {
  it('parses whole numbers within the bounds, bounds included', () => {
    assert.equal(parseInteger('1', 'queues', 1, 64), 1);
    assert.equal(parseInteger('64', 'queues', 1, 64), 64);
    assert.equal(parseInteger('007', 'queues', 1, 64), 7);
  });

  it('rejects numbers outside the bounds, naming the option', () => {
    assert.throws(() => parseInteger('0', 'queues', 1, 64), /queues must be between 1 and 64, got 0/);
    assert.throws(() => parseInteger('65', 'queues', 1, 64), /queues must be between 1 and 64, got 65/);
    assert.throws(() => parseInteger('99999999999999999999', 'n', 0, 2 ** 32), /between/);
  });

  it('rejects anything but digits', () => {
    for (const text of ['', '-1', '1.0', '1e3', '0x10', ' 1', '1 ', '+1', 'one']) {
      assert.throws(
        () => parseInteger(text, 'size', 0, 100),
        /size must be a whole number/,
        JSON.stringify(text),
      );
    }
  });
});
