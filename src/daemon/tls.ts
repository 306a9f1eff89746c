import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as https from 'node:https';

/**
 * The optional TCP listener (`--host tcp://ADDR:PORT`). TCP is served only over TLS with client
 * certificates verified against `--tlscacert` (what `docker --tlsverify` speaks); the daemon refuses
 * to start a TCP listener without them, and the TLS handshake refuses clients without a certificate
 * signed by that CA. Requests are handed to the unix socket's HTTP server, so both listeners share
 * one router, one authorization layer and one hijack path.
 */
export interface TlsOptions {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export function parseTcpHost(host: string): { address: string; port: number } {
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/.exec(host);
  if (!m) throw new Error(`invalid --host ${host}: expected tcp://ADDRESS:PORT`);
  return { address: m[1].replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : 2376 };
}

export async function listenTls(
  api: http.Server,
  host: string,
  tls: TlsOptions | null,
): Promise<https.Server> {
  if (!tls) {
    throw new Error(
      `refusing to listen on ${host} without TLS: a TCP listener needs --tlsverify --tlscacert --tlscert --tlskey (client certificates are required)`,
    );
  }
  const { address, port } = parseTcpHost(host);
  const server = https.createServer({
    ca: fs.readFileSync(tls.caFile),
    cert: fs.readFileSync(tls.certFile),
    key: fs.readFileSync(tls.keyFile),
    requestCert: true,
    rejectUnauthorized: true,
    // The docker CLI half-closes attach connections (TLS close_notify) and keeps reading: keep ours open.
    allowHalfOpen: true,
    minVersion: 'TLSv1.2',
    keepAlive: true,
    requestTimeout: 0,
    headersTimeout: 60_000,
  });
  server.keepAliveTimeout = 60_000;
  server.on('request', (req, res) => api.emit('request', req, res));
  server.on('upgrade', (req, socket, head) => api.emit('upgrade', req, socket, head));
  server.on('tlsClientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
