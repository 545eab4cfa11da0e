// A real latchkey for a test file: its own process, port, data directory and
// SQLite database (so test files can run in parallel), set up through the
// admin API as .ci/delegated-login does.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..', '..', '..');

export const ADMIN_EMAIL = 'admin@example.com';
export const ADMIN_PASSWORD = 'correct horse battery staple';
export const PASSWORD = 'purple monkey dishwasher lamp';
/** Registered for the public client; loopback, so any port of 127.0.0.1 matches (and gets CORS). */
export const SPA_REDIRECT_URI = 'http://127.0.0.1/spa.html';

/** Where the latchkey binary is: LATCHKEY_BIN, else the cargo target directory. */
export function latchkeyBinary() {
  if (process.env.LATCHKEY_BIN) return process.env.LATCHKEY_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(repoRoot, 'target');
  return join(target, 'debug', 'latchkey');
}

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The latchkey processes of this test process: killed when it exits, however it ends. */
const children = new Set();
function killChildren() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
process.on('exit', killChildren);
// Killed by a signal ('exit' is not emitted then): kill them, then die of the same signal.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killChildren();
    process.kill(process.pid, signal);
  });
}

/**
 * Starts latchkey and waits for /readyz. `env` adds LATCHKEY_* settings.
 * Returns { base, pid, stop(), log() }. The process is killed when this
 * (test) process exits, if stop() was not called.
 */
export async function startLatchkey(env = {}) {
  const binary = latchkeyBinary();
  if (!existsSync(binary)) {
    throw new Error(
      `latchkey binary not found at ${binary}: run \`cargo build --bin latchkey\` in ${repoRoot} ` +
        '(or set LATCHKEY_BIN to the binary, or CARGO_TARGET_DIR to its target directory)',
    );
  }
  const work = await mkdtemp(join(tmpdir(), 'latchkey-client-js-'));
  const logPath = join(work, 'server.log');
  const logFd = openSync(logPath, 'w');
  // Fresh settings only: nothing of the caller's LATCHKEY_* leaks in.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LATCHKEY_')));
  let child;
  let base;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    child = spawn(binary, [], {
      env: {
        ...inherited,
        LATCHKEY_BIND: `127.0.0.1:${port}`,
        LATCHKEY_PUBLIC_URL: base,
        LATCHKEY_DATA_DIR: work,
        LATCHKEY_DATABASE_URL: `sqlite://${work}/latchkey.db`,
        LATCHKEY_LOG: 'warn',
        LATCHKEY_BOOTSTRAP_ADMIN_EMAIL: ADMIN_EMAIL,
        LATCHKEY_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
        LATCHKEY_ARGON2_MEMORY_KIB: '4096',
        LATCHKEY_ARGON2_ITERATIONS: '1',
        LATCHKEY_RATE_LIMIT_AUTH_PER_SECOND: '100000',
        LATCHKEY_RATE_LIMIT_AUTH_BURST: '100000',
        LATCHKEY_RATE_LIMIT_API_PER_SECOND: '100000',
        LATCHKEY_RATE_LIMIT_API_BURST: '100000',
        ...env,
      },
      stdio: ['ignore', logFd, logFd],
    });
    children.add(child);
    let exited = false;
    const started = child;
    child.once('exit', () => {
      exited = true;
      children.delete(started);
    });
    const deadline = Date.now() + 30_000;
    while (!exited && Date.now() < deadline) {
      try {
        const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2_000) });
        if (res.ok) break;
      } catch {
        // not listening yet, or not answering yet
      }
      await sleep(50);
    }
    // Ready, and from this child: another process on the port may have answered /readyz
    // while this one failed to bind.
    if (!exited && Date.now() < deadline) {
      await sleep(100);
      if (!exited && child.exitCode === null && child.signalCode === null) break;
    }
    if (!exited) child.kill('SIGKILL');
    const log = await readFile(logPath, 'utf8').catch(() => '');
    if (attempt === 2 || !/address already in use|Address in use|os error 98/i.test(log)) {
      closeSync(logFd);
      await rm(work, { recursive: true, force: true });
      throw new Error(`latchkey did not come up at ${base}:\n${log.split('\n').slice(-40).join('\n')}`);
    }
  }
  closeSync(logFd);
  const running = child;
  return {
    base,
    pid: running.pid,
    async log() {
      return readFile(logPath, 'utf8').catch(() => '');
    },
    async stop() {
      if (running.exitCode === null && running.signalCode === null) {
        const gone = new Promise((r) => running.once('exit', r));
        running.kill('SIGTERM');
        const timer = setTimeout(() => running.kill('SIGKILL'), 5_000);
        await gone;
        clearTimeout(timer);
      }
      await rm(work, { recursive: true, force: true });
    },
  };
}

