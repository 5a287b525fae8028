import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  attr,
  decodeErrorReply,
  decodeFamily,
  decodeGenlMessage,
  encodeAttributes,
  encodeGenlMessage,
  encodeGetFamily,
  NetlinkError,
  NetlinkFormatError,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_DUMP_INTR,
  NLM_F_MULTI,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseAttributes,
  ReplyCollector,
  splitMessages,
} from '../../src/sys/netlink';
import { isErrno } from '../../src/sys/errors';

/** Hex dump helper: "20 00 00 00 ..." -> Buffer. */
function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

/** A netlink message: header + payload (payload padded to 4 bytes; nlmsg_len excludes the padding). */
function nlmsg(type: number, flags: number, seq: number, payload: Buffer, pid = 1234): Buffer {
  const header = Buffer.alloc(16);
  header.writeUInt32LE(16 + payload.length, 0);
  header.writeUInt16LE(type, 4);
  header.writeUInt16LE(flags, 6);
  header.writeUInt32LE(seq, 8);
  header.writeUInt32LE(pid, 12);
  const pad = Buffer.alloc((4 - (payload.length % 4)) % 4);
  return Buffer.concat([header, payload, pad]);
}

function genlPayload(cmd: number, attrs: Buffer): Buffer {
  return Buffer.concat([Buffer.from([cmd, 1, 0, 0]), attrs]);
}

function errorPayload(error: number, echoed: Buffer, tlvs: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(4);
  head.writeInt32LE(error);
  return Buffer.concat([head, echoed, tlvs]);
}

function donePayload(error = 0): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(error);
  return b;
}

describe('netlink encoding', () => {
  it('encodes nlctrl GETFAMILY "vdpa" byte for byte', () => {
    assert.deepEqual(
      encodeGetFamily('vdpa', 1),
      hex(`
        20 00 00 00  10 00  05 00  01 00 00 00  00 00 00 00
        03 01 00 00
        09 00 02 00  76 64 70 61  00 00 00 00`),
    );
  });

  it('encodes integers, flags and nested attributes with 4-byte alignment', () => {
    assert.deepEqual(
      encodeAttributes([
        attr.u8(1, 0xab),
        attr.u16(2, 0x1234),
        attr.u32(3, 0xdeadbeef),
        attr.u64(4, 0x0102030405060708n),
        attr.flag(5),
        attr.nested(6, [attr.u32(1, 5), attr.string(2, 'ab')]),
        attr.bytes(7, Buffer.from([1, 2, 3, 4, 5])),
      ]),
      hex(`
        05 00 01 00  ab 00 00 00
        06 00 02 00  34 12 00 00
        08 00 03 00  ef be ad de
        0c 00 04 00  08 07 06 05 04 03 02 01
        04 00 05 00
        14 00 06 80  08 00 01 00 05 00 00 00  07 00 02 00 61 62 00 00
        09 00 07 00  01 02 03 04 05 00 00 00`),
    );
  });

  it('rejects values that do not fit', () => {
    assert.throws(() => encodeAttributes([attr.u8(1, 256)]), RangeError);
    assert.throws(() => encodeAttributes([attr.u16(1, -1)]), RangeError);
    assert.throws(() => encodeAttributes([attr.u32(1, 1.5)]), RangeError);
    assert.throws(() => encodeAttributes([attr.u32(0x4000, 1)]), RangeError);
    assert.throws(() => encodeAttributes([attr.string(1, 'a\0b')]), RangeError);
    assert.throws(() => encodeAttributes([attr.bytes(1, Buffer.alloc(0x10000))]), RangeError);
    assert.throws(
      () => encodeGenlMessage({ familyId: 0x10000, cmd: 1, version: 1, flags: 5, seq: 1 }),
      RangeError,
    );
  });

  it('round-trips attributes through the parser', () => {
    const encoded = encodeAttributes([
      attr.string(2, 'vduse'),
      attr.u16(1, 0x1c),
      attr.u64(3, 6n),
      attr.nested(9, [attr.u32(1, 7)]),
    ]);
    const attrs = parseAttributes(encoded);
    assert.equal(attrs.string(2), 'vduse');
    assert.equal(attrs.u16(1), 0x1c);
    assert.equal(attrs.u64(3), 6n);
    assert.equal(attrs.list[3].nested, true);
    assert.equal(attrs.nested(9)?.u32(1), 7);
    assert.equal(attrs.u32(42), undefined);
    assert.equal(attrs.has(42), false);
  });
});

