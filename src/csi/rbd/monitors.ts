import { sha256Hex } from './volume-id';

/*
 * Monitor addresses as mon_host takes them: `host:port`, `v1:host:port`, `v2:host:port`, or an
 * address vector `[v2:host:port,v1:host:port]`; a host is an IPv4 address, `[IPv6]` or a DNS name.
 * They are written into a ceph.conf, so nothing else (no spaces, newlines, '=' or '#') gets through.
 */
const IPV4 = String.raw`(?:\d{1,3}\.){3}\d{1,3}`;
const IPV6 = String.raw`\[[0-9A-Fa-f:.]+\]`;
const DNS = String.raw`(?=[A-Za-z0-9.-]{1,253}(?::|$))[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*`;
const ADDRESS = new RegExp(String.raw`^(?:v[12]:)?(?:${IPV4}|${IPV6}|${DNS}):(\d{1,5})$`);
const MAX_MONITORS = 16;

function checkAddress(address: string): void {
  const match = ADDRESS.exec(address);
  const port = match ? Number(match[1]) : 0;
  if (port < 1 || port > 65535)
    throw new Error(
      `monitor address ${JSON.stringify(address)} is not host:port, v1:host:port, v2:host:port or [v2:...,v1:...]`,
    );
}

/** One monitor: an address, or an address vector in brackets. */
function checkMonitor(monitor: string): string {
  const vector = /^\[(v[12]:.+)\]$/.exec(monitor);
  if (vector) {
    splitTopLevel(vector[1]!).forEach(checkAddress);
    return monitor;
  }
  checkAddress(monitor);
  return monitor;
}

/** Splits a comma list at the commas outside brackets. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const char of text) {
    if (char === '[') depth++;
    if (char === ']') depth--;
    if (depth < 0 || depth > 2) throw new Error(`monitors ${JSON.stringify(text)} has unbalanced brackets`);
    if (char === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else current += char;
  }
  if (depth !== 0) throw new Error(`monitors ${JSON.stringify(text)} has unbalanced brackets`);
  parts.push(current);
  return parts;
}

/** Validated monitors, spaces around entries dropped; throws naming the entry that is wrong. */
export function parseMonitorList(text: string): string[] {
  return checkMonitors(splitTopLevel(text).map((part) => part.trim()));
}

/** The same checks for monitors that arrive as a list (the cluster file). */
export function checkMonitors(monitors: readonly string[]): string[] {
  if (monitors.length === 0 || monitors.some((monitor) => monitor === ''))
    throw new Error('monitors must be a non-empty list without empty entries');
  if (monitors.length > MAX_MONITORS) throw new Error(`more than ${MAX_MONITORS} monitors`);
  return monitors.map(checkMonitor);
}

/** Names a monitor set in volume ids; the order the monitors were listed in does not matter. */
export function monitorDigest(monitors: readonly string[]): string {
  return sha256Hex([...monitors].sort().join(','), 16);
}

/** The mon_host value for a monitor set. */
export function monHost(monitors: readonly string[]): string {
  return monitors.join(',');
}
