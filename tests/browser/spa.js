// A public-client single-page app, as small as it can be: authorization code
// flow with PKCE (WebCrypto), state and nonce kept in sessionStorage, and the
// code exchanged by a cross-origin fetch to latchkey's token endpoint (CORS).
// Its config ({issuer, client_id}) comes from /spa-config.json, served by the
// test next to this file. The outcome is written into <pre id="result">, with
// data-state="ok" or "error" once there is one.
'use strict';

const SCOPE = 'openid email offline_access';
const STORE = 'latchkey-spa';

function b64u(bytes) {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString() {
  return b64u(crypto.getRandomValues(new Uint8Array(32)));
}

async function s256(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return b64u(new Uint8Array(digest));
}

function jwtPayload(jwt) {
  const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

async function json(response, what) {
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(`${what} answered ${response.status}: ${JSON.stringify(body)}`);
  return body;
}

function show(state, text) {
  const result = document.getElementById('result');
  result.textContent = text;
  result.dataset.state = state;
  document.getElementById('status').textContent = state;
}

async function tokenRequest(metadata, form) {
  return json(await fetch(metadata.token_endpoint, { method: 'POST', body: new URLSearchParams(form) }), 'token endpoint');
}

async function main() {
  const config = await json(await fetch('/spa-config.json'), 'spa-config.json');
  const metadata = await json(
    await fetch(`${config.issuer}/.well-known/openid-configuration`),
    'discovery',
  );
  const redirectUri = `${location.origin}${location.pathname}`;
  const params = new URLSearchParams(location.search);

  if (!params.has('code') && !params.has('error')) {
    const verifier = randomString();
    const state = randomString();
    const nonce = randomString();
    sessionStorage.setItem(STORE, JSON.stringify({ verifier, state, nonce, redirectUri }));
    const url = new URL(metadata.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: config.client_id,
      redirect_uri: redirectUri,
      scope: SCOPE,
      state,
      nonce,
      code_challenge: await s256(verifier),
      code_challenge_method: 'S256',
    }).toString();
    document.getElementById('status').textContent = 'redirecting';
    location.assign(url.href);
    return;
  }

  const saved = JSON.parse(sessionStorage.getItem(STORE) ?? 'null');
  sessionStorage.removeItem(STORE);
  history.replaceState(null, '', location.pathname); // no code left in the address bar
  if (!saved) throw new Error('no saved authorization request');
  if (params.get('state') !== saved.state) throw new Error('state mismatch');
  if (params.get('iss') !== metadata.issuer) throw new Error(`iss mismatch: ${params.get('iss')}`);
  if (params.has('error')) {
    throw new Error(`authorization error: ${params.get('error')}: ${params.get('error_description')}`);
  }

  const tokens = await tokenRequest(metadata, {
    grant_type: 'authorization_code',
    code: params.get('code'),
    redirect_uri: saved.redirectUri,
    code_verifier: saved.verifier,
    client_id: config.client_id,
  });
  // The signature is the relying-party tests' business; here: is it ours?
  const claims = jwtPayload(tokens.id_token);
  if (claims.nonce !== saved.nonce) throw new Error('nonce mismatch');
  if (claims.iss !== metadata.issuer) throw new Error('ID token iss mismatch');
  const audience = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!audience.includes(config.client_id)) throw new Error('ID token aud mismatch');

  const userinfo = await json(
    await fetch(metadata.userinfo_endpoint, { headers: { Authorization: `Bearer ${tokens.access_token}` } }),
    'userinfo',
  );
  if (userinfo.sub !== claims.sub) throw new Error('userinfo sub differs from the ID token');

  let refreshed = false;
  if (tokens.refresh_token) {
    const next = await tokenRequest(metadata, {
      grant_type: 'refresh_token',
      refresh_token: tokens.refresh_token,
      client_id: config.client_id,
    });
    await json(
      await fetch(metadata.userinfo_endpoint, { headers: { Authorization: `Bearer ${next.access_token}` } }),
      'userinfo after refresh',
    );
    refreshed = true;
  }

  show('ok', JSON.stringify({ userinfo, scope: tokens.scope, refreshed }, null, 2));
}

main().catch((error) => show('error', `ERROR: ${error.message}`));
