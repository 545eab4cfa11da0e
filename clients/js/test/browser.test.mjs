// Two tabs of one browser share a sign-in through LocalStorageTokenStorage:
// headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// loads a page that imports dist/index.js from http://127.0.0.1:<port>, a
// loopback origin that latchkey's CORS answers for the public client `spa`.
// With the Web Locks API, the tabs refresh one at a time, and the second finds
// the first one's fresh token: one POST to /oauth/token between them. The token
// endpoint's answers are held back 300 ms, so that the second tab's call starts
// while the first tab's refresh is in flight. (The tabs may run in separate
// renderer processes, whose copies of localStorage Chromium updates
// asynchronously: without the manager's rotation marker the second tab, under
// load, sometimes reads the old tokens and sends them again. For the same
// reason the test reads stored values through the tab that wrote them.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { tokenSetFrom } from '../dist/index.js';
import { nowSeconds, serve, setUpWorld, startLatchkey } from './support/latchkey.mjs';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const CHROMIUM = process.env.LK_CHROMIUM || '/usr/bin/chromium';
// As tests/browser/login.mjs: no sandbox (root in a container), no GPU, and
// nothing that reaches for the (closed) internet.
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const STORAGE_KEY = 'latchkey.tokens';
/** How long the token endpoint's answers are held back, so that refreshes overlap. */
const TOKEN_DELAY_MS = 300;

const PAGE = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>latchkey-client in a tab</title>
<p id="state">loading</p>
<script type="module">
  import { TokenManager, LocalStorageTokenStorage } from '/dist/index.js';
  const config = await (await fetch('/config.json')).json();
  window.signInRequired = [];
  const manager = new TokenManager({
    issuer: config.issuer,
    clientId: config.clientId,
    storage: new LocalStorageTokenStorage(${JSON.stringify(STORAGE_KEY)}),
    onSignInRequired: (error) => window.signInRequired.push(error.code),
  });
  window.signOut = () => manager.signOut();
  window.callUserinfo = async () => {
    try {
      const response = await manager.fetch(config.issuer + '/oauth/userinfo');
      return { status: response.status, body: await response.json() };
    } catch (error) {
      return { error: error.name + ': ' + error.message };
    }
  };
  window.hasWebLocks = typeof navigator.locks?.request === 'function' && typeof navigator.locks?.query === 'function' && !!crypto.subtle;
  document.getElementById('state').textContent = 'ready';
</script>
</html>`;

let latchkey;
let world;
let site;
let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: install it (apt-get update && apt-get install -y chromium) ` +
        'or set LK_CHROMIUM to its executable',
    );
  }
  latchkey = await startLatchkey();
  world = await setUpWorld(latchkey.base);
  const config = JSON.stringify({ issuer: world.issuer(), clientId: 'spa' });
  site = await serve(async (req, res) => {
    const path = new URL(req.url, 'http://site').pathname;
    const send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (path === '/' || path === '/spa.html') return send(200, 'text/html; charset=utf-8', PAGE);
    if (path === '/config.json') return send(200, 'application/json', config);
    if (path === '/favicon.ico') return send(204, 'image/x-icon', '');
    const file = path.startsWith('/dist/') ? basename(path) : '';
    if (/^[a-z]+\.js$/.test(file)) {
      return send(200, 'text/javascript; charset=utf-8', await readFile(join(dist, file)));
    }
    return send(404, 'text/plain', 'not found');
  });
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, timeout: 60_000 });
});

after(async () => {
  await browser?.close();
  await site?.close();
  await latchkey?.stop();
});

/**
 * A browser context with two tabs of the page, token endpoint answers held
 * back TOKEN_DELAY_MS, and a record of the token POSTs (the page of each) and
 * of console errors. `nextPost()` resolves when the next token POST is sent.
 */
async function twoTabs(context) {
  context.setDefaultTimeout(20_000);
  await context.route('**/oauth/token', async (route) => {
    const response = await route.fetch();
    await new Promise((r) => setTimeout(r, TOKEN_DELAY_MS));
    await route.fulfill({ response });
  });
  const refreshes = [];
  const waiting = [];
  context.on('request', (request) => {
    if (request.method() === 'POST' && new URL(request.url()).pathname.endsWith('/oauth/token')) {
      refreshes.push(request.frame()?.page());
      waiting.splice(0).forEach((resolve) => resolve());
    }
  });
  const tabs = [await context.newPage(), await context.newPage()];
  const consoleErrors = [];
  for (const tab of tabs) {
    tab.on('console', (m) => m.type() === 'error' && consoleErrors.push(`${m.text()} (${m.location().url})`));
    tab.on('pageerror', (e) => consoleErrors.push(String(e)));
    await tab.goto(`${site.url}/spa.html`);
    await tab.locator('#state', { hasText: 'ready' }).waitFor();
    assert.equal(await tab.evaluate(() => window.hasWebLocks), true, 'this Chromium lacks Web Locks (request, query) or crypto.subtle');
  }
  return { tabs, refreshes, consoleErrors, nextPost: () => new Promise((resolve) => waiting.push(resolve)) };
}

