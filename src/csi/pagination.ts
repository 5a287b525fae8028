import { aborted, invalidArgument } from './errors';

export interface Page<T> {
  entries: T[];
  next_token: string;
}

/**
 * Pages through entries sorted by id. A token is the id the next page starts at, so a page
 * boundary stays valid when entries are added or removed between calls (even the token's own).
 */
export function paginate<T>(
  entries: T[],
  idOf: (entry: T) => string,
  isValidId: (id: string) => boolean,
  request: { max_entries?: number; starting_token?: string },
): Page<T> {
  const max = request.max_entries ?? 0;
  const startingToken = request.starting_token;
  if (!Number.isInteger(max) || max < 0)
    throw invalidArgument(`max_entries must not be negative, got ${max}`);
  let start = 0;
  if (startingToken) {
    if (!isValidId(startingToken))
      throw aborted(`starting_token ${JSON.stringify(startingToken)} is not valid`);
    start = entries.findIndex((entry) => idOf(entry) >= startingToken);
    if (start < 0) start = entries.length;
  }
  const end = max === 0 ? entries.length : Math.min(entries.length, start + max);
  return { entries: entries.slice(start, end), next_token: end < entries.length ? idOf(entries[end]!) : '' };
}
