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
    received_at: 1000,
  });
  assert.deepEqual(tokenSetFrom({ access_token: 'a', expires_in: 60 }, 10.7), { access_token: 'a', expires_at: 70, received_at: 10 });
  const t = tokenSetFrom({ access_token: 'a', expires_in: 900 });
  assert.ok(Math.abs(t.expires_at - (now() + 900)) <= 1);
  assert.ok(Math.abs(t.received_at - now()) <= 1);
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
  // Sets stored before received_at existed still load; a received_at that is not a number does not.
  raw.setItem('latchkey.tokens', JSON.stringify(set));
  assert.deepEqual(storage.load(), set);
  raw.setItem('latchkey.tokens', JSON.stringify({ ...set, received_at: 'yesterday' }));
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
    async request(name, options, callback) {
      // Rotation markers (setTokens replaced a refresh token): taken by nobody here.
      if (name.includes(' rotated ')) return callback(null);
      names.push(name);
      assert.ok(options.signal instanceof AbortSignal, 'the wait for the lock has a timeout');
      // Another tab held the lock and stored its fresh tokens meanwhile.
      if (anotherTabFirst) storage.save({ access_token: 'from-the-other-tab', refresh_token: 'r2', expires_at: now() + 900 });
      return callback({ name });
    },
  };
  // Under Node, navigator.locks is not used unless given as the `locks` option.
  Object.defineProperty(globalThis, 'navigator', { value: { locks }, configurable: true, writable: true });
  t.after(() => delete globalThis.navigator);
  const fetch = fakeFetch();
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage, locks });
  await manager.setTokens({ access_token: 'old', refresh_token: 'r1', expires_at: now() - 1 });

  const tokens = await Promise.all(Array.from({ length: 5 }, () => manager.accessToken()));
  assert.deepEqual(tokens, Array(5).fill('from-the-other-tab'));
  assert.equal(fetch.posts(), 0, 'nothing sent');
  assert.deepEqual(names, Array(2).fill(`latchkey-refresh ${TOKEN_ENDPOINT} spa`), 'setTokens, then one refresh: default name');

  // When nobody else refreshed, the lock holder does, with the stored refresh token.
  anotherTabFirst = false;
  storage.save({ access_token: 'old', refresh_token: 'r2', expires_at: now() - 1 });
  assert.equal(await manager.accessToken(), 'access-1');
  assert.equal(fetch.posts(), 1);
  assert.equal(new URLSearchParams(await fetch.requests[0].text()).get('refresh_token'), 'r2');

  const named = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage, lockName: 'mine', locks });
  storage.save({ access_token: 'old', refresh_token: 'r3', expires_at: now() - 1 });
  await named.accessToken();
  assert.equal(names.at(-1), 'mine');

  // Node's own navigator.locks is not picked up by default, and `locks: false` turns an injected one off.
  const before = names.length;
  for (const options of [{}, { locks: false }]) {
    const plain = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage, ...options });
    storage.save({ access_token: 'old', refresh_token: 'r4', expires_at: now() - 1 });
    await plain.accessToken();
  }
  assert.equal(names.length, before, 'no lock requested');
  assert.throws(() => new TokenManager({ issuer: ISSUER, clientId: 'spa', locks: {} }), TypeError);
  assert.throws(() => new TokenManager({ issuer: ISSUER, clientId: 'spa', locks: null }), TypeError);
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
  // setTokens waits for the refresh under way, so that the refresh cannot overwrite it.
  let set = false;
  const setting = manager.setTokens({ access_token: 'signed-in-again', refresh_token: 'r9', expires_at: now() + 900 }).then(() => (set = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(set, false, 'setTokens waits for the refresh in flight');
  // A call made meanwhile waits for the new sign-in.
  const meanwhile = manager.accessToken();
  answer(json(200, { access_token: 'late', expires_in: 900, refresh_token: 'r2' }));
  await setting;
  assert.equal(await pending, 'signed-in-again');
  assert.equal(await meanwhile, 'signed-in-again');
  assert.equal(storage.load().refresh_token, 'r9');
});

/**
 * Web Locks in one place, as a browser keeps them for an origin: exclusive,
 * FIFO per name; `ifAvailable` and `signal` as the Web Locks API has them;
 * query() lists what is held.
 */
