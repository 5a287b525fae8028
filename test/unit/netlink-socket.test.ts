import assert from 'node:assert/strict';
import {
  CTRL_CMD_GETFAMILY,
  CTRL_ATTR_FAMILY_NAME,
  GENL_ID_CTRL,
  GenlSocket,
  NetlinkError,
  attr,
} from '../../src/sys/netlink';

/*
 * Talks to the running kernel's nlctrl family, which every Linux kernel has (no module, no privilege):
 * exercises the socket, ack, error and dump paths for real.
 */
describe('generic netlink socket (nlctrl of the running kernel)', function () {
  // Real kernel sockets: up to 0.15 s for a case here under load.
  this.timeout(5_000);
  let socket: GenlSocket;

  before(() => {
    socket = GenlSocket.open({ timeoutMs: 5000 });
  });

  after(async () => {
    await socket.close();
  });

  it('resolves nlctrl to GENL_ID_CTRL', async () => {
    const family = await socket.resolveFamily('nlctrl');
    assert.equal(family?.id, GENL_ID_CTRL);
    assert.equal(family?.name, 'nlctrl');
  });

  it('returns null for an unknown family', async () => {
    assert.equal(await socket.resolveFamily('nosuchfam'), null);
  });

  it('includes the extended-ack message of a policy failure', async () => {
    // GENL_NAMSIZ is 16: nlctrl rejects a longer family name through its attribute policy.
    await assert.rejects(
      socket.request(
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        1,
        [attr.string(CTRL_ATTR_FAMILY_NAME, 'x'.repeat(40))],
        'nlctrl GETFAMILY long',
      ),
      (e: unknown) =>
        e instanceof NetlinkError &&
        e.code === 'EINVAL' &&
        e.extAck.message !== undefined &&
        e.message === `nlctrl GETFAMILY long: ${e.extAck.message} (EINVAL)`,
    );
  });

  it('turns a kernel refusal into an errno error naming the operation', async () => {
    await assert.rejects(
      socket.request(
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        1,
        [attr.u32(CTRL_ATTR_FAMILY_NAME + 40, 1)],
        'nlctrl GET',
      ),
      (e: unknown) => e instanceof NetlinkError && /^nlctrl GET: /.test(e.message) && e.code.startsWith('E'),
    );
  });

  it('dumps every family until NLMSG_DONE', async () => {
    const families = await socket.dump(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, [], 'nlctrl dump');
    const names = families.map((m) => m.attrs.string(CTRL_ATTR_FAMILY_NAME));
    assert.ok(names.includes('nlctrl'), names.join(' '));
  });

  it('serialises concurrent requests', async () => {
    const results = await Promise.all([
      socket.resolveFamily('nlctrl'),
      socket.dump(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, [], 'dump'),
      socket.request(
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        1,
        [attr.string(CTRL_ATTR_FAMILY_NAME, 'nlctrl')],
        'get',
      ),
    ]);
    assert.equal(results[2].length, 1);
  });

  it('refuses requests after close', async () => {
    const other = GenlSocket.open();
    await other.close();
    assert.equal(other.closed, true);
    await assert.rejects(other.resolveFamily('nlctrl'), /socket is closed \(EBADF\)/);
  });
});
