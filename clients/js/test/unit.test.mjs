// The parts that need no server: token sets, storages, latchkeyCode's reading
// of bodies and WWW-Authenticate, and the manager's paths that only a fake
// fetch (or a fake Web Locks API) can steer exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  LatchkeyError,
  LocalStorageTokenStorage,
  MemoryTokenStorage,
  SignInRequiredError,
  TokenManager,
  latchkeyCode,
  tokenSetFrom,
} from '../dist/index.js';

const now = () => Math.floor(Date.now() / 1000);
const ISSUER = 'https://id.example.test/tenants/acme';
const TOKEN_ENDPOINT = `${ISSUER}/oauth/token`;

/** A Storage (the Web Storage interface) in memory. */
class FakeStorage {
  #items = new Map();
  getItem(key) {
    return this.#items.has(key) ? this.#items.get(key) : null;
  }
  setItem(key, value) {
    this.#items.set(key, String(value));
  }
  removeItem(key) {
    this.#items.delete(key);
  }
}

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

/**
 * A fetch that answers from `routes` (url -> handler(request)) and records
 * every request; the token endpoint mints access-1, access-2, ….
 */
function fakeFetch(routes = {}) {
  let minted = 0;
  const requests = [];
  const handler = async (input, init) => {
    const request = new Request(input, init);
    requests.push(request.clone());
    const route = routes[request.url];
    if (route) return route(request);
    if (request.url === TOKEN_ENDPOINT) {
      minted += 1;
      return json(200, { access_token: `access-${minted}`, token_type: 'Bearer', expires_in: 900, refresh_token: `refresh-${minted}` });
    }
    return new Response('not found', { status: 404 });
  };
  handler.requests = requests;
  handler.posts = () => requests.filter((r) => r.url === TOKEN_ENDPOINT).length;
  return handler;
}

test('tokenSetFrom turns expires_in into expires_at and keeps what is there', () => {
  assert.deepEqual(tokenSetFrom({ access_token: 'a', expires_in: 900, refresh_token: 'r', id_token: 'i', scope: 'openid' }, 1000), {
    access_token: 'a',
    expires_at: 1900,
    refresh_token: 'r',
    id_token: 'i',
    scope: 'openid',
  });
  assert.deepEqual(tokenSetFrom({ access_token: 'a', expires_in: 60 }, 10), { access_token: 'a', expires_at: 70 });
  const t = tokenSetFrom({ access_token: 'a', expires_in: 900 });
  assert.ok(Math.abs(t.expires_at - (now() + 900)) <= 1);
  assert.throws(() => tokenSetFrom({ expires_in: 1 }), TypeError);
  assert.throws(() => tokenSetFrom({ access_token: 'a' }), TypeError);
  assert.throws(() => tokenSetFrom({ access_token: 'a', expires_in: -1 }), TypeError);
});

test('MemoryTokenStorage and LocalStorageTokenStorage keep copies; junk in localStorage reads as none', () => {
  const set = { access_token: 'a', refresh_token: 'r', expires_at: 5 };
  for (const storage of [new MemoryTokenStorage(), new LocalStorageTokenStorage('k', new FakeStorage())]) {
    assert.equal(storage.load(), null);
    storage.save(set);
    assert.deepEqual(storage.load(), set);
    storage.load().access_token = 'changed';
    assert.equal(storage.load().access_token, 'a');
    storage.clear();
    assert.equal(storage.load(), null);
  }
  const raw = new FakeStorage();
  const storage = new LocalStorageTokenStorage(undefined, raw);
  storage.save(set);
  assert.equal(raw.getItem('latchkey.tokens'), JSON.stringify(set), 'the default key');
  raw.setItem('latchkey.tokens', '{not json');
  assert.equal(storage.load(), null);
  raw.setItem('latchkey.tokens', '{"access_token": 1}');
  assert.equal(storage.load(), null);
  assert.throws(() => new LocalStorageTokenStorage(), /localStorage/, 'Node has no localStorage');
});

test('errors carry their codes', () => {
  const signIn = new SignInRequiredError('session_revoked');
  assert.ok(signIn instanceof Error);
  assert.equal(signIn.name, 'SignInRequiredError');
  assert.equal(signIn.code, 'session_revoked');
  const transient = new LatchkeyError(503, 'store_unavailable', 'down', { retryAfter: 2 });
  assert.ok(transient instanceof Error);
  assert.deepEqual([transient.name, transient.status, transient.code, transient.retryAfter], ['LatchkeyError', 503, 'store_unavailable', 2]);
});

