import assert from 'node:assert/strict';
import { pruneCustomResource } from '../support/structural-pruning';

/*
 * What the API server drops from a custom resource before validating it (structural-pruning.ts).
 * The schema leaves out apiVersion, kind and metadata: at the root they are kept all the same.
 */
const SCHEMA = {
  type: 'object',
  properties: {
    spec: {
      type: 'object',
      properties: {
        size: { type: 'integer' },
        note: { type: 'string', nullable: true },
        labels: {
          type: 'object',
          additionalProperties: { type: 'object', properties: { value: { type: 'string' } } },
        },
        disks: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' } } } },
        free: {
          type: 'object',
          'x-kubernetes-preserve-unknown-fields': true,
          properties: { known: { type: 'object', properties: { a: { type: 'string' } } } },
        },
        template: {
          type: 'object',
          'x-kubernetes-embedded-resource': true,
          properties: { spec: { type: 'object', properties: { image: { type: 'string' } } } },
        },
      },
    },
  },
};

function pruned(object: Record<string, unknown>): { object: Record<string, unknown>; unknown: string[] } {
  const copy = structuredClone(object);
  return { object: copy, unknown: pruneCustomResource(copy, SCHEMA) };
}

describe('structural pruning of custom resources', () => {
  it('drops fields the schema does not specify, at any depth, and names them', () => {
    const { object, unknown } = pruned({
      apiVersion: 'x/v1',
      kind: 'X',
      metadata: { name: 'a', anything: 'kept' },
      spec: { size: 1, sizee: 2, disks: [{ name: 'd', bytes: 3 }, { name: 'e' }] },
      extra: true,
    });
    assert.deepEqual(object, {
      apiVersion: 'x/v1',
      kind: 'X',
      metadata: { name: 'a', anything: 'kept' },
      spec: { size: 1, disks: [{ name: 'd' }, { name: 'e' }] },
    });
    assert.deepEqual(unknown.sort(), ['extra', 'spec.disks[0].bytes', 'spec.sizee']);
  });

  it('keeps the entries of a map and prunes inside them by its additionalProperties schema', () => {
    const { object, unknown } = pruned({ spec: { labels: { one: { value: 'v', other: 1 }, two: {} } } });
    assert.deepEqual(object, { spec: { labels: { one: { value: 'v' }, two: {} } } });
    assert.deepEqual(unknown, ['spec.labels[one].other']);
  });

  it('keeps unknown fields under x-kubernetes-preserve-unknown-fields, still pruning its known ones', () => {
    const { object, unknown } = pruned({
      spec: { free: { anything: { deep: [1] }, known: { a: 'x', b: 'y' } } },
    });
    assert.deepEqual(object, { spec: { free: { anything: { deep: [1] }, known: { a: 'x' } } } });
    assert.deepEqual(unknown, ['spec.free.known.b']);
  });

  it('keeps apiVersion, kind and metadata of an embedded resource', () => {
    const template = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p' },
      spec: { image: 'i', command: [] },
    };
    const { object, unknown } = pruned({ spec: { template } });
    assert.deepEqual(object, { spec: { template: { ...template, spec: { image: 'i' } } } });
    assert.deepEqual(unknown, ['spec.template.spec.command']);
  });

  it('drops nulls of properties that are not nullable, silently, and keeps nullable ones', () => {
    const { object, unknown } = pruned({ spec: { size: null, note: null, disks: [{ name: null }] } });
    assert.deepEqual(object, { spec: { note: null, disks: [{}] } });
    assert.deepEqual(unknown, []);
  });

  it('leaves an object that only has known fields as it is', () => {
    const whole = {
      apiVersion: 'x/v1',
      kind: 'X',
      metadata: { name: 'a' },
      spec: { size: 1, note: 'n', labels: { a: { value: 'b' } }, disks: [{ name: 'd' }] },
    };
    const { object, unknown } = pruned(whole);
    assert.deepEqual(object, whole);
    assert.deepEqual(unknown, []);
  });
});