describe('netlink decoding', () => {
  it('parses the nlctrl family reply', () => {
    const attrs = encodeAttributes([
      attr.string(2, 'vdpa'),
      attr.u16(1, 0x1c),
      attr.u32(3, 1),
      attr.u32(4, 0),
      attr.u32(5, 21),
    ]);
    const [message] = splitMessages(nlmsg(0x10, 0, 7, genlPayload(1, attrs)));
    assert.deepEqual(decodeFamily(decodeGenlMessage(message)), {
      id: 0x1c,
      name: 'vdpa',
      version: 1,
      maxAttr: 21,
    });
  });

  it('treats NLMSG_ERROR with error 0 as an ack', () => {
    const request = encodeGetFamily('vdpa', 5);
    const reply = nlmsg(NLMSG_ERROR, NLM_F_CAPPED, 5, errorPayload(0, request.subarray(0, 16)));
    assert.deepEqual(decodeErrorReply(splitMessages(reply)[0]), { errno: 0, extAck: {} });
    const collector = new ReplyCollector(5, 'ack', 'test');
    assert.equal(collector.feed(reply), true);
    assert.deepEqual(collector.messages, []);
  });

  it('returns the data messages that precede the ack', () => {
    const data = nlmsg(0x1c, 0, 9, genlPayload(5, encodeAttributes([attr.string(4, 'vduse0')])));
    const ack = nlmsg(NLMSG_ERROR, NLM_F_CAPPED, 9, errorPayload(0, Buffer.alloc(16)));
    const collector = new ReplyCollector(9, 'ack', 'test');
    assert.equal(collector.feed(data), false);
    assert.equal(collector.feed(ack), true);
    assert.equal(collector.messages.length, 1);
    assert.equal(collector.messages[0].cmd, 5);
    assert.equal(collector.messages[0].attrs.string(4), 'vduse0');
  });

  it('throws an errno error carrying the extended-ack message (capped echo)', () => {
    const tlvs = encodeAttributes([attr.string(1, 'vdpa: device not found'), attr.u32(2, 20)]);
    const reply = nlmsg(
      NLMSG_ERROR,
      NLM_F_CAPPED | NLM_F_ACK_TLVS,
      3,
      errorPayload(-19, Buffer.alloc(16), tlvs),
    );
    const collector = new ReplyCollector(3, 'ack', 'vdpa DEV_DEL x');
    assert.throws(
      () => collector.feed(reply),
      (error: unknown) => {
        assert.ok(error instanceof NetlinkError);
        assert.equal(error.code, 'ENODEV');
        assert.equal(error.errno, 19);
        assert.deepEqual(error.extAck, { message: 'vdpa: device not found', offset: 20 });
        assert.equal(error.message, 'vdpa DEV_DEL x: vdpa: device not found (ENODEV)');
        assert.ok(isErrno(error, 'ENODEV'));
        return true;
      },
    );
  });

  it('finds the extended ack after a full (uncapped) echo of the request', () => {
    const request = encodeGetFamily('nosuchfamily', 4); // 36 bytes, echoed whole
    const tlvs = encodeAttributes([attr.string(1, 'Unknown family')]);
    const reply = nlmsg(NLMSG_ERROR, NLM_F_ACK_TLVS, 4, errorPayload(-2, request, tlvs));
    assert.deepEqual(decodeErrorReply(splitMessages(reply)[0]), {
      errno: 2,
      extAck: { message: 'Unknown family' },
    });
  });

  it('reports an error without extended ack as the bare errno', () => {
    const reply = nlmsg(NLMSG_ERROR, 0, 4, errorPayload(-1, encodeGetFamily('x', 4)));
    assert.throws(
      () => new ReplyCollector(4, 'ack', 'vdpa DEV_NEW y').feed(reply),
      (e: unknown) =>
        e instanceof NetlinkError && e.code === 'EPERM' && e.message === 'vdpa DEV_NEW y: EPERM',
    );
  });

  it('collects a multi-message dump from one datagram until NLMSG_DONE', () => {
    const one = nlmsg(0x1c, NLM_F_MULTI, 11, genlPayload(3, encodeAttributes([attr.string(4, 'a')])));
    const two = nlmsg(0x1c, NLM_F_MULTI, 11, genlPayload(3, encodeAttributes([attr.string(4, 'bb')])));
    const done = nlmsg(NLMSG_DONE, NLM_F_MULTI, 11, donePayload());
    const collector = new ReplyCollector(11, 'dump', 'dump');
    assert.equal(collector.feed(Buffer.concat([one, two, done])), true);
    assert.deepEqual(
      collector.messages.map((m) => m.attrs.string(4)),
      ['a', 'bb'],
    );
    assert.equal(collector.dumpInterrupted, false);
  });

  it('collects a dump spread over several datagrams, ignoring other sequence numbers', () => {
    const mk = (seq: number, name: string) =>
      nlmsg(0x1c, NLM_F_MULTI, seq, genlPayload(3, encodeAttributes([attr.string(4, name)])));
    const collector = new ReplyCollector(12, 'dump', 'dump');
    assert.equal(collector.feed(Buffer.concat([mk(11, 'stale'), mk(12, 'a')])), false);
    assert.equal(collector.feed(mk(12, 'b')), false);
    assert.equal(collector.feed(nlmsg(NLMSG_DONE, NLM_F_MULTI | NLM_F_DUMP_INTR, 12, donePayload())), true);
    assert.deepEqual(
      collector.messages.map((m) => m.attrs.string(4)),
      ['a', 'b'],
    );
    assert.equal(collector.dumpInterrupted, true);
  });

  it('throws when a dump ends with a negative NLMSG_DONE or an NLMSG_ERROR', () => {
    const done = nlmsg(NLMSG_DONE, NLM_F_MULTI, 2, donePayload(-12));
    assert.throws(() => new ReplyCollector(2, 'dump', 'd').feed(done), /d: ENOMEM/);
    const err = nlmsg(NLMSG_ERROR, NLM_F_CAPPED, 2, errorPayload(-95, Buffer.alloc(16)));
    assert.throws(() => new ReplyCollector(2, 'dump', 'd').feed(err), /d: EOPNOTSUPP/);
  });
});