test('latchkeyCode: body first (problem+json, OAuth JSON), then WWW-Authenticate', async () => {
  const problem = new Response(JSON.stringify({ code: 'forbidden', status: 403 }), {
    status: 403,
    headers: { 'content-type': 'application/problem+json', 'www-authenticate': 'Bearer realm="acme", error="insufficient_scope"' },
  });
  assert.equal(await latchkeyCode(problem), 'forbidden');
  assert.equal((await problem.json()).code, 'forbidden', 'the body is left readable');
  assert.equal(await latchkeyCode(json(400, { error: 'invalid_grant', error_description: 'x', code: 'invalid_grant' })), 'invalid_grant');
  assert.equal(await latchkeyCode(json(503, { error: 'temporarily_unavailable', code: 'store_unavailable' })), 'store_unavailable');
  assert.equal(await latchkeyCode(json(400, { error: 'invalid_request' })), 'invalid_request', 'OAuth error without code');
  assert.equal(await latchkeyCode(json(200, { code: 'not an error' })), undefined, 'a success has no code');
  assert.equal(await latchkeyCode(new Response('<html>', { status: 502, headers: { 'content-type': 'text/html' } })), undefined);
  assert.equal(await latchkeyCode(new Response('{broken', { status: 401, headers: { 'content-type': 'application/json' } })), undefined);

  const challenge = async (value, status = 401) => latchkeyCode(new Response(null, { status, headers: { 'www-authenticate': value } }));
  assert.equal(await challenge('Bearer realm="acme"'), 'token_missing');
  assert.equal(await challenge('Bearer'), 'token_missing');
  assert.equal(await challenge('Bearer realm="acme", error="invalid_token", error_description="The access token expired"'), 'token_expired');
  assert.equal(await challenge('bearer realm=acme,error=invalid_token,error_description="The access token expired"'), 'token_expired');
  assert.equal(await challenge('Bearer realm="acme", error="invalid_token", error_description="The session of this token has ended"'), 'session_revoked');
  assert.equal(await challenge('Bearer realm="acme", error="invalid_token", error_description="The account or tenant is disabled"'), 'account_disabled');
  assert.equal(await challenge('Bearer realm="acme", error="invalid_token", error_description="The access token is not yet valid"'), 'token_not_yet_valid');
  assert.equal(await challenge('Bearer realm="acme", error="invalid_token", error_description="The access token was issued by another tenant"'), 'token_wrong_audience');
  assert.equal(await challenge('Bearer realm="acme", error="invalid_token", error_description="The token signature is not valid"'), 'token_invalid');
  assert.equal(await challenge('Bearer realm="acme", error="invalid_token"'), 'token_invalid');
  assert.equal(await challenge('Bearer realm="acme", error="insufficient_scope"', 403), 'forbidden');
  assert.equal(await challenge('Bearer realm="acme", error="insufficient_scope", scope="documents:write"', 403), 'insufficient_scope');
  assert.equal(await challenge('Bearer realm="acme", error="invalid_request"', 400), 'invalid_request');
  assert.equal(await challenge('Basic realm="acme", Bearer realm="acme", error="invalid_token", error_description="The access token expired"'), 'token_expired');
  assert.equal(await challenge('Bearer realm="a, b", error="invalid_token", error_description="The access token expired", Basic realm="x"'), 'token_expired');
  assert.equal(await challenge('Basic realm="acme"'), undefined, 'no Bearer challenge');
  assert.equal(await latchkeyCode(new Response(null, { status: 401 })), undefined);
});

test('the TokenManager constructor refuses what cannot work', () => {
  assert.throws(() => new TokenManager({ issuer: ISSUER }), TypeError);
  assert.throws(() => new TokenManager({ clientId: 'spa' }), TypeError);
  assert.throws(() => new TokenManager({ issuer: ISSUER, clientId: 'spa', refreshMarginSeconds: -1 }), TypeError);
  assert.ok(new TokenManager({ tokenEndpoint: TOKEN_ENDPOINT, clientId: 'spa' }));
});

test('the token endpoint: issuer with a trailing slash, form body, and HTTP Basic with form-encoded credentials', async () => {
  const fetch = fakeFetch();
  const manager = new TokenManager({ issuer: `${ISSUER}/`, clientId: 'my app', clientSecret: 'se:cr+et/=', fetch });
  await manager.setTokens({ access_token: 'old', refresh_token: 'r 1', expires_at: now() - 1 });
  assert.equal(await manager.accessToken(), 'access-1');
  const [request] = fetch.requests;
  assert.equal(request.url, TOKEN_ENDPOINT);
  assert.equal(request.method, 'POST');
  assert.equal(request.headers.get('content-type'), 'application/x-www-form-urlencoded');
  assert.equal(request.headers.get('authorization'), `Basic ${btoa('my+app:se%3Acr%2Bet%2F%3D')}`);
  assert.deepEqual(Object.fromEntries(new URLSearchParams(await request.text())), {
    grant_type: 'refresh_token',
    refresh_token: 'r 1',
    client_id: 'my app',
  });
});