/** The stored set, read through `tab` (the one that wrote it: its view is current). */
const read = (tab) => tab.evaluate((key) => JSON.parse(localStorage.getItem(key)), STORAGE_KEY);
/** Stores `set`, expired, through `tab`. */
const writeExpired = (tab, set) =>
  tab.evaluate(({ key, set, at }) => localStorage.setItem(key, JSON.stringify({ ...set, expires_at: at })), {
    key: STORAGE_KEY,
    set,
    at: nowSeconds() - 10,
  });
/** Waits until `tab`'s view of the storage shows the refresh token `refresh` (null: empty). */
const seen = (tab, refresh) =>
  tab.waitForFunction(
    ({ key, refresh }) => (JSON.parse(localStorage.getItem(key) ?? 'null')?.refresh_token ?? null) === refresh,
    { key: STORAGE_KEY, refresh },
  );

test('6. two tabs with the same expired tokens in localStorage refresh ONCE between them, the second while the first is in flight (Web Locks)', async () => {
  const context = await browser.newContext();
  try {
    const { tabs, refreshes, consoleErrors, nextPost } = await twoTabs(context);
    const [tabA, tabB] = tabs;
    const { email, tokens } = await world.signedInUser();
    await writeExpired(tabA, tokenSetFrom(tokens));
    await seen(tabB, tokens.refresh_token); // the tabs share localStorage

    // Tab A's refresh is in flight (its answer held back) when tab B's call starts.
    const posted = nextPost();
    const callA = tabA.evaluate(() => window.callUserinfo());
    await posted;
    const callB = tabB.evaluate(() => window.callUserinfo());
    const [a, b] = await Promise.all([callA, callB]);

    assert.deepEqual([a.status, b.status], [200, 200], `tab answers: ${JSON.stringify([a, b])}`);
    assert.deepEqual([a.body.email, b.body.email], [email, email]);
    assert.equal(refreshes.length, 1, 'POSTs to /oauth/token from both tabs together');
    assert.equal(refreshes[0], tabA);
    const afterFirst = await read(tabA);
    assert.notEqual(afterFirst.refresh_token, tokens.refresh_token, 'the refresh token rotated');
    assert.ok(afterFirst.expires_at > nowSeconds() + 60);

    // Later refreshes through either tab still work (no reuse detected).
    await writeExpired(tabB, afterFirst);
    const b2 = await tabB.evaluate(() => window.callUserinfo());
    assert.equal(b2.status, 200, JSON.stringify(b2));
    assert.equal(refreshes.length, 2);
    const afterSecond = await read(tabB);
    assert.notEqual(afterSecond.refresh_token, afterFirst.refresh_token);
    await writeExpired(tabA, afterSecond);
    const a2 = await tabA.evaluate(() => window.callUserinfo());
    assert.equal(a2.status, 200, JSON.stringify(a2));
    assert.equal(refreshes.length, 3);
    assert.notEqual((await read(tabA)).refresh_token, afterSecond.refresh_token);

    // Tokens fresh in storage: no refresh from either tab.
    const [a3, b3] = await Promise.all(tabs.map((tab) => tab.evaluate(() => window.callUserinfo())));
    assert.deepEqual([a3.status, b3.status], [200, 200]);
    assert.equal(refreshes.length, 3);

    for (const tab of tabs) assert.deepEqual(await tab.evaluate(() => window.signInRequired), []);
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});

test('7. signOut() in one tab while the other refreshes: the refresh does not store its pair again (Web Locks)', async () => {
  const context = await browser.newContext();
  try {
    const { tabs, refreshes, consoleErrors, nextPost } = await twoTabs(context);
    const [tabA, tabB] = tabs;
    const { tokens } = await world.signedInUser();
    await writeExpired(tabA, tokenSetFrom(tokens));
    await seen(tabB, tokens.refresh_token);

    // Tab B's refresh is in flight when tab A signs out.
    const posted = nextPost();
    const callB = tabB.evaluate(() => window.callUserinfo());
    await posted;
    const signOut = tabA.evaluate(() => window.signOut());
    const b = await callB;
    await signOut;

    assert.equal(b.status, 200, `the call under way gets its answer: ${JSON.stringify(b)}`);
    assert.equal(refreshes.length, 1);
    assert.equal(await read(tabA), null, 'the sign-out came after the refresh and won');
    await seen(tabB, null);
    const b2 = await tabB.evaluate(() => window.callUserinfo());
    assert.match(b2.error ?? '', /^SignInRequiredError/, JSON.stringify(b2));
    assert.equal(await read(tabB), null, 'still signed out');
    assert.equal(refreshes.length, 1);
    assert.deepEqual(await tabB.evaluate(() => window.signInRequired), ['signed_out']);
    assert.deepEqual(await tabA.evaluate(() => window.signInRequired), []);
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});
