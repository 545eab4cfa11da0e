// Delegated login (SPEC §9) as an unmodified openid-client 6.x relying party
// sees it: a confidential client runs the authorization code flow with PKCE
// (S256), state and nonce. The "browser" is fetch(redirect: 'manual') with a
// small cookie jar. openid-client validates the authorization response (state,
// RFC 9207 iss) and the ID token (iss, aud, exp, iat, sub, nonce, azp and, with
// enableNonRepudiationChecks, its signature against jwks_uri).
//
// Inputs (environment): LK_ISSUER, LK_CLIENT_ID, LK_CLIENT_SECRET,
// LK_REDIRECT_URI, LK_POST_LOGOUT_URI, LK_EMAIL, LK_PASSWORD; optional
// LK_CLIENT_AUTH = basic (default) | post. Prints one line per step; exits
// non-zero on the first failure.
import * as client from 'openid-client';
import { inspect } from 'node:util';

const NAME = 'openid-client';
const SCOPE = 'openid email offline_access';

class Failure extends Error {}

function step(message) {
  console.log(`${NAME}: ${message}`);
}

function check(condition, message) {
  if (!condition) throw new Failure(message);
}

function env(name) {
  const value = process.env[name];
  if (!value) throw new Failure(`environment variable ${name} is not set`);
  return value;
}

// --- the "browser": fetch without following redirects, plus a cookie jar ---

const jar = new Map();

function remember(response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair, ...attributes] = line.split(';');
    const eq = pair.indexOf('=');
    if (eq < 1) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const expired = attributes.some((a) => {
      const [k, v = ''] = a.split('=').map((s) => s.trim());
      if (k.toLowerCase() === 'max-age') return Number(v) <= 0;
      if (k.toLowerCase() === 'expires') return Date.parse(v) <= Date.now();
      return false;
    });
    if (expired || value === '') jar.delete(name);
    else jar.set(name, value);
  }
}

async function browse(url, init = {}) {
  const headers = new Headers(init.headers);
  if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
  const response = await fetch(url, { ...init, headers, redirect: 'manual' });
  remember(response);
  return response;
}

function location(response, base) {
  const value = response.headers.get('location');
  check(value, `${response.status} without a Location header`);
  return new URL(value, base);
}

// --- the login form, parsed without a DOM ---

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, entity) => {
    if (entity[0] === '#') {
      const code = entity[1].toLowerCase() === 'x' ? parseInt(entity.slice(2), 16) : parseInt(entity.slice(1), 10);
      return String.fromCodePoint(code);
    }
    return ENTITIES[entity.toLowerCase()] ?? whole;
  });
}