describe('netlink decoding of malformed replies', () => {
  const good = Buffer.concat([
    nlmsg(0x1c, 0, 1, genlPayload(5, encodeAttributes([attr.string(4, 'vduse0'), attr.u32(5, 2)]))),
    nlmsg(NLMSG_ERROR, NLM_F_CAPPED, 1, errorPayload(0, Buffer.alloc(16))),
  ]);

  function rejects(buffer: Buffer, pattern: RegExp): void {
    assert.throws(() => {
      const collector = new ReplyCollector(1, 'ack', 'test');
      collector.feed(buffer);
      for (const m of collector.messages) for (const a of m.attrs.list) void a;
    }, pattern);
  }

  it('rejects a datagram shorter than a header', () => {
    rejects(good.subarray(0, 10), /malformed netlink message: 10 bytes cannot hold a message header/);
  });

  it('rejects nlmsg_len beyond the datagram and below the header size', () => {
    rejects(good.subarray(0, 30), /claims \d+ bytes, 30 available/);
    const small = Buffer.from(good);
    small.writeUInt32LE(8, 0);
    rejects(small, /claims 8 bytes/);
  });

  it('rejects an attribute running past its message', () => {
    const bad = Buffer.from(good);
    bad.writeUInt16LE(200, 20); // first attribute's nla_len
    rejects(bad, /attribute 4 at offset 0 has length 200/);
    bad.writeUInt16LE(2, 20);
    rejects(bad, /has length 2/);
  });

  it('rejects a generic netlink message without genlmsghdr', () => {
    rejects(nlmsg(0x1c, 0, 1, Buffer.from([5, 1])), /has no genlmsghdr/);
  });

  it('rejects short NLMSG_ERROR payloads and bogus echo lengths', () => {
    rejects(nlmsg(NLMSG_ERROR, 0, 1, Buffer.from([0, 0, 0, 0])), /NLMSG_ERROR of 4 bytes/);
    const echoed = Buffer.alloc(16);
    echoed.writeUInt32LE(4000, 0);
    rejects(nlmsg(NLMSG_ERROR, NLM_F_ACK_TLVS, 1, errorPayload(-1, echoed)), /echoes 4000 bytes/);
    rejects(nlmsg(NLMSG_ERROR, 0, 1, errorPayload(5, Buffer.alloc(16))), /positive error/);
  });

  it('rejects an integer attribute that is too short', () => {
    const message = nlmsg(0x1c, 0, 1, genlPayload(5, hex('06 00 05 00 01 02 00 00')));
    const genl = decodeGenlMessage(splitMessages(message)[0]);
    assert.throws(() => genl.attrs.u32(5), /attribute 5 has 2 bytes, expected 4/);
    assert.equal(genl.attrs.u16(5), 0x0201);
  });

  it('never reads out of bounds: any truncation or corruption gives a format error or a clean result', function () {
    // 2000 runs: 0.06 s idle here, up to 0.5 s loaded; ten times that and more for a slow CI runner.
    this.timeout(5_000);
    fc.assert(
      fc.property(
        fc.nat(good.length),
        fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        (cut, flips) => {
          const buffer = Buffer.from(good.subarray(0, cut));
          for (const [at, value] of flips) if (at < buffer.length) buffer[at] = value;
          try {
            const collector = new ReplyCollector(1, 'ack', 'fuzz');
            collector.feed(buffer);
            for (const m of collector.messages) {
              m.attrs.string(4);
              m.attrs.u32(5);
            }
          } catch (error) {
            if (error instanceof NetlinkFormatError || error instanceof NetlinkError) return;
            throw error;
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
