const SUFFIXES: Record<string, number> = {
  '': 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
};

/** Parses a byte count such as 4096, 64M, 1G or 1GiB (binary units). */
export function parseBytes(text: string): number {
  const match = /^(\d+)(?:([kmgt])(?:i?b)?|b)?$/i.exec(text.trim());
  if (!match) throw new Error(`not a size: ${JSON.stringify(text)} (examples: 1048576, 64M, 1G)`);
  const bytes = Number(match[1]) * SUFFIXES[(match[2] ?? '').toLowerCase()]!;
  if (!Number.isSafeInteger(bytes)) throw new Error(`size too large: ${text}`);
  return bytes;
}

export function parseInteger(text: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw new Error(`${what} must be a whole number, got ${JSON.stringify(text)}`);
  const value = Number(text);
  if (value < min || value > max) throw new Error(`${what} must be between ${min} and ${max}, got ${value}`);
  return value;
}