/** Form POST; answers { status, headers, body (parsed JSON or text) }. */
export async function postForm(url, form, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  const text = await res.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body };
}

/**
 * The tenant world of a test file: tenant `acme` (default settings) and
 * `strict` (no refresh grace window), each with the public client `spa`
 * (password, refresh_token and authorization_code grants, redirect URI
 * SPA_REDIRECT_URI), and in acme the confidential client `backend`.
 */
export async function setUpWorld(base) {
  const admin = await postForm(`${base}/tenants/system/oauth/token`, {
    grant_type: 'password',
    client_id: 'admin-cli',
    username: ADMIN_EMAIL,
    password: ADMIN_PASSWORD,
  });
  if (admin.status !== 200) throw new Error(`admin sign-in failed: ${admin.status} ${JSON.stringify(admin.body)}`);
  const adminToken = admin.body.access_token;
  const post = async (path, json) => {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${adminToken}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(json),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`set-up failed: POST ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  const spa = {
    client_id: 'spa',
    name: 'Single-page app',
    type: 'public',
    grant_types: ['password', 'refresh_token', 'authorization_code'],
    redirect_uris: [SPA_REDIRECT_URI],
  };
  await post('/admin/tenants', { slug: 'acme', name: 'Acme Inc.' });
  await post('/admin/tenants/acme/clients', spa);
  const backend = await post('/admin/tenants/acme/clients', {
    client_id: 'backend',
    name: 'Back end',
    type: 'confidential',
    grant_types: ['password', 'refresh_token'],
    redirect_uris: ['https://backend.example.com/callback'],
  });
  await post('/admin/tenants', { slug: 'strict', name: 'Strict Inc.', settings: { refresh_grace_seconds: 0 } });
  await post('/admin/tenants/strict/clients', spa);

  let users = 0;
  return {
    base,
    issuer: (tenant = 'acme') => `${base}/tenants/${tenant}`,
    backendSecret: backend.client_secret,
    /** POST JSON to the admin API as the platform admin. */
    admin: post,
    /** A new user of the tenant (own sessions, own failed sign-ins). */
    async newUser(tenant = 'acme') {
      users += 1;
      const email = `user${users}-${process.pid}@${tenant}.test`;
      await post(`/admin/tenants/${tenant}/users`, { email, password: PASSWORD });
      return email;
    },
    /** Password-grant sign-in through `spa` (or another client); the token response. */
    async signIn(email, { tenant = 'acme', clientId = 'spa', clientSecret } = {}) {
      const form = { grant_type: 'password', client_id: clientId, username: email, password: PASSWORD };
      if (clientSecret) form.client_secret = clientSecret;
      const res = await postForm(`${base}/tenants/${tenant}/oauth/token`, form);
      if (res.status !== 200) throw new Error(`sign-in failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    },
    /** A new user, signed in: { email, tokens }. */
    async signedInUser(tenant = 'acme') {
      const email = await this.newUser(tenant);
      return { email, tokens: await this.signIn(email, { tenant }) };
    },
  };
}

/** latchkey's counter value (Prometheus text), 0 when the series does not exist yet. */
export async function metric(base, name, labels = '') {
  const res = await fetch(`${base}/metrics`);
  if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
  const text = await res.text();
  const series = labels ? `${name}{${labels}}` : name;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return 0;
}

/**
 * A fetch that counts what it sends (method and URL of each request) and
 * passes it on to the real one.
 */
export function countingFetch() {
  const calls = [];
  const counted = (input, init) => {
    const request = input instanceof Request ? input : undefined;
    calls.push({
      method: (init?.method ?? request?.method ?? 'GET').toUpperCase(),
      url: request ? request.url : String(input),
    });
    return fetch(input, init);
  };
  counted.calls = calls;
  counted.count = (method, suffix) => calls.filter((c) => c.method === method && c.url.endsWith(suffix)).length;
  counted.tokenPosts = () => counted.count('POST', '/oauth/token');
  return counted;
}

/** A node:http server on 127.0.0.1 with a free port; answers { url, server, close() }. */
export function serve(handler) {
  return new Promise((resolveServer, reject) => {
    const server = http.createServer((req, res) => {
      Promise.resolve(handler(req, res)).catch((error) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(error));
      });
    });
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const url = `http://127.0.0.1:${server.address().port}`;
      resolveServer({
        url,
        server,
        close: () =>
          new Promise((r) => {
            server.closeAllConnections?.();
            server.close(() => r());
          }),
      });
    });
  });
}

export function readBody(req) {
  return new Promise((resolveBody, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolveBody(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);