class FakeLocks {
  #held = new Set();
  #waiting = new Map();
  names = [];
  request(name, options, callback) {
    if (typeof options === 'function') [options, callback] = [{}, options];
    this.names.push(name);
    if (options.ifAvailable && (this.#held.has(name) || this.#waiting.get(name)?.length)) {
      return Promise.resolve().then(() => callback(null));
    }
    return new Promise((resolve, reject) => {
      const waiter = async () => {
        this.#held.add(name);
        try {
          resolve(await callback({ name }));
        } catch (error) {
          reject(error);
        } finally {
          this.#held.delete(name);
          this.#next(name);
        }
      };
      const { signal } = options;
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener('abort', () => {
        const queue = this.#waiting.get(name) ?? [];
        const at = queue.indexOf(waiter);
        if (at >= 0) {
          queue.splice(at, 1);
          reject(signal.reason);
        }
      });
      if (!this.#waiting.has(name)) this.#waiting.set(name, []);
      this.#waiting.get(name).push(waiter);
      this.#next(name);
    });
  }
  #next(name) {
    const queue = this.#waiting.get(name);
    if (!this.#held.has(name) && queue?.length) queue.shift()();
  }
  async query() {
    return { held: [...this.#held].map((name) => ({ name })) };
  }
}

/**
 * One store shared by two tabs, which tab B sees `lagMs` late (as Chromium's
 * per-process copies of localStorage can be): { shared(), storageA, storageB }.
 */
function laggingStores(lagMs = 50) {
  let shared = null;
  let seenByB = null;
  const later = (value) => setTimeout(() => (seenByB = value), lagMs);
  const storageA = {
    load: () => shared,
    save: (tokens) => {
      shared = tokens;
      later(tokens);
    },
    clear: () => {
      shared = null;
      later(null);
    },
  };
  const storageB = { load: () => seenByB, save: storageA.save, clear: storageA.clear };
  const put = (tokens) => (shared = seenByB = tokens);
  return { shared: () => shared, put, storageA, storageB };
}

test('Web Locks: a tab whose storage lags behind another tab\'s refresh waits for it instead of sending the rotated token', async () => {
  const locks = new FakeLocks();
  const { put, storageA, storageB } = laggingStores();
  const fetch = fakeFetch();
  const tabA = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage: storageA, locks });
  const tabB = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage: storageB, locks });
  const expired = { access_token: 'old', refresh_token: 'secret-refresh-token', expires_at: now() - 1 };
  put(expired);

  const [a, b] = await Promise.all([tabA.accessToken(), tabB.accessToken()]);

  assert.equal(fetch.posts(), 1, 'one refresh between the two tabs');
  assert.deepEqual([a, b], ['access-1', 'access-1']);
  const markers = locks.names.filter((n) => n.includes(' rotated '));
  assert.equal(markers.length, 1);
  assert.ok(!markers[0].includes('secret-refresh-token'), 'the lock name does not carry the token');
});

// ---------------------------------------------------------------------------
// Review findings: each behaviour below has a test of its own.

const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const LOCK_NAME = `latchkey-refresh ${TOKEN_ENDPOINT} spa`;
const isSignIn = (code) => (e) => e instanceof SignInRequiredError && e.code === code;
const expiredSet = (refresh = 'r1') => ({ access_token: 'old', refresh_token: refresh, expires_at: now() - 1 });

/** A token endpoint that answers when the test says so: { route, answer(response), posted() }. */
function heldTokenEndpoint() {
  const pending = [];
  return {
    route: () => new Promise((resolve) => pending.push(resolve)),
    posted: () => pending.length,
    answer: (response) => pending.shift()(response),
  };
}
const minted = (access, refresh, expiresIn = 900) =>
  json(200, { access_token: access, token_type: 'Bearer', expires_in: expiresIn, refresh_token: refresh });

/** Collects what the manager reports (globalThis.reportError) for the test's duration. */
function collectReports(t) {
  const reported = [];
  const previous = globalThis.reportError;
  globalThis.reportError = (e) => reported.push(e);
  t.after(() => {
    if (previous) globalThis.reportError = previous;
    else delete globalThis.reportError;
  });
  return reported;
}

