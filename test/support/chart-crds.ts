// The chart's CustomResourceDefinitions (charts/vduse-csi/crds, which Helm installs as they are)
// as the API server serves them once installed: per served version, whether status is a
// subresource, and what a write goes through (structural-pruning.ts, then crd-schema-validation.ts
// and crd-validation-rules.ts). Defaulting is not modelled: a schema with a default fails the load.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CHART_DIR } from './chart';
import { schemaValidator } from './crd-schema-validation';
import { ruleValidator } from './crd-validation-rules';
import { FieldError } from './field-errors';
import { pruneCustomResource } from './structural-pruning';
import { Json, Schema, entriesOf, itemsOf, propertiesOf } from './structural-schema';

/** One served version's schema: what the API server drops from a write, and what it refuses. */
export class CustomResourceSchema {
  private readonly schemaErrors: (object: Json) => FieldError[];
  private readonly ruleErrors: (object: Json, old: Json | null) => FieldError[];

  constructor(readonly openAPIV3Schema: Schema) {
    refuseDefaults(openAPIV3Schema, 'openAPIV3Schema');
    this.schemaErrors = schemaValidator(openAPIV3Schema);
    this.ruleErrors = ruleValidator(openAPIV3Schema);
  }

  /** Removes, in place, the fields the API server drops; returns the unknown ones (it warns of those). */
  prune(object: Json): string[] {
    return pruneCustomResource(object, this.openAPIV3Schema);
  }

  /** Why the API server refuses to store `object` in place of `old` (null for a create); empty when it does not. */
  validate(object: Json, old: Json | null): FieldError[] {
    return [...this.schemaErrors(object), ...this.ruleErrors(object, old)];
  }
}

export interface ServedVersion {
  statusSubresource: boolean;
  schema: CustomResourceSchema;
}

export interface CustomResourceType {
  group: string;
  kind: string;
  plural: string;
  namespaced: boolean;
  /** The served versions by name. */
  versions: Map<string, ServedVersion>;
}

function refuseDefaults(schema: Schema, where: string): void {
  if ('default' in schema) throw new Error(`${where}: default is not modelled (no defaulting here)`);
  for (const [name, property] of Object.entries(propertiesOf(schema)))
    refuseDefaults(property, `${where}.properties.${name}`);
  for (const nested of [entriesOf(schema), itemsOf(schema)])
    if (nested) refuseDefaults(nested, `${where}[*]`);
}

interface CrdVersion {
  name: string;
  served: boolean;
  subresources?: { status?: object };
  schema: { openAPIV3Schema: Schema };
}

let loaded: CustomResourceType[] | undefined;

/** The custom resources of the chart's CRDs (read once). */
export function chartCustomResources(): CustomResourceType[] {
  const directory = join(CHART_DIR, 'crds');
  loaded ??= readdirSync(directory)
    .filter((file) => file.endsWith('.yaml'))
    .map((file) => {
      const { spec } = parse(readFileSync(join(directory, file), 'utf8')) as { spec: Json };
      const names = spec.names as { kind: string; plural: string };
      const versions = (spec.versions as CrdVersion[]).filter((version) => version.served);
      return {
        group: String(spec.group),
        kind: names.kind,
        plural: names.plural,
        namespaced: spec.scope === 'Namespaced',
        versions: new Map(
          versions.map((version) => [
            version.name,
            {
              statusSubresource: version.subresources?.status !== undefined,
              schema: new CustomResourceSchema(version.schema.openAPIV3Schema),
            },
          ]),
        ),
      };
    });
  return loaded;
}
