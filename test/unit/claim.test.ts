import assert from 'node:assert/strict';
import {
  PV_NAME,
  PVC_NAME,
  PVC_NAMESPACE,
  claimContext,
  claimOfContext,
  claimOfParameters,
} from '../../src/csi/claim';

describe('the claim a volume is provisioned for', () => {
  it('is read from the provisioner parameters and travels through volume_context', () => {
    const claim = claimOfParameters({ [PVC_NAME]: 'data-web-0.v2', [PVC_NAMESPACE]: 'apps', queues: '2' });
    assert.deepEqual(claim, { name: 'data-web-0.v2', namespace: 'apps' });
    assert.deepEqual(claimOfContext({ queues: '2', ...claimContext(claim) }), claim);
    assert.deepEqual(claimContext(null), {});
  });

  it('carries the PersistentVolume name with it when the provisioner gives a well-formed one', () => {
    const parameters = { [PVC_NAME]: 'data', [PVC_NAMESPACE]: 'apps' };
    const claim = claimOfParameters({ ...parameters, [PV_NAME]: 'pvc-5c1e0f9a' });
    assert.deepEqual(claim, { name: 'data', namespace: 'apps', volumeName: 'pvc-5c1e0f9a' });
    assert.deepEqual(claimOfContext(claimContext(claim)), claim);
    for (const volumeName of ['../pv', 'PV', 'x'.repeat(254), ''])
      assert.deepEqual(claimOfParameters({ ...parameters, [PV_NAME]: volumeName }), {
        name: 'data',
        namespace: 'apps',
      });
  });

  it('is no claim unless both names are what Kubernetes allows (they end up in API paths)', () => {
    for (const [name, namespace] of [
      ['data', undefined],
      [undefined, 'apps'],
      ['../secrets', 'apps'],
      ['data', 'a/b'],
      ['Data', 'apps'],
      ['data', 'x'.repeat(64)],
      ['x'.repeat(254), 'apps'],
      ['data', ''],
    ])
      assert.equal(
        claimOfParameters({
          ...(name === undefined ? {} : { [PVC_NAME]: name }),
          ...(namespace === undefined ? {} : { [PVC_NAMESPACE]: namespace }),
        }),
        null,
        `${name} in ${namespace}`,
      );
  });
});
