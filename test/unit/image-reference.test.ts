import assert from 'node:assert/strict';
import { criImageReference, parseImageReference } from '../support/image-reference';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

describe('image references as the CRI reads them', () => {
  it('normalises as ParseDockerRef does', () => {
    const cases: [string, string][] = [
      ['vduse-csi:0.1.0', 'docker.io/library/vduse-csi:0.1.0'],
      ['vduse-csi', 'docker.io/library/vduse-csi:latest'],
      ['team/vduse-csi:1', 'docker.io/team/vduse-csi:1'],
      ['index.docker.io/vduse-csi:1', 'docker.io/library/vduse-csi:1'],
      ['docker.io/team/vduse-csi:1', 'docker.io/team/vduse-csi:1'],
      ['localhost/vduse-csi:0.1.0', 'localhost/vduse-csi:0.1.0'],
      ['localhost:5000/vduse-csi', 'localhost:5000/vduse-csi:latest'],
      [
        'registry.example.com/storage/team/vduse-csi:v1.2_3',
        'registry.example.com/storage/team/vduse-csi:v1.2_3',
      ],
      ['Registry/vduse-csi:1', 'Registry/vduse-csi:1'],
      [`vduse-csi@${DIGEST}`, `docker.io/library/vduse-csi@${DIGEST}`],
      [`localhost/vduse-csi:1@${DIGEST}`, `localhost/vduse-csi@${DIGEST}`],
    ];
    for (const [reference, normalised] of cases)
      assert.equal(criImageReference(reference), normalised, reference);
  });

  it('splits repository, tag and digest as written (a registry port is not a tag)', () => {
    assert.deepEqual(parseImageReference('registry.example.com:5000/team/vduse-csi:0.1.0'), {
      repository: 'registry.example.com:5000/team/vduse-csi',
      tag: '0.1.0',
      digest: undefined,
    });
    assert.deepEqual(parseImageReference('registry.example.com:5000/vduse-csi'), {
      repository: 'registry.example.com:5000/vduse-csi',
      tag: undefined,
      digest: undefined,
    });
    assert.deepEqual(parseImageReference(`vduse-csi@${DIGEST}`), {
      repository: 'vduse-csi',
      tag: undefined,
      digest: DIGEST,
    });
  });

  it('refuses what is not a reference', () => {
    for (const reference of [
      '',
      'Vduse-csi:1',
      'team/Vduse-csi',
      'a//b',
      '-vduse-csi',
      'vduse-csi:-1',
      'vduse-csi:',
      'host:port/vduse-csi',
      'vduse-csi@sha256:short',
      `registry.example.com/${'a'.repeat(250)}`,
    ])
      assert.throws(() => parseImageReference(reference), /is not an image reference/, reference);
  });
});