function attributes(tag) {
  const result = {};
  const re = /([^\s"'<>\/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  const body = tag.replace(/^<\s*[a-z]+/i, '').replace(/\/?>$/, '');
  for (const m of body.matchAll(re)) {
    result[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return result;
}

function parseForm(html) {
  const form = html.match(/<form\b[^>]*>/i);
  const inputs = {};
  const types = {};
  for (const [tag] of html.matchAll(/<input\b[^>]*>/gi)) {
    const a = attributes(tag);
    if (a.name) {
      inputs[a.name] = a.value ?? '';
      types[a.name] = (a.type ?? 'text').toLowerCase();
    }
  }
  const formAttributes = form ? attributes(form[0]) : {};
  return { action: formAttributes.action, method: (formAttributes.method ?? 'get').toLowerCase(), inputs, types };
}

async function authorizeInBrowser(url, expectLogin) {
  const response = await browse(url);
  check(response.status === 302, `authorize answered ${response.status}, not 302: ${(await response.text()).slice(0, 500)}`);
  const target = location(response, url);
  const isLogin = target.pathname.endsWith('/login');
  check(isLogin === expectLogin, `authorize redirected to ${target}; expected ${expectLogin ? 'the login page' : 'the client'}`);
  return target;
}

async function main() {
  const issuer = env('LK_ISSUER').replace(/\/$/, '');
  const clientId = env('LK_CLIENT_ID');
  const clientSecret = env('LK_CLIENT_SECRET');
  const redirectUri = env('LK_REDIRECT_URI');
  const postLogoutUri = env('LK_POST_LOGOUT_URI');
  const email = env('LK_EMAIL');
  const password = env('LK_PASSWORD');
  const authMethod = process.env.LK_CLIENT_AUTH ?? 'basic';
  check(authMethod === 'basic' || authMethod === 'post', `LK_CLIENT_AUTH must be basic or post, not ${authMethod}`);

  // 1. Discovery (issuer must equal the URL given, exactly).
  const config = await client.discovery(
    new URL(issuer),
    clientId,
    clientSecret,
    authMethod === 'basic' ? client.ClientSecretBasic(clientSecret) : client.ClientSecretPost(clientSecret),
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
  );
  const metadata = config.serverMetadata();
  check(metadata.issuer === issuer, `discovery issuer ${metadata.issuer} differs from ${issuer}`);
  check(metadata.supportsPKCE('S256'), 'discovery does not list S256 in code_challenge_methods_supported');
  check(metadata.authorization_response_iss_parameter_supported === true,
    'discovery does not say authorization_response_iss_parameter_supported: true');
  for (const field of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'end_session_endpoint']) {
    check(metadata[field], `discovery lacks ${field}`);
  }
  step(`discovery ok: issuer ${metadata.issuer}`);

  // 2. The authorization request.
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(pkceCodeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizeUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: SCOPE,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  step('authorization URL built (PKCE S256, state, nonce)');

  // 3. The browser signs in on the hosted login page.
  const loginUrl = await authorizeInBrowser(authorizeUrl, true);
  check(jar.has('latchkey_login'), `authorize set no latchkey_login cookie (jar: ${[...jar.keys()]})`);
  const page = await browse(loginUrl);
  check(page.status === 200, `login page answered ${page.status}`);
  check((page.headers.get('content-type') ?? '').startsWith('text/html'), `login page is ${page.headers.get('content-type')}`);
  const form = parseForm(await page.text());
  check(form.method === 'post', `login form method is ${form.method}`);
  for (const hidden of ['tx', 'csrf']) {
    check(form.inputs[hidden], `login form has no value for the hidden input ${hidden}`);
    check(form.types[hidden] === 'hidden', `input ${hidden} is not hidden`);
  }
  check('email' in form.inputs && 'password' in form.inputs, `login form lacks email/password (has ${Object.keys(form.inputs)})`);
  step(`login page ok: ${loginUrl.pathname}, hidden tx and csrf found`);

  const action = new URL(form.action ?? loginUrl.href, loginUrl);
  const posted = await browse(action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ tx: form.inputs.tx, csrf: form.inputs.csrf, email, password }),
  });
  check(posted.status === 303, `login POST answered ${posted.status}, not 303: ${(await posted.text()).slice(0, 500)}`);
  const callback = location(posted, action);
  check(callback.href.startsWith(`${redirectUri}?`), `login redirected to ${callback}, not to ${redirectUri}`);
  check(jar.has('latchkey_session'), 'login set no latchkey_session cookie');
  step('signed in: 303 to the redirect URI');

  // 4. Code exchange: openid-client checks state and iss, sends the verifier,
  //    validates the ID token (nonce included) and its signature.
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  check(claims, 'no ID token claims');
  check(tokens.refresh_token, 'no refresh_token in the token response');
  check(typeof tokens.scope === 'string' && tokens.scope.split(' ').includes('openid'), `granted scope ${tokens.scope}`);
  step(`code exchanged (client_secret_${authMethod}); ID token valid per openid-client (signature, iss, aud, nonce, state, RFC 9207 iss)`);

  check(claims.email === email, `ID token email ${claims.email}, not ${email}`);
  check(claims.azp === undefined || claims.azp === clientId, `ID token azp ${claims.azp}`);
  check(typeof claims.sid === 'string' && claims.sid, 'the ID token has no sid');
  check(typeof claims.auth_time === 'number', 'the ID token has no numeric auth_time');
  check(typeof claims.at_hash === 'string', 'the ID token has no at_hash');
  check(Array.isArray(claims.amr) && claims.amr.includes('pwd'), `the ID token amr is ${JSON.stringify(claims.amr)}`);
  step(`ID token claims ok: sub ${claims.sub}, sid, auth_time, at_hash, amr ${JSON.stringify(claims.amr)}, email`);

  // 5. userinfo.
  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  check(info.email === email, `userinfo email ${info.email}`);
  step(`userinfo ok: ${info.email}`);

  // 6. Refresh: a new ID token for the same session, no nonce.
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  const newClaims = refreshed.claims();
  check(newClaims, 'the refresh answered no new id_token');
  check(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'the refresh token was not rotated');
  check(newClaims.nonce === undefined, 'the refreshed ID token carries a nonce');
  for (const same of ['sub', 'sid', 'auth_time']) {
    check(newClaims[same] === claims[same], `the refreshed ID token changed ${same}`);
  }
  step('refresh ok: rotated refresh token, new ID token validated (same sub, sid, auth_time; no nonce)');

  // 7. RP-initiated logout, followed by hand.
  const logoutState = client.randomState();
  const endSessionUrl = client.buildEndSessionUrl(config, {
    id_token_hint: refreshed.id_token,
    post_logout_redirect_uri: postLogoutUri,
    state: logoutState,
  });
  const ended = await browse(endSessionUrl);
  check(ended.status === 302, `end_session answered ${ended.status}, not 302: ${(await ended.text()).slice(0, 300)}`);
  const target = location(ended, endSessionUrl);
  check(`${target.origin}${target.pathname}` === postLogoutUri, `end_session redirected to ${target}, not to ${postLogoutUri}`);
  check(target.searchParams.get('state') === logoutState, 'end_session lost the state');
  step('end_session ok: 302 to post_logout_redirect_uri with state');

  // 8. The session is over.
  try {
    await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
    throw new Failure('userinfo still answers the access token after logout');
  } catch (error) {
    if (error instanceof Failure) throw error;
    check(error instanceof client.WWWAuthenticateChallengeError,
      `userinfo after logout failed with ${error.name} ${error.code}, not a WWW-Authenticate challenge`);
    check(error.status === 401, `userinfo after logout answered ${error.status}`);
    const challenge = error.cause.find((c) => c.scheme === 'bearer');
    check(challenge?.parameters.error === 'invalid_token', `challenge after logout: ${JSON.stringify(error.cause)}`);
  }
  const raw = await fetch(metadata.userinfo_endpoint, { headers: { authorization: `Bearer ${refreshed.access_token}` } });
  const body = await raw.json();
  check(raw.status === 401 && body.code === 'session_revoked', `userinfo after logout: ${raw.status} ${body.code}`);
  step('access token after logout: 401 invalid_token / session_revoked');

  try {
    await client.refreshTokenGrant(config, refreshed.refresh_token);
    throw new Failure('the refresh token still works after logout');
  } catch (error) {
    if (error instanceof Failure) throw error;
    check(error instanceof client.ResponseBodyError && error.error === 'invalid_grant',
      `refresh after logout failed with ${error.name} ${error.error ?? error.code}, not invalid_grant`);
  }
  step('refresh token after logout: invalid_grant');

  const again = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: SCOPE,
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    state: client.randomState(),
    nonce: client.randomNonce(),
  });
  await authorizeInBrowser(again, true);
  step('browser sign-in ended: authorize shows the login page again');
}

try {
  await main();
  step('all steps passed');
} catch (error) {
  console.error(inspect(error, { depth: 6 }));
  console.error(`${NAME}: FAILED: ${error.message}`);
  process.exit(1);
}