test('a refresh answer without refresh_token keeps the old one (RFC 6749 §6)', async () => {
  const fetch = fakeFetch({ [TOKEN_ENDPOINT]: () => json(200, { access_token: 'new', expires_in: 900 }) });
  const storage = new MemoryTokenStorage();
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage });
  await manager.setTokens({ access_token: 'old', refresh_token: 'keep', expires_at: now() - 1 });
  assert.equal(await manager.accessToken(), 'new');
  assert.equal(storage.load().refresh_token, 'keep');
});

test('Web Locks: the refresh runs inside the lock, which first re-reads the storage (another tab refreshed: nothing sent)', async (t) => {
  const names = [];
  const storage = new MemoryTokenStorage();
  let anotherTabFirst = true;
  const locks = {
    async request(name, callback) {
      names.push(name);
      // Another tab held the lock and stored its fresh tokens meanwhile.
      if (anotherTabFirst) storage.save({ access_token: 'from-the-other-tab', refresh_token: 'r2', expires_at: now() + 900 });
      return callback();
    },
  };
  Object.defineProperty(globalThis, 'navigator', { value: { locks }, configurable: true, writable: true });
  t.after(() => delete globalThis.navigator);
  const fetch = fakeFetch();
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage });
  await manager.setTokens({ access_token: 'old', refresh_token: 'r1', expires_at: now() - 1 });

  const tokens = await Promise.all(Array.from({ length: 5 }, () => manager.accessToken()));
  assert.deepEqual(tokens, Array(5).fill('from-the-other-tab'));
  assert.equal(fetch.posts(), 0, 'nothing sent');
  assert.deepEqual(names, [`latchkey-refresh ${TOKEN_ENDPOINT} spa`], 'one lock request, default name');

  // When nobody else refreshed, the lock holder does, with the stored refresh token.
  anotherTabFirst = false;
  storage.save({ access_token: 'old', refresh_token: 'r2', expires_at: now() - 1 });
  assert.equal(await manager.accessToken(), 'access-1');
  assert.equal(fetch.posts(), 1);
  assert.equal(new URLSearchParams(await fetch.requests[0].text()).get('refresh_token'), 'r2');

  const named = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage, lockName: 'mine' });
  storage.save({ access_token: 'old', refresh_token: 'r3', expires_at: now() - 1 });
  await named.accessToken();
  assert.equal(names.at(-1), 'mine');
});

test('fetch: a token_expired answer for a token another caller already replaced is retried with the new one, without a refresh', async () => {
  const storage = new MemoryTokenStorage();
  const api = 'https://api.example.test/things';
  const seen = [];
  const fetch = fakeFetch({
    [api]: async (request) => {
      seen.push([request.headers.get('authorization'), await request.text()]);
      if (request.headers.get('authorization') === 'Bearer first') {
        // While this request was under way, someone stored new tokens.
        storage.save({ access_token: 'second', refresh_token: 'r2', expires_at: now() + 900 });
        return new Response(null, {
          status: 401,
          headers: { 'www-authenticate': 'Bearer realm="acme", error="invalid_token", error_description="The access token expired"' },
        });
      }
      return json(200, { ok: true });
    },
  });
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage });
  await manager.setTokens({ access_token: 'first', refresh_token: 'r1', expires_at: now() + 900 });
  // A Request with a body as input: the retry sends the body again.
  const response = await manager.fetch(new Request(api, { method: 'PUT', body: 'payload' }));
  assert.equal(response.status, 200);
  assert.equal(fetch.posts(), 0);
  assert.deepEqual(seen, [
    ['Bearer first', 'payload'],
    ['Bearer second', 'payload'],
  ]);
});

