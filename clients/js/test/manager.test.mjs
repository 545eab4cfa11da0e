// TokenManager against a real latchkey (SPEC §10): single flight, refresh
// ahead of expiry, one retry on token_expired, and "sign in again" instead of
// loops. Every test signs in a user of its own; the counters are the requests
// the manager sent (a counting fetch) and, where latchkey exposes it, latchkey's
// own count of refreshes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  LatchkeyError,
  MemoryTokenStorage,
  SignInRequiredError,
  TokenManager,
  latchkeyCode,
  tokenSetFrom,
} from '../dist/index.js';
import { countingFetch, metric, nowSeconds, postForm, readBody, serve, setUpWorld, startLatchkey } from './support/latchkey.mjs';

let latchkey;
let world;
/** The fake API of test 4 and the fake token endpoint of the transient-failure test. */
let api;
let tokenEndpoint;

before(async () => {
  // No leeway, so that a token of the `brief` tenant (5 s) really expires at latchkey.
  latchkey = await startLatchkey({ LATCHKEY_CLOCK_LEEWAY_SECONDS: '0' });
  world = await setUpWorld(latchkey.base);
  await world.admin('/admin/tenants', { slug: 'brief', name: 'Brief Inc.', settings: { access_token_ttl_seconds: 5 } });
  await world.admin('/admin/tenants/brief/clients', {
    client_id: 'spa',
    name: 'Single-page app',
    type: 'public',
    grant_types: ['password', 'refresh_token'],
    redirect_uris: ['http://127.0.0.1/spa.html'],
  });
  api = await startFakeApi();
  tokenEndpoint = await startFakeTokenEndpoint();
});

after(async () => {
  await api?.close();
  await tokenEndpoint?.close();
  await latchkey?.stop();
});

const userinfo = (tenant = 'acme') => `${world.issuer(tenant)}/oauth/userinfo`;
const refreshesIssued = () => metric(latchkey.base, 'latchkey_tokens_issued_total', 'grant="refresh_token"');

/** A manager for the public client `spa` with a counting fetch and a recording handler. */
function managed({ tenant = 'acme', storage = new MemoryTokenStorage(), ...options } = {}) {
  const counted = countingFetch();
  const handled = [];
  const manager = new TokenManager({
    issuer: world.issuer(tenant),
    clientId: 'spa',
    storage,
    fetch: counted,
    onSignInRequired: (error) => handled.push(error),
    ...options,
  });
  return { manager, storage, counted, handled };
}

/** Settles every promise; answers the rejections, asserting each is a SignInRequiredError with `code`. */
async function allSignInRequired(promises, code) {
  const results = await Promise.allSettled(promises);
  for (const [i, result] of results.entries()) {
    assert.equal(result.status, 'rejected', `call ${i} resolved`);
    assert.ok(result.reason instanceof SignInRequiredError, `call ${i}: ${result.reason}`);
    assert.equal(result.reason.code, code, `call ${i}`);
  }
}

/** After the signed-out state is entered: more calls reject at once and send nothing. */
async function assertStaysSignedOut({ manager, counted, handled }, code) {
  const sent = counted.calls.length;
  await allSignInRequired(
    [manager.fetch(userinfo()), manager.accessToken(), manager.fetch(userinfo(), { method: 'POST', body: 'x' })],
    code,
  );
  assert.equal(counted.calls.length, sent, 'a signed-out manager sent a request');
  assert.equal(handled.length, 1, 'the handler was called again');
}

test('1. 50 concurrent fetch calls with an expired token share ONE refresh', async () => {
  const { email, tokens } = await world.signedInUser();
  const { manager, storage, counted, handled } = managed();
  await manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() - 10 });
  const issuedBefore = await refreshesIssued();

  const responses = await Promise.all(Array.from({ length: 50 }, () => manager.fetch(userinfo())));

  const issuedAfter = await refreshesIssued();
  assert.deepEqual(responses.map((r) => r.status), Array(50).fill(200));
  for (const body of await Promise.all(responses.map((r) => r.json()))) assert.equal(body.email, email);
  assert.equal(counted.tokenPosts(), 1, 'refresh requests sent by the manager');
  assert.equal(counted.count('GET', '/oauth/userinfo'), 50);
  assert.equal(issuedAfter - issuedBefore, 1, 'refreshes counted by latchkey (latchkey_tokens_issued_total{grant="refresh_token"})');
  const stored = storage.load();
  assert.notEqual(stored.access_token, tokens.access_token);
  assert.notEqual(stored.refresh_token, tokens.refresh_token, 'the refresh token rotated');
  assert.ok(stored.expires_at > nowSeconds() + 60);
  assert.equal(handled.length, 0);
});