for (const withLocks of [true, false]) {
  test(`1. signOut in one tab while another tab refreshes: the refresh does not sign in again (${withLocks ? 'Web Locks' : 'no Web Locks'})`, async () => {
    const locks = withLocks ? new FakeLocks() : false;
    const storage = new MemoryTokenStorage(expiredSet());
    const endpoint = heldTokenEndpoint();
    const handledB = [];
    const tabA = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch: fakeFetch(), storage, locks });
    const tabB = new TokenManager({
      issuer: ISSUER,
      clientId: 'spa',
      fetch: fakeFetch({ [TOKEN_ENDPOINT]: endpoint.route }),
      storage,
      locks,
      onSignInRequired: (e) => handledB.push(e.code),
    });
    const b = tabB.accessToken();
    while (endpoint.posted() === 0) await tick();

    let signedOut = false;
    const out = tabA.signOut().then(() => (signedOut = true));
    await assert.rejects(tabA.accessToken(), isSignIn('signed_out'), 'tab A is signed out at once');
    await sleep(20);
    if (withLocks) {
      assert.equal(signedOut, false, 'the clearing waits for the refresh lock');
      endpoint.answer(minted('new', 'r2'));
      assert.equal(await b, 'new', "tab B's call under way gets its token");
      await out;
    } else {
      assert.equal(signedOut, true);
      endpoint.answer(minted('new', 'r2'));
      await assert.rejects(b, isSignIn('signed_out'), 'the refresh finds the storage empty: signed out');
    }
    assert.equal(storage.load(), null, 'the sign-out won');
    await assert.rejects(tabB.accessToken(), isSignIn('signed_out'));
    assert.deepEqual(handledB, ['signed_out']);
  });

  test(`1. setTokens for user X in one tab while another tab refreshes user Y: X wins (${withLocks ? 'Web Locks' : 'no Web Locks'})`, async () => {
    const locks = withLocks ? new FakeLocks() : false;
    const storage = new MemoryTokenStorage({ access_token: 'y-old', refresh_token: 'y-r1', expires_at: now() - 1 });
    const endpoint = heldTokenEndpoint();
    const fetchA = fakeFetch();
    const tabA = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch: fetchA, storage, locks });
    const tabB = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch: fakeFetch({ [TOKEN_ENDPOINT]: endpoint.route }), storage, locks });
    const b = tabB.accessToken();
    while (endpoint.posted() === 0) await tick();

    const x = { access_token: 'x-access', refresh_token: 'x-r1', expires_at: now() + 900 };
    const setting = tabA.setTokens(x);
    await sleep(20);
    endpoint.answer(minted('y-new', 'y-r2'));
    await setting;
    // With the lock, B's refresh finished first (its call gets Y's new token) and A's write came after;
    // without it, B's refresh found X stored and took it instead of saving Y's pair.
    assert.equal(await b, withLocks ? 'y-new' : 'x-access');
    assert.deepEqual(storage.load(), x);
    assert.equal(await tabA.accessToken(), 'x-access');
    assert.equal(await tabB.accessToken(), 'x-access');
    assert.equal(fetchA.posts(), 0);
  });
}

test('1. the marker wait: a tab whose storage lags behind another tab\'s signOut finds it signed out and sends nothing', async () => {
  const locks = new FakeLocks();
  const { put, storageA, storageB } = laggingStores(100);
  const fetch = fakeFetch();
  const handled = [];
  const tabA = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage: storageA, locks });
  const tabB = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage: storageB, locks, onSignInRequired: (e) => handled.push(e.code) });
  put(expiredSet('secret-refresh-token'));

  await tabA.signOut();
  // Tab B still sees the old tokens for 100 ms; the sign-out's marker makes it wait for the change.
  await assert.rejects(tabB.accessToken(), isSignIn('signed_out'));
  assert.equal(fetch.posts(), 0, 'the old refresh token was not sent');
  assert.deepEqual(handled, ['signed_out']);
});

