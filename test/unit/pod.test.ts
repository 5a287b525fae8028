import assert from 'node:assert/strict';
import { POD_NAME, POD_NAMESPACE, POD_UID, podOfContext } from '../../src/csi/pod';

const UID = '0b5f3c2e-7d41-4a9e-9f2b-3c6d8e1a2b4c';

describe('the pod a volume is published to', () => {
  it("is read from kubelet's pod info in volume_context", () => {
    assert.deepEqual(
      podOfContext({ [POD_NAME]: 'web-0', [POD_NAMESPACE]: 'shop', [POD_UID]: UID, other: 'x' }),
      { name: 'web-0', namespace: 'shop', uid: UID },
    );
  });

  it('is no pod unless name, namespace and uid are all given and what Kubernetes allows', () => {
    const good = { [POD_NAME]: 'web-0', [POD_NAMESPACE]: 'shop', [POD_UID]: UID };
    for (const [key, value] of [
      [POD_NAME, '../etc'],
      [POD_NAME, 'Web'],
      [POD_NAMESPACE, 'a.b'],
      [POD_NAMESPACE, ''],
      [POD_UID, 'not-a-uid'],
      [POD_UID, UID.toUpperCase()],
      [POD_UID, undefined],
    ] as const) {
      const context: Record<string, string> = { ...good };
      if (value === undefined) delete context[key];
      else context[key] = value;
      assert.equal(podOfContext(context), null, `${key}=${value}`);
    }
    assert.equal(podOfContext(undefined), null);
  });
});