test('fetch: account_disabled signs out once; a handler that throws does not break the manager', async () => {
  const api = 'https://api.example.test/me';
  const fetch = fakeFetch({
    [api]: () =>
      new Response(JSON.stringify({ code: 'account_disabled', status: 401 }), {
        status: 401,
        headers: { 'content-type': 'application/problem+json' },
      }),
  });
  const storage = new MemoryTokenStorage();
  let calls = 0;
  const reported = [];
  const reportError = globalThis.reportError;
  globalThis.reportError = (e) => reported.push(e);
  try {
    const manager = new TokenManager({
      issuer: ISSUER,
      clientId: 'spa',
      fetch,
      storage,
      onSignInRequired: () => {
        calls += 1;
        throw new Error('handler bug');
      },
    });
    await manager.setTokens({ access_token: 'a', refresh_token: 'r', expires_at: now() + 900 });
    const results = await Promise.allSettled([manager.fetch(api), manager.fetch(api), manager.fetch(api)]);
    assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof SignInRequiredError && r.reason.code === 'account_disabled'));
    assert.equal(calls, 1);
    assert.equal(reported.length, 1);
    assert.equal(storage.load(), null);
    const sent = fetch.requests.length;
    await assert.rejects(manager.fetch(api), (e) => e instanceof SignInRequiredError && e.code === 'account_disabled');
    assert.equal(fetch.requests.length, sent);
  } finally {
    if (reportError) globalThis.reportError = reportError;
    else delete globalThis.reportError;
  }
});

test('invalid_grant does not clear a newer sign-in that another tab stored meanwhile', async () => {
  const storage = new MemoryTokenStorage();
  const fetch = fakeFetch({
    [TOKEN_ENDPOINT]: () => {
      // Another tab signed in again while this refresh was under way.
      storage.save({ access_token: 'new-sign-in', refresh_token: 'other', expires_at: now() + 900 });
      return json(400, { error: 'invalid_grant', error_description: 'The refresh token is invalid', code: 'invalid_grant' });
    },
  });
  const handled = [];
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage, onSignInRequired: (e) => handled.push(e.code) });
  await manager.setTokens({ access_token: 'old', refresh_token: 'dead', expires_at: now() - 1 });
  await assert.rejects(manager.accessToken(), (e) => e instanceof SignInRequiredError && e.code === 'invalid_grant');
  assert.deepEqual(handled, ['invalid_grant']);
  assert.equal(storage.load().refresh_token, 'other', 'the other sign-in was kept');
});

test('setTokens during a refresh wins over the refresh answer', async () => {
  const storage = new MemoryTokenStorage();
  let answer;
  const fetch = fakeFetch({ [TOKEN_ENDPOINT]: () => new Promise((resolve) => (answer = resolve)) });
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage });
  await manager.setTokens({ access_token: 'old', refresh_token: 'r1', expires_at: now() - 1 });
  const pending = manager.accessToken();
  while (!answer) await new Promise((r) => setImmediate(r));
  await manager.setTokens({ access_token: 'signed-in-again', refresh_token: 'r9', expires_at: now() + 900 });
  answer(json(200, { access_token: 'late', expires_in: 900, refresh_token: 'r2' }));
  assert.equal(await pending, 'signed-in-again');
  assert.equal(storage.load().refresh_token, 'r9');
});

/** Web Locks in one place: FIFO per name, query() lists what is held. */
class FakeLocks {
  #queues = new Map();
  held = new Set();
  names = [];
  request(name, callback) {
    this.names.push(name);
    const previous = this.#queues.get(name) ?? Promise.resolve();
    const run = previous.then(async () => {
      this.held.add(name);
      try {
        return await callback();
      } finally {
        this.held.delete(name);
      }
    });
    this.#queues.set(name, run.catch(() => {}));
    return run;
  }
  async query() {
    return { held: [...this.held].map((name) => ({ name })) };
  }
}

test('Web Locks: a tab whose storage lags behind another tab\'s refresh waits for it instead of sending the rotated token', async (t) => {
  const locks = new FakeLocks();
  Object.defineProperty(globalThis, 'navigator', { value: { locks }, configurable: true, writable: true });
  t.after(() => delete globalThis.navigator);
  // One shared store, seen by tab B 50 ms late (as Chromium's per-process localStorage copies can be).
  let shared = null;
  let seenByB = null;
  const storageA = {
    load: () => shared,
    save: (tokens) => {
      shared = tokens;
      setTimeout(() => (seenByB = tokens), 50);
    },
    clear: () => {
      shared = null;
      setTimeout(() => (seenByB = null), 50);
    },
  };
  const storageB = { load: () => seenByB, save: storageA.save, clear: storageA.clear };
  const fetch = fakeFetch();
  const tabA = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage: storageA });
  const tabB = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage: storageB });
  const expired = { access_token: 'old', refresh_token: 'secret-refresh-token', expires_at: now() - 1 };
  shared = seenByB = expired;

  const [a, b] = await Promise.all([tabA.accessToken(), tabB.accessToken()]);

  assert.equal(fetch.posts(), 1, 'one refresh between the two tabs');
  assert.deepEqual([a, b], ['access-1', 'access-1']);
  const markers = locks.names.filter((n) => n.includes(' rotated '));
  assert.equal(markers.length, 1);
  assert.ok(!markers[0].includes('secret-refresh-token'), 'the lock name does not carry the token');
});
