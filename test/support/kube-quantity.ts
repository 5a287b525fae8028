// Kubernetes resource quantities (resource.Quantity) as numbers: "64Mi", "1G", "100m", "2".

const SUFFIXES: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

export function parseQuantity(value: unknown, where: string): number {
  if (typeof value === 'number') return value;
  const match = typeof value === 'string' ? /^([0-9]+(?:\.[0-9]+)?)(e[0-9]+|[a-zA-Z]*)$/.exec(value) : null;
  const suffix = match?.[2] ?? '';
  const scale = suffix.startsWith('e') ? 10 ** Number(suffix.slice(1)) : SUFFIXES[suffix];
  if (!match || scale === undefined) throw new Error(`${where}: not a quantity: ${JSON.stringify(value)}`);
  return Number(match[1]) * scale;
}
