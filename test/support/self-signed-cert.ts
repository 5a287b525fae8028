// A self-signed server certificate made with the openssl CLI, for a TLS test server that clients
// verify against it as their CA (an API server and the ca.crt pods get).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Certificate {
  key: string;
  cert: string;
}

/** An EC P-256 key and a certificate valid one day for `ips` and `dnsNames`. */
export function selfSignedCertificate(directory: string, ips: string[], dnsNames: string[]): Certificate {
  mkdirSync(directory, { recursive: true });
  const key = join(directory, 'tls.key');
  const cert = join(directory, 'tls.crt');
  const names = [...ips.map((ip) => `IP:${ip}`), ...dnsNames.map((name) => `DNS:${name}`)].join(',');
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
      ...['-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${dnsNames[0] ?? ips[0]}`],
      ...['-addext', `subjectAltName=${names}`, '-addext', 'basicConstraints=critical,CA:TRUE'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
}