test('2. after the session is revoked, 10 concurrent fetch calls: handler once, all SignInRequiredError, then no requests', async () => {
  const { tokens } = await world.signedInUser();
  const { manager, storage, counted, handled } = managed();
  await manager.setTokens(tokens);
  const logout = await fetch(`${world.issuer()}/logout`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${tokens.access_token}` },
  });
  assert.equal(logout.status, 204);

  await allSignInRequired(Array.from({ length: 10 }, () => manager.fetch(userinfo())), 'session_revoked');

  assert.equal(handled.length, 1, 'onSignInRequired calls');
  assert.equal(handled[0].code, 'session_revoked');
  assert.equal(counted.count('GET', '/oauth/userinfo'), 10);
  assert.equal(counted.tokenPosts(), 0, 'a revoked session is not refreshed');
  assert.equal(storage.load(), null, 'the tokens were cleared');
  await assertStaysSignedOut({ manager, counted, handled }, 'session_revoked');

  // A new sign-in leaves the signed-out state.
  await manager.setTokens((await world.signedInUser()).tokens);
  assert.equal((await manager.fetch(userinfo())).status, 200);
});

test('3a. a revoked refresh token (invalid_grant) while the access token is expired: handler once, no loop', async () => {
  const { tokens } = await world.signedInUser();
  const revoked = await postForm(`${world.issuer()}/oauth/revoke`, { token: tokens.refresh_token, client_id: 'spa' });
  assert.equal(revoked.status, 200);
  const { manager, storage, counted, handled } = managed();
  await manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() - 10 });

  await allSignInRequired(Array.from({ length: 10 }, () => manager.fetch(userinfo())), 'invalid_grant');

  assert.equal(handled.length, 1, 'onSignInRequired calls');
  assert.equal(handled[0].code, 'invalid_grant');
  assert.equal(counted.tokenPosts(), 1, 'refresh requests');
  assert.equal(counted.calls.length, 1, 'nothing but the one refresh was sent');
  assert.equal(storage.load(), null, 'the tokens were cleared');
  await assertStaysSignedOut({ manager, counted, handled }, 'invalid_grant');
});

test('3b. a reused refresh token (invalid_grant, reuse detected) while the access token is expired: handler once, no loop', async () => {
  // Tenant `strict` has no grace window: the rotated token is reuse at once.
  const { tokens } = await world.signedInUser('strict');
  const rotated = await postForm(`${world.issuer('strict')}/oauth/token`, {
    grant_type: 'refresh_token',
    refresh_token: tokens.refresh_token,
    client_id: 'spa',
  });
  assert.equal(rotated.status, 200);
  const reuseBefore = await metric(latchkey.base, 'latchkey_refresh_reuse_detected_total');
  const { manager, storage, counted, handled } = managed({ tenant: 'strict' });
  await manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() - 10 });

  await allSignInRequired(
    [...Array.from({ length: 5 }, () => manager.fetch(userinfo('strict'))), ...Array.from({ length: 5 }, () => manager.accessToken())],
    'invalid_grant',
  );

  assert.equal(handled.length, 1, 'onSignInRequired calls');
  assert.equal(counted.tokenPosts(), 1, 'refresh requests');
  assert.equal(counted.calls.length, 1, 'nothing but the one refresh was sent');
  assert.equal(storage.load(), null);
  assert.equal((await metric(latchkey.base, 'latchkey_refresh_reuse_detected_total')) - reuseBefore, 1);
  // latchkey revoked the family: the successor is dead too.
  const successor = await postForm(`${world.issuer('strict')}/oauth/token`, {
    grant_type: 'refresh_token',
    refresh_token: rotated.body.refresh_token,
    client_id: 'spa',
  });
  assert.equal(successor.status, 400);
  assert.equal(successor.body.error, 'invalid_grant');
  const sent = counted.calls.length;
  await allSignInRequired([manager.fetch(userinfo('strict')), manager.accessToken()], 'invalid_grant');
  assert.equal(counted.calls.length, sent);
  assert.equal(handled.length, 1);
});

/** The fake API of test 4: answers 401 token_expired for the tokens in `expired` (or all, with `alwaysExpired`). */
async function startFakeApi() {
  const state = { expired: new Set(), alwaysExpired: false, headerOnly: false, requests: [] };
  const server = await serve(async (req, res) => {
    const body = await readBody(req);
    const authorization = req.headers.authorization ?? '';
    state.requests.push({ method: req.method, url: req.url, authorization, body });
    const token = authorization.replace(/^Bearer /, '');
    if (req.url === '/invalid') {
      res.writeHead(401, {
        'content-type': 'application/problem+json',
        'www-authenticate': 'Bearer realm="acme", error="invalid_token", error_description="The token signature is not valid"',
      });
      res.end(JSON.stringify({ type: 'about:blank', title: 'Invalid access token', status: 401, code: 'token_invalid' }));
      return;
    }
    if (state.alwaysExpired || state.expired.has(token)) {
      const headers = {
        'www-authenticate': 'Bearer realm="acme", error="invalid_token", error_description="The access token expired"',
      };
      if (state.headerOnly) {
        res.writeHead(401, headers);
        res.end();
        return;
      }
      res.writeHead(401, { ...headers, 'content-type': 'application/problem+json' });
      res.end(
        JSON.stringify({
          type: 'https://latchkey.dev/problems/token_expired',
          title: 'Access token expired',
          status: 401,
          detail: 'The access token expired',
          code: 'token_expired',
          request_id: 'fake-api',
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ authorization, method: req.method, body }));
  });
  return Object.assign(server, {
    state,
    reset() {
      Object.assign(state, { expired: new Set(), alwaysExpired: false, headerOnly: false, requests: [] });
    },
  });
}

test('4a. an API answering 401 token_expired: one refresh and exactly one retry, the body sent again', async () => {
  api.reset();
  const { tokens } = await world.signedInUser();
  const { manager, storage, counted, handled } = managed();
  await manager.setTokens(tokens);
  api.state.expired.add(tokens.access_token);

  const response = await manager.fetch(`${api.url}/things`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'widget' }),
  });

  assert.equal(response.status, 200);
  const echoed = await response.json();
  assert.equal(api.state.requests.length, 2, 'API requests: the first and one retry');
  assert.equal(counted.tokenPosts(), 1, 'refresh requests');
  const [first, retry] = api.state.requests;
  assert.equal(first.authorization, `Bearer ${tokens.access_token}`);
  assert.equal(retry.authorization, `Bearer ${storage.load().access_token}`);
  assert.notEqual(retry.authorization, first.authorization);
  assert.equal(first.body, '{"name":"widget"}');
  assert.equal(retry.body, first.body, 'the retry sent the same body');
  assert.equal(echoed.method, 'POST');
  assert.equal(handled.length, 0);
});

test('4b. an API that keeps answering token_expired: still exactly one retry, and its 401 is returned', async () => {
  api.reset();
  api.state.alwaysExpired = true;
  const { tokens } = await world.signedInUser();
  const { manager, counted, handled } = managed();
  await manager.setTokens(tokens);

  const response = await manager.fetch(`${api.url}/things`);

  assert.equal(response.status, 401);
  assert.equal(await latchkeyCode(response), 'token_expired');
  assert.equal((await response.json()).code, 'token_expired', 'the body is still readable');
  assert.equal(api.state.requests.length, 2, 'API requests');
  assert.equal(counted.tokenPosts(), 1, 'refresh requests');
  assert.equal(handled.length, 0);

  // WWW-Authenticate alone (no body) is understood the same way.
  api.reset();
  api.state.alwaysExpired = true;
  api.state.headerOnly = true;
  const bare = await manager.fetch(`${api.url}/things`);
  assert.equal(bare.status, 401);
  assert.equal(api.state.requests.length, 2);
  assert.equal(counted.tokenPosts(), 2);
});

test('4c. 10 concurrent calls answered token_expired share one refresh; each retries once', async () => {
  api.reset();
  const { tokens } = await world.signedInUser();
  const { manager, counted } = managed();
  await manager.setTokens(tokens);
  api.state.expired.add(tokens.access_token);

  const responses = await Promise.all(Array.from({ length: 10 }, (_, i) => manager.fetch(`${api.url}/things/${i}`)));

  assert.deepEqual(responses.map((r) => r.status), Array(10).fill(200));
  assert.equal(counted.tokenPosts(), 1, 'refresh requests');
  assert.equal(api.state.requests.length, 20, 'API requests: 10 first tries, 10 retries');
});

test('4d. other 401s are returned unchanged: no refresh, no retry', async () => {
  api.reset();
  const { tokens } = await world.signedInUser();
  const { manager, counted, handled } = managed();
  await manager.setTokens(tokens);

  const response = await manager.fetch(`${api.url}/invalid`);

  assert.equal(response.status, 401);
  assert.equal(await latchkeyCode(response), 'token_invalid');
  assert.equal(api.state.requests.length, 1);
  assert.equal(counted.tokenPosts(), 0);
  assert.equal(handled.length, 0);
});

test('4e. a real token_expired from latchkey: one refresh, one retry, 200', async () => {
  // Tenant `brief` issues 5-second access tokens (long enough for the retry's new one on a
  // loaded machine); this latchkey has no leeway.
  const { email, tokens } = await world.signedInUser('brief');
  const { manager, storage, counted } = managed({ tenant: 'brief' });
  // Stored as if valid for an hour, so that only latchkey's answer says it expired.
  await manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() + 3600 });
  const { exp } = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url').toString());
  await new Promise((r) => setTimeout(r, Math.max(0, (exp + 1) * 1000 - Date.now() + 50)));
  const expired = await fetch(userinfo('brief'), { headers: { Authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(await latchkeyCode(expired), 'token_expired');

  const response = await manager.fetch(userinfo('brief'));

  assert.equal(response.status, 200);
  assert.equal((await response.json()).email, email);
  assert.equal(counted.count('GET', '/oauth/userinfo'), 2);
  assert.equal(counted.tokenPosts(), 1);
  assert.notEqual(storage.load().access_token, tokens.access_token);
});

test('5. accessToken() refreshes ahead of expiry (within the margin), and not otherwise', async () => {
  const { tokens } = await world.signedInUser();
  const { manager, storage, counted } = managed();

  // Valid for 10 more minutes: no refresh.
  await manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() + 600 });
  assert.equal(await manager.accessToken(), tokens.access_token);
  assert.equal(counted.tokenPosts(), 0);

  // Valid for 30 more seconds of its 15 minutes, within the 60-second margin:
  // one refresh, shared by concurrent callers.
  await manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() + 30, received_at: nowSeconds() - 870 });
  const fresh = await Promise.all(Array.from({ length: 5 }, () => manager.accessToken()));
  assert.equal(counted.tokenPosts(), 1);
  assert.ok(fresh.every((t) => t === fresh[0]));
  assert.notEqual(fresh[0], tokens.access_token);
  assert.ok(storage.load().expires_at >= nowSeconds() + 60, 'the new token lasts beyond the margin');

  // The new one is valid long enough: no second refresh.
  assert.equal(await manager.accessToken(), fresh[0]);
  assert.equal(counted.tokenPosts(), 1);

  // A margin of 10 s: a token valid for 30 s is used as it is.
  const relaxed = managed({ refreshMarginSeconds: 10 });
  const current = storage.load();
  await relaxed.manager.setTokens({ ...current, expires_at: nowSeconds() + 30 });
  assert.equal(await relaxed.manager.accessToken(), current.access_token);
  assert.equal(relaxed.counted.tokenPosts(), 0);
});

test('two managers without Web Locks share one storage and send the same refresh token: the grace window answers both', async () => {
  const { tokens } = await world.signedInUser();
  const storage = new MemoryTokenStorage();
  const tabA = managed({ storage, locks: false });
  const tabB = managed({ storage, locks: false });
  await tabA.manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() - 10 });

  const [a, b] = await Promise.all([tabA.manager.accessToken(), tabB.manager.accessToken()]);

  assert.equal(tabA.counted.tokenPosts() + tabB.counted.tokenPosts(), 2, 'both sent the refresh token');
  assert.equal(a, b, 'latchkey answered the identical pair');
  const bodies = await Promise.all([tabA, tabB].map(async (t) => (await t.manager.fetch(userinfo())).status));
  assert.deepEqual(bodies, [200, 200]);
  // No reuse was detected: the next refresh works.
  storage.save({ ...storage.load(), expires_at: nowSeconds() - 10 });
  const next = await tabB.manager.accessToken();
  assert.notEqual(next, a);
  assert.equal((await tabA.manager.fetch(userinfo())).status, 200);
  assert.equal(tabA.handled.length + tabB.handled.length, 0);
});

/** A token endpoint that answers what the test queues. */
async function startFakeTokenEndpoint() {
  const state = { answers: [], requests: [] };
  const server = await serve(async (req, res) => {
    state.requests.push({ authorization: req.headers.authorization, body: await readBody(req) });
    const [status, headers, body] = state.answers.shift() ?? [500, { 'content-type': 'text/plain' }, 'no answer queued'];
    res.writeHead(status, headers);
    res.end(body);
  });
  return Object.assign(server, { state });
}

const oauthError = (status, error, code, extra = {}) => [
  status,
  { 'content-type': 'application/json', ...extra },
  JSON.stringify({ error, error_description: `${code} for the test`, code }),
];
const tokenAnswer = (access, refresh) => [
  200,
  { 'content-type': 'application/json' },
  JSON.stringify({ access_token: access, token_type: 'Bearer', expires_in: 900, refresh_token: refresh }),
];

test('transient failures (503, 429, 5xx, network, invalid_client) reject with LatchkeyError, keep the tokens, call no handler', async () => {
  const expired = { access_token: 'old-access', refresh_token: 'old-refresh', expires_at: nowSeconds() - 10 };
  const cases = [
    // [answers queued, status, code, retryAfter, requests sent]
    [[oauthError(503, 'temporarily_unavailable', 'store_unavailable', { 'retry-after': '1' })], 503, 'store_unavailable', 1, 1],
    [[oauthError(429, 'temporarily_unavailable', 'rate_limited', { 'retry-after': '7' })], 429, 'rate_limited', 7, 1],
    [[[502, { 'content-type': 'text/html' }, '<h1>Bad gateway</h1>']], 502, 'http_502', undefined, 1],
    // A 200 without tokens may hide a rotation: sent once more, then reported.
    [Array(2).fill([200, { 'content-type': 'application/json' }, '{"token_type":"Bearer"}']), 200, 'invalid_response', undefined, 2],
  ];
  tokenEndpoint.state.requests.length = 0;
  for (const [answers, status, code, retryAfter, sent] of cases) {
    const { manager, storage, counted, handled } = managed({ tokenEndpoint: `${tokenEndpoint.url}/token` });
    await manager.setTokens(expired);
    tokenEndpoint.state.answers.push(...answers);
    // Ten callers, one refresh, ten rejections.
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => manager.accessToken()));
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(r.reason instanceof LatchkeyError, String(r.reason));
      assert.equal(r.reason.status, status);
      assert.equal(r.reason.code, code);
      assert.equal(r.reason.retryAfter, retryAfter);
    }
    assert.deepEqual(storage.load(), expired, `the tokens were kept after ${status}`);
    assert.equal(counted.count('POST', '/token'), sent, `requests after ${status}`);
    assert.equal(handled.length, 0);
  }
  assert.equal(tokenEndpoint.state.answers.length, 0);
  const sent = tokenEndpoint.state.requests[0];
  assert.equal(sent.authorization, undefined, 'a public client sends no Authorization');
  assert.deepEqual(Object.fromEntries(new URLSearchParams(sent.body)), {
    grant_type: 'refresh_token',
    refresh_token: 'old-refresh',
    client_id: 'spa',
  });

  // The next attempt that works is used.
  const { manager, storage } = managed({ tokenEndpoint: `${tokenEndpoint.url}/token` });
  await manager.setTokens(expired);
  tokenEndpoint.state.answers.push([502, { 'content-type': 'text/plain' }, 'down'], tokenAnswer('new-access', 'new-refresh'));
  await assert.rejects(manager.accessToken(), (e) => e instanceof LatchkeyError && e.code === 'http_502');
  assert.equal(await manager.accessToken(), 'new-access');
  assert.equal(storage.load().refresh_token, 'new-refresh');

  // Nothing listening: tried twice (the answer might have been lost), then network_error.
  const closed = await serve(() => {});
  await closed.close();
  const offline = managed({ tokenEndpoint: `${closed.url}/token` });
  await offline.manager.setTokens(expired);
  await assert.rejects(offline.manager.accessToken(), (e) => e instanceof LatchkeyError && e.status === 0 && e.code === 'network_error');
  assert.equal(offline.counted.count('POST', '/token'), 2);
  assert.deepEqual(offline.storage.load(), expired);
  assert.equal(offline.handled.length, 0);

  // A wrong client secret at latchkey: 401 invalid_client, and not sent again on the next call.
  const { tokens } = await world.signedInUser();
  const misconfigured = managed({ clientId: 'backend', clientSecret: 'not the secret' });
  await misconfigured.manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() - 10 });
  const refused = await misconfigured.manager.accessToken().catch((e) => e);
  assert.ok(refused instanceof LatchkeyError && refused.status === 401 && refused.code === 'invalid_client', String(refused));
  assert.equal(await misconfigured.manager.accessToken().catch((e) => e), refused, 'the same error, without a request');
  assert.equal(misconfigured.counted.tokenPosts(), 1);
  assert.equal(misconfigured.storage.load().refresh_token, tokens.refresh_token);
  assert.equal(misconfigured.handled.length, 0);
});

test('Retry-After is respected: no refresh request until it has passed; a still-valid token is used meanwhile', async () => {
  api.reset();
  const { manager, storage, counted } = managed({ tokenEndpoint: `${tokenEndpoint.url}/token` });
  await manager.setTokens({ access_token: 'valid-access', refresh_token: 'r1', expires_at: nowSeconds() + 30 });
  tokenEndpoint.state.answers.push(oauthError(503, 'temporarily_unavailable', 'store_unavailable', { 'retry-after': '2' }));
  // Within the margin but not expired: the failure does not reach the caller.
  assert.equal(await manager.accessToken(), 'valid-access');
  assert.equal(await manager.fetch(`${api.url}/things`).then((r) => r.status), 200);
  assert.equal(counted.count('POST', '/token'), 1, 'one refresh request; the later calls waited for Retry-After');

  storage.save({ access_token: 'expired-access', refresh_token: 'r1', expires_at: nowSeconds() - 1 });
  await assert.rejects(manager.accessToken(), (e) => e instanceof LatchkeyError && e.code === 'store_unavailable' && e.retryAfter === 2);
  assert.equal(counted.count('POST', '/token'), 1);

  await new Promise((r) => setTimeout(r, 2_100));
  tokenEndpoint.state.answers.push(tokenAnswer('after-retry-after', 'r2'));
  assert.equal(await manager.accessToken(), 'after-retry-after');
  assert.equal(counted.count('POST', '/token'), 2);
});

/**
 * A fetch for the manager that sends the first token request to latchkey but
 * loses its answer: `network` throws once latchkey has answered, `timeout`
 * holds the answer until the manager's timeout aborts the request.
 */
function losingFetch(mode) {
  const counted = countingFetch();
  let lost = 0;
  const wrapped = async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (!url.endsWith('/oauth/token') || lost > 0) return counted(input, init);
    lost += 1;
    const response = await counted(input, { ...init, signal: undefined });
    await response.arrayBuffer(); // latchkey has answered, and rotated
    if (mode === 'network') throw new TypeError('fetch failed: the connection was reset');
    if (!init.signal.aborted) await new Promise((resolve) => init.signal.addEventListener('abort', resolve, { once: true }));
    throw init.signal.reason;
  };
  return Object.assign(wrapped, { calls: counted.calls, count: counted.count, tokenPosts: counted.tokenPosts });
}

for (const mode of ['network', 'timeout']) {
  test(`a refresh answer lost to ${mode === 'network' ? 'a network error' : 'a timeout'} is sent again at once, and the grace window answers the same pair`, async () => {
    const { email, tokens } = await world.signedInUser();
    const reuseBefore = await metric(latchkey.base, 'latchkey_refresh_reuse_detected_total');
    const lossy = losingFetch(mode);
    const { manager, storage, handled } = managed({ fetch: lossy, refreshTimeoutSeconds: 0.5 });
    await manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() - 10 });

    const response = await manager.fetch(userinfo());

    assert.equal(response.status, 200);
    assert.equal((await response.json()).email, email);
    assert.equal(lossy.tokenPosts(), 2, 'the lost refresh and its repetition');
    assert.notEqual(storage.load().refresh_token, tokens.refresh_token);
    assert.equal((await metric(latchkey.base, 'latchkey_refresh_reuse_detected_total')) - reuseBefore, 0, 'no reuse detected');
    // The pair is a live one: the next refresh works.
    storage.save({ ...storage.load(), expires_at: nowSeconds() - 10 });
    assert.equal((await manager.fetch(userinfo())).status, 200);
    assert.equal(lossy.tokenPosts(), 3);
    assert.equal(handled.length, 0);
  });
}

test('without a grace window (tenant strict), the repeated refresh is reuse: invalid_grant, sign in again', async () => {
  const { tokens } = await world.signedInUser('strict');
  const lossy = losingFetch('network');
  const { manager, storage, handled } = managed({ tenant: 'strict', fetch: lossy });
  await manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() - 10 });
  await allSignInRequired([manager.accessToken()], 'invalid_grant');
  assert.equal(lossy.tokenPosts(), 2);
  assert.equal(storage.load(), null);
  assert.equal(handled.length, 1);
});

test('a 5-second token is not refreshed on every call: the margin is at most half its lifetime', async () => {
  const { tokens } = await world.signedInUser('brief');
  assert.equal(tokens.expires_in, 5);
  const { manager, counted } = managed({ tenant: 'brief' });
  await manager.setTokens(tokens);
  const got = [];
  for (let i = 0; i < 5; i++) got.push(await manager.accessToken());
  assert.deepEqual(got, Array(5).fill(tokens.access_token));
  assert.equal(counted.tokenPosts(), 0);
});

test('signOut() in one tab while another refreshes (no Web Locks): the refresh answer is not stored', async () => {
  const { tokens } = await world.signedInUser();
  const storage = new MemoryTokenStorage();
  let release;
  const held = new Promise((r) => (release = r));
  let posted;
  const posting = new Promise((r) => (posted = r));
  const slow = async (input, init) => {
    const response = await fetch(input, init);
    if (String(input).endsWith('/oauth/token')) {
      posted();
      await held; // latchkey has rotated; the answer arrives after the sign-out
    }
    return response;
  };
  const tabA = managed({ storage, locks: false });
  const tabB = managed({ storage, locks: false, fetch: slow });
  await tabA.manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() - 10 });
  const refreshing = tabB.manager.accessToken();
  await posting;
  await tabA.manager.signOut();
  release();
  await allSignInRequired([refreshing], 'signed_out');
  assert.equal(storage.load(), null, 'still signed out');
  await allSignInRequired([tabB.manager.accessToken(), tabA.manager.accessToken()], 'signed_out');
});

test('session_revoked for a token another call already refreshed: the refreshed tokens of that session (sid) are cleared', async () => {
  const { tokens } = await world.signedInUser();
  const storage = new MemoryTokenStorage();
  const other = managed({ storage });
  let hooked = false;
  // Before tab A's request with the first token goes out, tab B refreshes (same session) and the user logs out.
  const hook = async (input, init) => {
    if (!hooked && input instanceof Request && input.url.endsWith('/oauth/userinfo')) {
      hooked = true;
      storage.save({ ...storage.load(), expires_at: nowSeconds() - 10 });
      const refreshed = await other.manager.accessToken();
      assert.notEqual(refreshed, tokens.access_token);
      const logout = await fetch(`${world.issuer()}/logout`, { method: 'POST', headers: { Authorization: `Bearer ${refreshed}` } });
      assert.equal(logout.status, 204);
    }
    return fetch(input, init);
  };
  const { manager, handled } = managed({ storage, fetch: hook });
  await manager.setTokens(tokens);
  await allSignInRequired([manager.fetch(userinfo())], 'session_revoked');
  assert.equal(storage.load(), null, "the other call's tokens of the ended session were cleared");
  assert.equal(handled.length, 1);
});

test("the retry's own 401 session_revoked (from latchkey) signs out: handler once, no second retry", async () => {
  const { tokens } = await world.signedInUser();
  const counted = countingFetch();
  let userinfoCalls = 0;
  const scripted = async (input, init) => {
    if (input instanceof Request && input.url.endsWith('/oauth/userinfo')) {
      userinfoCalls += 1;
      if (userinfoCalls === 1) {
        return new Response(null, {
          status: 401,
          headers: { 'www-authenticate': 'Bearer realm="acme", error="invalid_token", error_description="The access token expired"' },
        });
      }
      // The session ends between the refresh and the retry.
      await fetch(`${world.issuer()}/logout`, { method: 'POST', headers: { Authorization: input.headers.get('authorization') } });
    }
    return counted(input, init);
  };
  const { manager, storage, handled } = managed({ fetch: scripted });
  await manager.setTokens(tokens);
  await allSignInRequired([manager.fetch(userinfo())], 'session_revoked');
  assert.equal(userinfoCalls, 2, 'the first try and one retry');
  assert.equal(counted.tokenPosts(), 1);
  assert.equal(storage.load(), null);
  assert.equal(handled.length, 1);
  assert.equal(handled[0].code, 'session_revoked');
});

test('a confidential client refreshes with HTTP Basic', async () => {
  const email = await world.newUser();
  const tokens = await world.signIn(email, { clientId: 'backend', clientSecret: world.backendSecret });
  const { manager, counted } = managed({ clientId: 'backend', clientSecret: world.backendSecret });
  await manager.setTokens({ ...tokenSetFrom(tokens), expires_at: nowSeconds() - 10 });
  const response = await manager.fetch(userinfo());
  assert.equal(response.status, 200);
  assert.equal((await response.json()).email, email);
  assert.equal(counted.tokenPosts(), 1);
});

test('signOut() clears the tokens without calling the handler; nothing is sent until setTokens()', async () => {
  const { tokens } = await world.signedInUser();
  const { manager, storage, counted, handled } = managed();
  await manager.setTokens(tokens);
  assert.equal((await manager.fetch(userinfo())).status, 200);
  await manager.signOut();
  assert.equal(storage.load(), null);
  const sent = counted.calls.length;
  await allSignInRequired([manager.accessToken(), manager.fetch(userinfo())], 'signed_out');
  assert.equal(counted.calls.length, sent);
  assert.equal(handled.length, 0);
  await manager.setTokens(tokens);
  assert.equal(await manager.accessToken(), tokens.access_token);
});

test('no tokens at all: signed_out, the handler once, no request', async () => {
  const { manager, counted, handled } = managed();
  await allSignInRequired([manager.accessToken(), manager.fetch(userinfo()), manager.accessToken()], 'signed_out');
  await allSignInRequired([manager.accessToken()], 'signed_out');
  assert.equal(counted.calls.length, 0);
  assert.equal(handled.length, 1);
  assert.equal(handled[0].code, 'signed_out');

  // An access token without a refresh token: used while valid, then signed_out.
  const { tokens } = await world.signedInUser();
  const noRefresh = managed();
  await noRefresh.manager.setTokens({ access_token: tokens.access_token, expires_at: nowSeconds() + 600 });
  assert.equal(await noRefresh.manager.accessToken(), tokens.access_token);
  await noRefresh.manager.setTokens({ access_token: tokens.access_token, expires_at: nowSeconds() + 5 });
  await allSignInRequired([noRefresh.manager.accessToken()], 'signed_out');
  assert.equal(noRefresh.counted.calls.length, 0);
  assert.equal(noRefresh.handled.length, 1);
});

test('latchkeyCode reads latchkey\'s answers', async () => {
  const { tokens } = await world.signedInUser();
  const get = (headers) => fetch(userinfo(), { headers });
  assert.equal(await latchkeyCode(await get({})), 'token_missing');
  assert.equal(await latchkeyCode(await get({ Authorization: 'Bearer not-a-jwt' })), 'token_malformed');
  const ok = await get({ Authorization: `Bearer ${tokens.access_token}` });
  assert.equal(await latchkeyCode(ok), undefined);
  const refused = await fetch(`${world.issuer()}/oauth/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'nope', client_id: 'spa' }),
  });
  assert.equal(refused.status, 400);
  assert.equal(await latchkeyCode(refused), 'invalid_grant');
  await fetch(`${world.issuer()}/logout`, { method: 'POST', headers: { Authorization: `Bearer ${tokens.access_token}` } });
  const revoked = await get({ Authorization: `Bearer ${tokens.access_token}` });
  assert.equal(await latchkeyCode(revoked), 'session_revoked');
  assert.equal((await revoked.json()).code, 'session_revoked', 'the body is still readable');
});

test('test support: a test process that exits without stop() leaves no latchkey behind', async () => {
  const { spawn } = await import('node:child_process');
  const { readFileSync } = await import('node:fs');
  const support = new URL('./support/latchkey.mjs', import.meta.url).href;
  const script = `
    import { startLatchkey } from ${JSON.stringify(support)};
    const lk = await startLatchkey();
    console.log(lk.pid);
    process.exit(0);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((resolve) => child.once('exit', resolve));
  const pid = Number(out.trim());
  assert.ok(pid > 0, `no latchkey pid printed: ${out}`);
  // Gone, or a zombie nobody has reaped yet (a container's init may not).
  const running = () => {
    try {
      return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 50 && running(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(running(), false, `latchkey ${pid} is still running`);
});