test('2. storage.save throws: the new pair is kept in memory, used while the storage shows its predecessor, and reported', async (t) => {
  class FullStorage extends MemoryTokenStorage {
    failures = 1;
    save(tokens) {
      if (this.failures > 0) {
        this.failures -= 1;
        throw new DOMException('The quota has been exceeded', 'QuotaExceededError');
      }
      super.save(tokens);
    }
  }
  const reported = collectReports(t);
  const storage = new FullStorage(expiredSet());
  const api = 'https://api.example.test/things';
  const fetch = fakeFetch({
    [api]: (request) =>
      request.headers.get('authorization') === 'Bearer access-1'
        ? new Response(null, {
            status: 401,
            headers: { 'www-authenticate': 'Bearer realm="acme", error="invalid_token", error_description="The access token expired"' },
          })
        : json(200, { ok: true }),
  });
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage });

  assert.equal(await manager.accessToken(), 'access-1', 'the rotated pair is returned');
  assert.equal(reported.length, 1);
  assert.ok(reported[0] instanceof LatchkeyError && reported[0].code === 'storage_error', String(reported[0]));
  assert.equal(reported[0].cause.name, 'QuotaExceededError');
  assert.equal(storage.load().refresh_token, 'r1', 'nothing was saved');
  assert.equal(await manager.accessToken(), 'access-1', 'used from memory while the storage shows r1');
  assert.equal(fetch.posts(), 1);

  // The next refresh spends the refresh token held in memory, and saves its successor.
  assert.equal((await manager.fetch(api)).status, 200);
  assert.equal(fetch.posts(), 2);
  const spent = fetch.requests.filter((r) => r.url === TOKEN_ENDPOINT)[1];
  assert.equal(new URLSearchParams(await spent.text()).get('refresh_token'), 'refresh-1');
  assert.equal(storage.load().refresh_token, 'refresh-2');

  // Once the storage holds something else (another tab), that wins over a pair kept in memory.
  storage.save(expiredSet('refresh-2'));
  storage.failures = 1;
  assert.equal(await manager.accessToken(), 'access-3');
  storage.save({ access_token: 'from-another-tab', refresh_token: 'other', expires_at: now() + 900 });
  assert.equal(await manager.accessToken(), 'from-another-tab');
});

test('2. storage errors reach callers as LatchkeyError storage_error', async () => {
  const failing = (what) => ({
    load: () => {
      if (what === 'load') throw new Error('load failed');
      return expiredSet();
    },
    save: () => {
      if (what === 'save') throw new Error('save failed');
    },
    clear: () => {
      if (what === 'clear') throw new Error('clear failed');
    },
  });
  const storageError = (message) => (e) => e instanceof LatchkeyError && e.code === 'storage_error' && e.status === 0 && e.cause.message === message;
  const reader = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch: fakeFetch(), storage: failing('load') });
  await assert.rejects(reader.accessToken(), storageError('load failed'));

  const writer = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch: fakeFetch(), storage: failing('save') });
  await writer.signOut();
  await assert.rejects(writer.setTokens({ access_token: 'a', expires_at: now() + 900 }), storageError('save failed'));
  await assert.rejects(writer.accessToken(), isSignIn('signed_out'), 'a sign-in that could not be stored changed nothing');

  const clearer = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch: fakeFetch(), storage: failing('clear') });
  await assert.rejects(clearer.signOut(), storageError('clear failed'));
  await assert.rejects(clearer.accessToken(), isSignIn('signed_out'), 'signed out all the same');
});

test('2. a refresh whose answer was lost (network error, unreadable 200) is sent once more at once', async () => {
  const lost = [
    () => Promise.reject(new TypeError('fetch failed')),
    () => new Response('{"access_token": "cut off', { status: 200, headers: { 'content-type': 'application/json' } }),
    () => json(200, { token_type: 'Bearer' }),
  ];
  for (const first of lost) {
    let calls = 0;
    const fetch = fakeFetch({ [TOKEN_ENDPOINT]: () => (++calls === 1 ? first() : minted('again', 'r2')) });
    const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage: new MemoryTokenStorage(expiredSet()) });
    assert.equal(await manager.accessToken(), 'again');
    const bodies = await Promise.all(fetch.requests.map((r) => r.text()));
    assert.deepEqual(bodies.map((b) => new URLSearchParams(b).get('refresh_token')), ['r1', 'r1'], 'the same refresh, twice');
  }

  // Lost twice: the second failure is reported, the tokens are kept, and nothing more is sent.
  const fetch = fakeFetch({ [TOKEN_ENDPOINT]: () => Promise.reject(new TypeError('fetch failed')) });
  const storage = new MemoryTokenStorage(expiredSet());
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage });
  await assert.rejects(manager.accessToken(), (e) => e instanceof LatchkeyError && e.code === 'network_error' && e.status === 0);
  assert.equal(fetch.posts(), 2);
  assert.deepEqual(storage.load(), expiredSet());
});

