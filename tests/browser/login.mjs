// Delegated login (SPEC §9) in a real browser: headless Chromium (Debian's,
// driven by playwright-core) runs a single-page app -- a public client served
// by this script from tests/browser/spa.html -- through latchkey's hosted login
// page, then a second time without a sign-in (the browser session), and checks
// that latchkey's pages break no Content-Security-Policy rule and that CORS
// answers the SPA's origin but not an unregistered one.
//
// Inputs (environment): LK_ISSUER, LK_SPA_CLIENT_ID, LK_EMAIL, LK_PASSWORD,
// LK_TENANT_NAME; optional LK_CHROMIUM (default /usr/bin/chromium). The public
// client must have registered redirect URI http://127.0.0.1/spa.html (loopback:
// any port matches). Screenshots go to target/screenshots/ under the repository.
import { chromium } from 'playwright-core';
import http from 'node:http';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const NAME = 'browser login';
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const screenshots = join(root, 'target', 'screenshots');
const TIMEOUT = 20_000;
// As .ci/docs-browser: no sandbox (root in a container), no GPU, and nothing
// that reaches for the (closed) internet.
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

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

function serve(handler) {
  return new Promise((resolve, reject) => {
    const server = http.createServer((req, res) => {
      Promise.resolve(handler(req, res)).catch((error) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(error));
      });
    });
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// A fetch from inside a page; answers what the page's script would see.
async function pageFetch(page, url, init) {
  return page.evaluate(async ({ url, init }) => {
    try {
      if (init.form) init = { ...init, body: new URLSearchParams(init.form), form: undefined };
      const response = await fetch(url, init);
      return { resolved: true, status: response.status };
    } catch (error) {
      return { resolved: false, name: error.name, message: error.message };
    }
  }, { url, init });
}

async function main() {
  const issuer = env('LK_ISSUER').replace(/\/$/, '');
  const clientId = env('LK_SPA_CLIENT_ID');
  const email = env('LK_EMAIL');
  const password = env('LK_PASSWORD');
  const tenantName = env('LK_TENANT_NAME');
  const loginPath = `${new URL(issuer).pathname}/login`;
  const metadata = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  check(metadata.issuer === issuer, `discovery issuer ${metadata.issuer} differs from ${issuer}`);

  // The SPA's own origin (127.0.0.1, registered without port) and an
  // unregistered one (localhost).
  const files = {
    '/spa.html': ['text/html; charset=utf-8', await readFile(join(here, 'spa.html'))],
    '/spa.js': ['text/javascript; charset=utf-8', await readFile(join(here, 'spa.js'))],
    '/spa-config.json': ['application/json', JSON.stringify({ issuer, client_id: clientId })],
  };
  const spaServer = await serve((req, res) => {
    const file = files[new URL(req.url, 'http://spa').pathname];
    if (!file) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': file[0], 'cache-control': 'no-store' });
    res.end(file[1]);
  });
  const otherServer = await serve((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><html lang="en"><title>unregistered origin</title><p>unregistered origin</p></html>');
  });
  const spaOrigin = `http://127.0.0.1:${spaServer.address().port}`;
  const spaUrl = `${spaOrigin}/spa.html`;
  const otherUrl = `http://localhost:${otherServer.address().port}/`;

  const browser = await chromium.launch({
    executablePath: process.env.LK_CHROMIUM || '/usr/bin/chromium',
    args: FLAGS,
    timeout: 60_000,
  });
  let page;
  const navigations = [];
  const navigationRequests = [];
  const consoleCsp = [];
  const consoleErrors = [];
  const violations = [];
  try {
    const context = await browser.newContext();
    context.setDefaultTimeout(TIMEOUT);
    // The test's own hook, not the page's: every securitypolicyviolation event
    // of every document is reported back here.
    await context.exposeBinding('__lkCspViolation', (_source, violation) => violations.push(violation));
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (event) => {
        window.__lkCspViolation?.({
          page: event.documentURI,
          directive: event.violatedDirective,
          blocked: event.blockedURI,
          sample: event.sample,
        });
      }, true);
    });
    const watch = (p) => {
      p.on('console', (message) => {
        const text = message.text();
        if (/content security policy/i.test(text)) consoleCsp.push(`${p.url()}: ${text}`);
        else if (message.type() === 'error') consoleErrors.push(`${p.url()}: ${text}`);
      });
    };

    page = await context.newPage();
    watch(page);
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations.push(frame.url());
    });
    page.on('request', (request) => {
      if (request.isNavigationRequest() && request.frame() === page.mainFrame()) navigationRequests.push(request.url());
    });
    let loginResponse;
    page.on('response', (response) => {
      const request = response.request();
      if (!loginResponse && request.isNavigationRequest() && request.method() === 'GET' &&
          new URL(response.url()).pathname === loginPath) {
        loginResponse = response;
      }
    });

    // Round 1: the SPA sends the browser to authorize; latchkey shows its login page.
    await page.goto(spaUrl, { waitUntil: 'commit' }); // the SPA navigates on at once
    await page.waitForURL((url) => url.pathname === loginPath);
    check(new URL(page.url()).pathname === loginPath, `not on the login page: ${page.url()}`);
    check(loginResponse && loginResponse.status() === 200, `login page answered ${loginResponse?.status()}`);
    const csp = loginResponse.headers()['content-security-policy'] ?? '';
    check(/frame-ancestors\s+'none'/.test(csp), `login page CSP lacks frame-ancestors 'none': ${csp}`);
    check(await page.getByText(tenantName).first().isVisible(), `tenant name ${tenantName} not visible`);
    check(((await page.getAttribute('html', 'lang')) ?? '').length > 0, 'the login page has no lang');
    for (const [name, autocomplete] of [['email', 'username'], ['password', 'current-password']]) {
      const input = page.locator(`input[name=${name}]`);
      const labels = await input.evaluate((el) => Array.from(el.labels ?? [], (l) => l.textContent.trim()));
      check(labels.length > 0 && labels.every((l) => l.length > 0), `input ${name} has no label`);
      check((await input.getAttribute('autocomplete')) === autocomplete, `input ${name} lacks autocomplete=${autocomplete}`);
    }
    check((await page.locator('script:not([src])').count()) === 0, 'the login page has an inline script');
    await mkdir(screenshots, { recursive: true });
    await page.screenshot({ path: join(screenshots, 'login-page.png'), fullPage: true });
    step(`login page ok: ${loginPath}, tenant name, labels, lang, CSP (${csp}); screenshot target/screenshots/login-page.png`);

    // A wrong password first: same page, status 400, an alert for screen readers.
    await page.fill('input[name=email]', email);
    await page.fill('input[name=password]', 'not the password at all');
    const [rejected] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === loginPath),
      page.click('button[type=submit]'),
    ]);
    check(rejected.status() === 400, `a wrong password answered ${rejected.status()}, not 400`);
    const alert = page.locator('[role=alert]').first();
    await alert.waitFor();
    const alertText = (await alert.textContent()).trim();
    check(alertText.length > 0, 'the alert is empty');
    step(`wrong password: 400 with role=alert "${alertText}"`);

    await page.fill('input[name=email]', email);
    await page.fill('input[name=password]', password);
    await page.click('button[type=submit]');
    const result = page.locator('#result[data-state]');
    await result.waitFor();
    const text1 = await result.textContent();
    check((await result.getAttribute('data-state')) === 'ok' && text1.includes(email), `the SPA answered: ${text1}`);
    step('signed in; the SPA exchanged the code cross-origin (CORS), refreshed, and read userinfo');

    // Round 2: a new authorize in the same browser answers a code at once.
    const before = { navigations: navigations.length, requests: navigationRequests.length };
    await page.goto(spaUrl, { waitUntil: 'commit' }); // the SPA navigates on at once
    await page.locator('#result[data-state]').waitFor();
    const text2 = await page.locator('#result').textContent();
    check((await page.getAttribute('#result', 'data-state')) === 'ok' && text2.includes(email), `second round: the SPA answered: ${text2}`);
    const round2 = [...navigations.slice(before.navigations), ...navigationRequests.slice(before.requests)];
    check(!round2.some((u) => new URL(u).pathname.endsWith('/login')), `second round showed the login page: ${round2.join(' ')}`);
    check(round2.some((u) => new URL(u).pathname.endsWith('/oauth/authorize')), `second round never asked authorize: ${round2.join(' ')}`);
    check(round2.some((u) => new URL(u).searchParams.has('code')), `second round got no code: ${round2.join(' ')}`);
    step('second authorize: code without the login page (browser session)');

    // CORS: the SPA's origin is answered (a refused grant is readable) ...
    const tokenProbe = { method: 'POST', form: { grant_type: 'refresh_token', refresh_token: 'not-a-token', client_id: clientId } };
    const allowed = await pageFetch(page, metadata.token_endpoint, tokenProbe);
    check(allowed.resolved && allowed.status === 400, `token endpoint from ${spaOrigin}: ${JSON.stringify(allowed)}`);
    // ... an unregistered origin is not, neither a simple POST nor a preflighted GET.
    const other = await context.newPage();
    watch(other);
    await other.goto(otherUrl);
    const denied = await pageFetch(other, metadata.token_endpoint, tokenProbe);
    check(!denied.resolved && denied.name === 'TypeError', `token endpoint from ${otherUrl} was readable: ${JSON.stringify(denied)}`);
    const deniedUserinfo = await pageFetch(other, metadata.userinfo_endpoint, { headers: { Authorization: 'Bearer x' } });
    check(!deniedUserinfo.resolved && deniedUserinfo.name === 'TypeError',
      `userinfo from ${otherUrl} was readable: ${JSON.stringify(deniedUserinfo)}`);
    await other.close();
    step(`CORS: ${spaOrigin} answered; ${new URL(otherUrl).origin} refused (TypeError)`);

    check(violations.length === 0 && consoleCsp.length === 0,
      `CSP violations: ${JSON.stringify(violations)} ${consoleCsp.join(' | ')}`);
    step('no Content-Security-Policy violation');
  } catch (error) {
    if (page) {
      await mkdir(screenshots, { recursive: true }).catch(() => {});
      await page.screenshot({ path: join(screenshots, 'login-failure.png'), fullPage: true }).catch(() => {});
      console.error(`${NAME}: page at failure: ${page.url()} (screenshot target/screenshots/login-failure.png)`);
    }
    console.error(`${NAME}: navigations: ${navigations.join('\n  ')}`);
    console.error(`${NAME}: navigation requests: ${navigationRequests.join('\n  ')}`);
    if (violations.length || consoleCsp.length) console.error(`${NAME}: CSP: ${JSON.stringify(violations)} ${consoleCsp.join(' | ')}`);
    if (consoleErrors.length) console.error(`${NAME}: console errors:\n  ${consoleErrors.join('\n  ')}`);
    throw error;
  } finally {
    await browser.close();
    spaServer.close();
    otherServer.close();
  }
}

const guard = setTimeout(() => {
  console.error(`${NAME}: FAILED: timed out after 150 s`);
  process.exit(1);
}, 150_000);
guard.unref();
try {
  await main();
  step('all steps passed');
} catch (error) {
  console.error(error);
  console.error(`${NAME}: FAILED: ${error.message}`);
  process.exit(1);
}