test('3. the token request times out (and is sent once more), instead of hanging', async () => {
  const hang = (request) =>
    new Promise((_, reject) => request.signal.addEventListener('abort', () => reject(request.signal.reason)));
  const fetch = fakeFetch({ [TOKEN_ENDPOINT]: hang });
  const manager = new TokenManager({
    issuer: ISSUER,
    clientId: 'spa',
    fetch,
    storage: new MemoryTokenStorage(expiredSet()),
    refreshTimeoutSeconds: 0.05,
  });
  const started = Date.now();
  await assert.rejects(manager.accessToken(), (e) => e instanceof LatchkeyError && e.code === 'timeout' && e.status === 0);
  assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms`);
  assert.equal(fetch.posts(), 2);
  assert.throws(() => new TokenManager({ issuer: ISSUER, clientId: 'spa', refreshTimeoutSeconds: 0 }), TypeError);

  // The default is 8 seconds: well within latchkey's 10-second grace window.
  let signal;
  const seen = fakeFetch({ [TOKEN_ENDPOINT]: (request) => ((signal = request.signal), minted('a', 'r2')) });
  await new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch: seen, storage: new MemoryTokenStorage(expiredSet()) }).accessToken();
  assert.ok(signal instanceof AbortSignal && !signal.aborted, 'the token request carries a timeout signal');
});

test('3. waiting for another tab\'s refresh lock times out: the refresh goes on without it', async () => {
  const locks = new FakeLocks();
  locks.request(LOCK_NAME, {}, () => new Promise(() => {})); // a tab that hangs holding the lock
  const fetch = fakeFetch();
  const storage = new MemoryTokenStorage(expiredSet());
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage, locks, refreshTimeoutSeconds: 0.1 });
  const started = Date.now();
  assert.equal(await manager.accessToken(), 'access-1');
  assert.ok(Date.now() - started < 2_000);
  await manager.setTokens({ access_token: 'next', refresh_token: 'r9', expires_at: now() + 900 });
  assert.equal(storage.load().access_token, 'next');
});

test('3. fetch() stops waiting for a token when its signal aborts; the shared refresh goes on for the others', async () => {
  const endpoint = heldTokenEndpoint();
  const api = 'https://api.example.test/things';
  const fetch = fakeFetch({ [TOKEN_ENDPOINT]: endpoint.route, [api]: () => json(200, {}) });
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage: new MemoryTokenStorage(expiredSet()) });
  const controller = new AbortController();
  const aborted = manager.fetch(api, { signal: controller.signal });
  const viaToken = new AbortController();
  const abortedToken = manager.accessToken({ signal: viaToken.signal });
  const other = manager.accessToken();
  while (endpoint.posted() === 0) await tick();
  controller.abort();
  viaToken.abort(new Error('gone'));
  await assert.rejects(aborted, (e) => e.name === 'AbortError');
  await assert.rejects(abortedToken, /gone/);
  endpoint.answer(minted('shared', 'r2'));
  assert.equal(await other, 'shared');
  assert.equal(fetch.posts(), 1);
  assert.equal(fetch.requests.filter((r) => r.url === api).length, 0, 'the aborted call sent nothing');
  await assert.rejects(manager.fetch(api, { signal: AbortSignal.abort() }), (e) => e.name === 'AbortError');
});

test('4. a refresh that fails for now while the access token is still valid returns that token', async () => {
  const fetch = fakeFetch({ [TOKEN_ENDPOINT]: () => json(503, { error: 'temporarily_unavailable', code: 'store_unavailable' }) });
  const storage = new MemoryTokenStorage({ access_token: 'still-valid', refresh_token: 'r1', expires_at: now() + 30 });
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage });
  assert.equal(await manager.accessToken(), 'still-valid', 'within the margin, not expired: used');
  assert.equal(fetch.posts(), 1);

  // Expired: the error is what matters.
  storage.save({ access_token: 'expired', refresh_token: 'r1', expires_at: now() - 1 });
  await assert.rejects(manager.accessToken(), (e) => e instanceof LatchkeyError && e.code === 'store_unavailable');

  // A token an API answered token_expired is not handed back either.
  const api = 'https://api.example.test/things';
  const apiFetch = fakeFetch({
    [TOKEN_ENDPOINT]: () => json(503, { error: 'temporarily_unavailable', code: 'store_unavailable' }),
    [api]: () =>
      new Response(null, {
        status: 401,
        headers: { 'www-authenticate': 'Bearer realm="acme", error="invalid_token", error_description="The access token expired"' },
      }),
  });
  const caller = new TokenManager({
    issuer: ISSUER,
    clientId: 'spa',
    fetch: apiFetch,
    storage: new MemoryTokenStorage({ access_token: 'rejected', refresh_token: 'r1', expires_at: now() + 900 }),
  });
  await assert.rejects(caller.fetch(api), (e) => e instanceof LatchkeyError && e.code === 'store_unavailable');
  assert.equal(apiFetch.requests.filter((r) => r.url === api).length, 1, 'no retry with the same token');
});

test('5. Retry-After and refused clients: no request until the time has passed, the cached error meanwhile', async () => {
  const answers = [];
  const fetch = fakeFetch({ [TOKEN_ENDPOINT]: () => answers.shift()() });
  const storage = new MemoryTokenStorage(expiredSet());
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage });
  answers.push(() => json(503, { error: 'temporarily_unavailable', code: 'store_unavailable' }, { 'retry-after': '1' }));
  const first = await manager.accessToken().catch((e) => e);
  assert.ok(first instanceof LatchkeyError && first.retryAfter === 1, String(first));
  const again = await manager.accessToken().catch((e) => e);
  assert.equal(again, first, 'the cached error');
  assert.equal(fetch.posts(), 1, 'nothing sent before Retry-After');
  // A still-valid token is returned meanwhile, without a request.
  storage.save({ access_token: 'valid', refresh_token: 'r1', expires_at: now() + 30 });
  assert.equal(await manager.accessToken(), 'valid');
  assert.equal(fetch.posts(), 1);
  await sleep(1_100);
  answers.push(() => minted('after-the-wait', 'r2'));
  assert.equal(await manager.accessToken(), 'after-the-wait');
  assert.equal(fetch.posts(), 2);

  // An HTTP-date works too.
  storage.save(expiredSet('r2'));
  answers.push(() => json(429, { error: 'temporarily_unavailable', code: 'rate_limited' }, { 'retry-after': new Date(Date.now() + 60_000).toUTCString() }));
  const limited = await manager.accessToken().catch((e) => e);
  assert.ok(limited.retryAfter >= 58 && limited.retryAfter <= 61, String(limited.retryAfter));
  assert.equal(await manager.accessToken().catch((e) => e), limited);
  assert.equal(fetch.posts(), 3);

  // A refused client is not asked again on every call.
  for (const [status, error] of [[401, 'invalid_client'], [400, 'unauthorized_client']]) {
    const refusing = fakeFetch({ [TOKEN_ENDPOINT]: () => json(status, { error, error_description: 'no', code: error }) });
    const misconfigured = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch: refusing, storage: new MemoryTokenStorage(expiredSet()) });
    const refused = await misconfigured.accessToken().catch((e) => e);
    assert.ok(refused instanceof LatchkeyError && refused.code === error);
    assert.equal(await misconfigured.accessToken().catch((e) => e), refused);
    assert.equal(refusing.posts(), 1);
  }

  // Without Retry-After, a 503 is not remembered: the next call asks again.
  const plain = fakeFetch({ [TOKEN_ENDPOINT]: () => json(503, { error: 'temporarily_unavailable', code: 'store_unavailable' }) });
  const eager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch: plain, storage: new MemoryTokenStorage(expiredSet()) });
  await assert.rejects(eager.accessToken(), LatchkeyError);
  await assert.rejects(eager.accessToken(), LatchkeyError);
  assert.equal(plain.posts(), 2);
});

test('6. the retry\'s own 401 session_revoked signs out (handler once), with no second retry', async () => {
  const api = 'https://api.example.test/things';
  const fetch = fakeFetch({
    [api]: (request) =>
      request.headers.get('authorization') === 'Bearer first'
        ? new Response(null, {
            status: 401,
            headers: { 'www-authenticate': 'Bearer realm="acme", error="invalid_token", error_description="The access token expired"' },
          })
        : new Response(JSON.stringify({ code: 'session_revoked', status: 401 }), {
            status: 401,
            headers: { 'content-type': 'application/problem+json' },
          }),
  });
  const storage = new MemoryTokenStorage({ access_token: 'first', refresh_token: 'r1', expires_at: now() + 900 });
  const handled = [];
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage, onSignInRequired: (e) => handled.push(e.code) });
  await assert.rejects(manager.fetch(api), isSignIn('session_revoked'));
  assert.deepEqual(handled, ['session_revoked']);
  assert.equal(fetch.requests.filter((r) => r.url === api).length, 2, 'the first try and one retry');
  assert.equal(fetch.posts(), 1);
  assert.equal(storage.load(), null);
  await assert.rejects(manager.fetch(api), isSignIn('session_revoked'));
  assert.equal(fetch.requests.length, 3);
});

test('7. a 401 session_revoked clears the tokens of the same session (sid), even when another call refreshed them', async () => {
  const jwt = (claims) => `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.c2ln`;
  // Claims whose base64url has - and _ in it.
  const first = jwt({ sid: 'session-1', jti: '1', note: '\u00ff\u00fe>>??' });
  const refreshed = jwt({ sid: 'session-1', jti: '2' });
  const otherSession = jwt({ sid: 'session-2', jti: '3' });
  assert.match(first.split('.')[1], /[-_]/);
  const api = 'https://api.example.test/me';
  for (const [meanwhile, cleared] of [[refreshed, true], [otherSession, false]]) {
    let storage;
    const fetch = fakeFetch({
      [api]: () => {
        // While the call was under way, the tokens were replaced.
        storage.save({ access_token: meanwhile, refresh_token: 'r2', expires_at: now() + 900 });
        return new Response(JSON.stringify({ code: 'session_revoked', status: 401 }), {
          status: 401,
          headers: { 'content-type': 'application/problem+json' },
        });
      },
    });
    storage = new MemoryTokenStorage({ access_token: first, refresh_token: 'r1', expires_at: now() + 900 });
    const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage });
    await assert.rejects(manager.fetch(api), isSignIn('session_revoked'));
    if (cleared) assert.equal(storage.load(), null, 'the same session: cleared');
    else assert.equal(storage.load().access_token, otherSession, 'another session: kept');
  }
});

test('8. fetch() passes init fields a Request does not keep (dispatcher, next, cf) to fetch', async () => {
  const calls = [];
  const fetch = async (input, init) => {
    calls.push({ request: input, init });
    return new Response('ok');
  };
  const manager = new TokenManager({
    issuer: ISSUER,
    clientId: 'spa',
    fetch,
    storage: new MemoryTokenStorage({ access_token: 'a', refresh_token: 'r', expires_at: now() + 900 }),
  });
  const dispatcher = { dispatch() {} };
  const signal = new AbortController().signal;
  await manager.fetch('https://api.example.test/x', {
    method: 'POST',
    body: 'payload',
    headers: { 'x-custom': '1' },
    signal,
    dispatcher,
    next: { revalidate: 60 },
    cf: { cacheTtl: 5 },
    credentials: 'include',
  });
  const [{ request, init }] = calls;
  assert.deepEqual(Object.keys(init).sort(), ['cf', 'credentials', 'dispatcher', 'next']);
  assert.equal(init.dispatcher, dispatcher);
  assert.deepEqual(init.next, { revalidate: 60 });
  assert.equal(request.method, 'POST');
  assert.equal(await request.text(), 'payload');
  assert.equal(request.headers.get('x-custom'), '1');
  assert.equal(request.headers.get('authorization'), 'Bearer a');
  await manager.fetch('https://api.example.test/y');
  assert.equal(calls[1].init, undefined, 'nothing to pass: no second argument');
});

test('9. a rotation marker held by someone else does not stall the refresh lock', async () => {
  const locks = new FakeLocks();
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode('r1')));
  const marker = `${LOCK_NAME} rotated ${Buffer.from(digest.subarray(0, 16)).toString('hex')}`;
  let release;
  locks.request(marker, {}, () => new Promise((r) => (release = r))); // another tab marks r1 and keeps it
  const fetch = fakeFetch();
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage: new MemoryTokenStorage(expiredSet()), locks });
  const started = Date.now();
  assert.equal(await manager.accessToken(), 'access-1');
  // One second of waiting for the storage to change (the marker says it may), then no wait for the marker.
  assert.ok(Date.now() - started < 2_500, `took ${Date.now() - started} ms`);
  assert.equal(fetch.posts(), 1);
  assert.ok(locks.names.filter((n) => n === marker).length >= 2, 'the marker was asked for (ifAvailable)');
  release();
});

test('10. the refresh margin is at most half the token\'s lifetime', async () => {
  const fetch = fakeFetch();
  const storage = new MemoryTokenStorage();
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage, refreshMarginSeconds: 60 });
  // Lives 60 s, 60 left: the margin is 30 s, so no refresh.
  await manager.setTokens({ access_token: 'short', refresh_token: 'r', expires_at: now() + 60, received_at: now() });
  assert.equal(await manager.accessToken(), 'short');
  assert.equal(fetch.posts(), 0);
  // Lives 60 s, 20 left: refreshed.
  await manager.setTokens({ access_token: 'short', refresh_token: 'r', expires_at: now() + 20, received_at: now() - 40 });
  assert.equal(await manager.accessToken(), 'access-1');
  // No received_at (stored by an older version): the whole margin, as before.
  await manager.setTokens({ access_token: 'old-style', refresh_token: 'r', expires_at: now() + 59 });
  assert.equal(await manager.accessToken(), 'access-2');
  // A token endpoint answer records received_at.
  assert.ok(Math.abs(storage.load().received_at - now()) <= 1);
  await manager.setTokens({ access_token: 'answer', refresh_token: 'r', expires_in: 30 });
  assert.equal(await manager.accessToken(), 'answer');
  assert.equal(fetch.posts(), 2);
});

test('12. storage failures are reported as such (console.error without reportError)', async (t) => {
  const previous = globalThis.reportError;
  delete globalThis.reportError;
  t.after(() => {
    if (previous) globalThis.reportError = previous;
  });
  const logged = t.mock.method(console, 'error', () => {});
  const storage = new MemoryTokenStorage(expiredSet());
  storage.save = () => {
    throw new Error('disk full');
  };
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch: fakeFetch(), storage });
  assert.equal(await manager.accessToken(), 'access-1');
  assert.equal(logged.mock.callCount(), 1);
  const [message, error] = logged.mock.calls[0].arguments;
  assert.match(message, /^latchkey-client: the token storage failed/);
  assert.doesNotMatch(message, /onSignInRequired/);
  assert.equal(error.code, 'storage_error');
});

test('1. a call made just before setTokens() in the same tick waits for the new sign-in, and no refresh of the old one is stored', async () => {
  const storage = new MemoryTokenStorage({ access_token: 'y-old', refresh_token: 'y-r1', expires_at: now() - 1 });
  const fetch = fakeFetch();
  const manager = new TokenManager({ issuer: ISSUER, clientId: 'spa', fetch, storage, locks: false });
  const call = manager.accessToken();
  const setting = manager.setTokens({ access_token: 'x-access', refresh_token: 'x-r1', expires_at: now() + 900 });
  assert.equal(await call, 'x-access');
  await setting;
  assert.equal(storage.load().refresh_token, 'x-r1');
  assert.equal(fetch.posts(), 0, 'the old sign-in was not refreshed');
});
