/**
 * The token manager: the rules of SPEC §10 for applications that hold tokens.
 *
 * @packageDocumentation
 */

import { LatchkeyError, SignInRequiredError, latchkeyCode, type SignInReason } from './errors.js';
import {
  MemoryTokenStorage,
  copyTokenSet,
  isTokenSet,
  nowInSeconds,
  tokenSetFrom,
  type TokenEndpointResponse,
  type TokenSet,
  type TokenStorage,
} from './tokens.js';

/**
 * The part of the Web Locks API (`navigator.locks`, a `LockManager`) that a
 * {@link TokenManager} uses; pass one as {@link TokenManagerOptions.locks}.
 * A browser's `navigator.locks` is one.
 */
export interface Locks {
  /**
   * Runs `callback` once the lock `name` is held (exclusively), and releases
   * it when the promise `callback` returns settles. With `ifAvailable`,
   * `callback` runs at once with `null` when the lock is taken; `signal`
   * abandons the wait (the returned promise rejects with its reason).
   */
  request<T>(
    name: string,
    options: { ifAvailable?: boolean; signal?: AbortSignal },
    callback: (lock: unknown) => T | Promise<T>,
  ): Promise<T>;
  /**
   * The locks held now, by any tab of the origin. Without it, a tab cannot
   * see another tab's rotation marker (see {@link TokenManager}).
   */
  query?(): Promise<{ held?: Array<{ name?: string }> }>;
}

/** What a {@link TokenManager} is built from. */
export interface TokenManagerOptions {
  /**
   * The tenant's issuer, `{public_url}/tenants/{tenant}`, e.g.
   * `http://127.0.0.1:8080/tenants/acme`. The token endpoint is
   * `${issuer}/oauth/token` unless {@link TokenManagerOptions.tokenEndpoint}
   * is given.
   */
  issuer: string;
  /** The token endpoint, when it is not `${issuer}/oauth/token`. */
  tokenEndpoint?: string;
  /** The application's `client_id` at latchkey. */
  clientId: string;
  /**
   * The client secret of a confidential client, sent with HTTP Basic
   * (RFC 6749 §2.3.1). Only for servers: a secret in a browser is no secret.
   */
  clientSecret?: string;
  /**
   * Where the tokens are kept (default: a new {@link MemoryTokenStorage}).
   * Give the managers of several tabs a shared
   * {@link LocalStorageTokenStorage} to share one sign-in.
   */
  storage?: TokenStorage;
  /**
   * {@link TokenManager.accessToken} returns a token valid for at least this
   * many seconds, refreshing ahead of expiry (default 60). For a token that
   * lives less than twice as long (its lifetime is known from `received_at`,
   * which {@link tokenSetFrom} records), half its lifetime is used instead, so
   * that a short-lived token is not refreshed on every call.
   */
  refreshMarginSeconds?: number;
  /**
   * How long a request to the token endpoint may take before it counts as
   * failed (`LatchkeyError` `timeout`), in seconds (default 8). Keep it below
   * the tenant's refresh grace window (10 seconds by default): a refresh that
   * timed out is sent once more at once, which latchkey answers with the pair
   * it may already have issued only within that window. Waiting for the
   * refresh lock of another tab is given two and a half times as long.
   */
  refreshTimeoutSeconds?: number;
  /**
   * Called once each time the manager enters the signed-out state for a
   * reason the application did not cause itself (an `invalid_grant` refresh,
   * a 401 `session_revoked` or `account_disabled`, no tokens stored): show the
   * sign-in. Not called by {@link TokenManager.signOut}. An exception it
   * throws is reported (`reportError`, else `console.error`) and otherwise
   * ignored.
   */
  onSignInRequired?: (error: SignInRequiredError) => void;
  /** The `fetch` used for every request (default `globalThis.fetch`). */
  fetch?: typeof fetch;
  /**
   * The Web Locks under which the tabs of one origin refresh, sign in and sign
   * out one at a time: a {@link Locks} (such as `navigator.locks`), or `false`
   * for none. Default: `navigator.locks` where there is one, except under
   * Node.js, where it would only serialize the managers of one process (pass
   * it explicitly there if you want that). Browsers offer Web Locks (and
   * `crypto.subtle`, which the rotation marker needs) only in secure contexts:
   * pages served over https or from localhost. Without them, tabs may send
   * the same refresh token at once, which latchkey's grace window answers
   * with the same pair.
   */
  locks?: Locks | false;
  /**
   * The Web Locks name under which tabs of one origin refresh one at a time
   * (default `latchkey-refresh ${tokenEndpoint} ${clientId}`).
   */
  lockName?: string;
}

type Fetch = (input: Request | string | URL, init?: RequestInit) => Promise<Response>;

/** A refresh whose answer belongs to tokens that were replaced meanwhile in this manager: start over. */
const SUPERSEDED: unique symbol = Symbol('superseded');
type Refreshed = TokenSet | typeof SUPERSEDED;

/** What one request to the token endpoint came to. */
type Exchange =
  | { kind: 'tokens'; tokens: TokenSet }
  | { kind: 'refused'; response: Response; answer: Record<string, unknown> | undefined }
  /** No answer, or an unreadable 200: latchkey may have rotated the refresh token. */
  | { kind: 'unsure'; error: LatchkeyError };

/**
 * How long a tab that changed the stored refresh token holds its rotation
 * marker, and how long a tab that finds one waits for the shared storage to
 * show the change.
 */
const MARKER_HOLD_MS = 3_000;
const MARKER_WAIT_MS = 1_000;
const MARKER_POLL_MS = 10;
/** The default timeout of a token request, seconds (below latchkey's 10-second grace window). */
const DEFAULT_TIMEOUT_SECONDS = 8;
/** How much longer than a token request the wait for another tab's refresh lock may be. */
const LOCK_WAIT_FACTOR = 2.5;
/** How long a refused client (a configuration error) is not asked again. */
const CLIENT_ERROR_PAUSE_MS = 30_000;
/** The longest `Retry-After` honoured, seconds. */
const RETRY_AFTER_CAP_SECONDS = 300;
/** OAuth errors that say the client itself may not refresh: sending again cannot help. */
const CLIENT_ERRORS = new Set(['invalid_client', 'unauthorized_client', 'unsupported_grant_type']);

/** Resolves after `ms`; `detached`: the timer never keeps a Node process alive. */
const sleep = (ms: number, detached = false) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms) as unknown as { unref?: () => void };
    if (detached) timer.unref?.();
  });

const ignore = () => undefined;

/**
 * A signal that aborts with a `TimeoutError` after `ms`, and `done()`, which
 * stops the timer once the work it guards has settled (so no timer is left
 * behind; while it runs, it keeps a Node process alive, as the request does).
 */
function deadline(ms: number): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException('The operation timed out', 'TimeoutError')),
    Math.max(1, Math.ceil(ms)),
  );
  return { signal: controller.signal, done: () => clearTimeout(timer) };
}

/**
 * `promise`, or a rejection with the signal's reason once `signal` aborts
 * first. Only this caller stops waiting: the work behind `promise` (a shared
 * refresh) goes on.
 */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | null | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** The Web Locks of the platform: `navigator.locks`, but not under Node.js (see TokenManagerOptions.locks). */
function platformLocks(): Locks | undefined {
  const g = globalThis as {
    navigator?: { locks?: Partial<Locks> };
    process?: { versions?: { node?: unknown } };
  };
  if (typeof g.process?.versions?.node === 'string') return undefined;
  const locks = g.navigator?.locks;
  return locks && typeof locks.request === 'function' ? (locks as Locks) : undefined;
}

/** A short SHA-256 fingerprint of a refresh token, for a lock name (never the token itself). */
async function fingerprint(value: string): Promise<string | undefined> {
  const subtle = (globalThis as { crypto?: { subtle?: SubtleCrypto } }).crypto?.subtle;
  if (!subtle) return undefined;
  const digest = new Uint8Array(await subtle.digest('SHA-256', new TextEncoder().encode(value)));
  return Array.from(digest.subarray(0, 16), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** RFC 6749 §2.3.1: client id and secret are form-encoded before Basic. */
function basicCredentials(clientId: string, clientSecret: string): string {
  const encode = (value: string) => new URLSearchParams([['', value]]).toString().slice(1);
  return `Basic ${btoa(`${encode(clientId)}:${encode(clientSecret)}`)}`;
}

/**
 * The session an access token belongs to: its `sid` claim (the JWT payload,
 * base64url-decoded), else the token itself (a token without `sid`, or one
 * that is not a JWT, is its own session).
 */
function sessionOf(accessToken: string): string {
  const payload = accessToken.split('.')[1];
  if (payload) {
    try {
      const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
      const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
      const claims: unknown = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
      const sid = (claims as { sid?: unknown } | null)?.sid;
      if (typeof sid === 'string' && sid !== '') return `sid ${sid}`;
    } catch {
      // Not a JWT: the token stands for itself.
    }
  }
  return `token ${accessToken}`;
}

/** Whether `stored` belongs to the sign-in whose `rejected` tokens latchkey refused. */
function sameSession(stored: TokenSet, rejected: Partial<TokenSet>): boolean {
  if (rejected.refresh_token !== undefined && stored.refresh_token === rejected.refresh_token) return true;
  return rejected.access_token !== undefined && sessionOf(stored.access_token) === sessionOf(rejected.access_token);
}

/** `Retry-After` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) in seconds, or undefined. */
function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/**
 * The fields of a `fetch` init that `new Request(input, init)` does not keep
 * (an undici `dispatcher`, Next.js `next`, Cloudflare `cf`, …), to be passed
 * to `fetch` beside the request; undefined when there are none.
 */
function passThrough(init: RequestInit | undefined): RequestInit | undefined {
  if (!init) return undefined;
  const { body: _body, headers: _headers, method: _method, signal: _signal, ...rest } = init;
  return Object.keys(rest).length > 0 ? rest : undefined;
}

/** A storage failure as the documented error type (status 0, `storage_error`). */
function storageError(cause: unknown, operation: 'load' | 'save' | 'clear'): LatchkeyError {
  if (cause instanceof LatchkeyError) return cause;
  return new LatchkeyError(0, 'storage_error', `The token storage could not ${operation} the tokens: ${String(cause)}`, {
    cause,
  });
}

/** Reports an error nobody awaits: `reportError` where there is one, else `console.error` with `what`. */
function report(error: unknown, what: string): void {
  const reportError = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof reportError === 'function') reportError(error);
  else console.error(`latchkey-client: ${what}`, error);
}

/**
 * Holds the tokens of one sign-in and hands out access tokens that work:
 *
 * - {@link TokenManager.accessToken} returns a token valid for at least
 *   `refreshMarginSeconds` (at most half the token's lifetime), refreshing
 *   ahead of expiry;
 * - any number of concurrent callers share **one** refresh in flight; with
 *   Web Locks, tabs sharing a {@link LocalStorageTokenStorage} refresh, sign
 *   in and sign out one at a time, and a tab that finds a fresh token stored
 *   by another sends nothing;
 * - a refresh stores its new pair only while the storage still holds the
 *   refresh token it spent: a sign-out or a new sign-in in another tab is
 *   never undone by it;
 * - {@link TokenManager.fetch} adds `Authorization: Bearer`, and after a 401
 *   `token_expired` refreshes once and retries once — never more;
 * - an `invalid_grant` refresh, or a 401 `session_revoked` or
 *   `account_disabled`, clears the stored tokens of that session, calls
 *   `onSignInRequired` once and rejects with {@link SignInRequiredError}; from
 *   then on every call rejects at once, without a request, until
 *   {@link TokenManager.setTokens};
 * - a refresh that fails for now (429, 5xx, network) while the current access
 *   token has not expired yet returns that token; after a 429 or 503 with
 *   `Retry-After`, and for 30 seconds after a refused client
 *   (`invalid_client`), refreshes fail at once with the same
 *   {@link LatchkeyError}, without a request.
 *
 * latchkey rotates the refresh token on every use. When the answer is lost (a
 * network error, a timeout, an unreadable 200), the manager sends the same
 * refresh once more at once, and latchkey's grace window (10 seconds by
 * default) answers it with the pair it issued. A tab closed while its refresh
 * is under way relies on the same window: the other tabs still hold the old
 * refresh token, and the first to use it within the window gets that pair.
 * When the storage cannot save a new pair (a full `localStorage`, a store
 * that is down), the manager keeps it in memory, uses it while the storage
 * still shows its predecessor, and reports the failure (`reportError`, else
 * `console.error`).
 *
 * @example
 * ```ts
 * import { TokenManager, LocalStorageTokenStorage, SignInRequiredError } from 'latchkey-client';
 *
 * const manager = new TokenManager({
 *   issuer: 'https://id.example.com/tenants/acme',
 *   clientId: 'spa',
 *   storage: new LocalStorageTokenStorage(),
 *   onSignInRequired: () => location.assign('/sign-in'),
 * });
 * await manager.setTokens(tokenResponse); // the JSON of the code exchange
 * const me = await (await manager.fetch('https://id.example.com/tenants/acme/oauth/userinfo')).json();
 * ```
 */
export class TokenManager {
  readonly #tokenEndpoint: string;
  readonly #clientId: string;
  readonly #clientSecret: string | undefined;
  readonly #storage: TokenStorage;
  readonly #margin: number;
  readonly #timeoutMs: number;
  readonly #onSignInRequired: ((error: SignInRequiredError) => void) | undefined;
  readonly #fetch: Fetch;
  readonly #locks: Locks | undefined;
  readonly #lockName: string;
  /** The refresh in flight in this page or process; all callers share it. */
  #refreshing: Promise<Refreshed> | null = null;
  /** The tail of this manager's storage writes (setTokens, signOut, clearing a dead session), in call order. */
  #writes: Promise<void> = Promise.resolve();
  /** Set while signed out: why. Cleared by setTokens. */
  #signedOut: SignInReason | null = null;
  /** Counts sign-ins and sign-outs: an answer to an older one is not applied. */
  #generation = 0;
  /**
   * A refreshed pair the storage could not save: used instead of the stored
   * tokens while the storage still holds the refresh token `predecessor`.
   */
  #pending: { tokens: TokenSet; predecessor: string } | null = null;
  /** Until `until` (ms), refreshes fail with `error` without a request (Retry-After, a refused client). */
  #pause: { until: number; error: LatchkeyError } | null = null;

  /**
   * @param options - see {@link TokenManagerOptions}
   * @throws TypeError when `clientId` is empty, neither `issuer` nor
   *   `tokenEndpoint` is given, `refreshMarginSeconds` is negative or not a
   *   number, `refreshTimeoutSeconds` is not a positive number, `locks` is
   *   neither `false` nor an object with `request`, or there is no `fetch`
   */
  constructor(options: TokenManagerOptions) {
    if (!options || typeof options.clientId !== 'string' || options.clientId === '') {
      throw new TypeError('TokenManager needs a clientId');
    }
    const issuer = typeof options.issuer === 'string' ? options.issuer.replace(/\/+$/, '') : '';
    const tokenEndpoint = options.tokenEndpoint ?? (issuer ? `${issuer}/oauth/token` : '');
    if (!tokenEndpoint) throw new TypeError('TokenManager needs an issuer (or a tokenEndpoint)');
    const margin = options.refreshMarginSeconds ?? 60;
    if (typeof margin !== 'number' || !Number.isFinite(margin) || margin < 0) {
      throw new TypeError('refreshMarginSeconds must be a non-negative number');
    }
    const timeout = options.refreshTimeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
    if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0) {
      throw new TypeError('refreshTimeoutSeconds must be a positive number');
    }
    const locks = options.locks;
    if (locks !== undefined && locks !== false && (locks === null || typeof locks.request !== 'function')) {
      throw new TypeError('locks must be a Web Locks LockManager (with request) or false');
    }
    const custom = options.fetch;
    if (!custom && typeof globalThis.fetch !== 'function') {
      throw new TypeError('TokenManager needs fetch: pass options.fetch');
    }
    this.#tokenEndpoint = tokenEndpoint;
    this.#clientId = options.clientId;
    this.#clientSecret = options.clientSecret;
    this.#storage = options.storage ?? new MemoryTokenStorage();
    this.#margin = margin;
    this.#timeoutMs = timeout * 1000;
    this.#onSignInRequired = options.onSignInRequired;
    // Called with globalThis as `this`: a browser's own fetch refuses any other.
    this.#fetch = custom
      ? (input, init) => custom.call(globalThis, input, init)
      : (input, init) => globalThis.fetch(input, init);
    this.#locks = locks === false ? undefined : (locks ?? platformLocks());
    this.#lockName = options.lockName ?? `latchkey-refresh ${tokenEndpoint} ${options.clientId}`;
  }

  /**
   * Stores the tokens of a new sign-in (a {@link TokenSet}, or the JSON of a
   * token endpoint answer) and leaves the signed-out state. The write waits
   * for a refresh under way (here, and under the Web Lock in other tabs), so
   * that no refresh of the previous sign-in overwrites it; calls made
   * meanwhile wait for it too.
   *
   * @throws TypeError when `tokens` is neither a token set nor a token
   *   response
   * @throws {@link LatchkeyError} `storage_error` when the storage's `save`
   *   throws (`cause` holds its error); the manager then keeps its previous
   *   state
   */
  async setTokens(tokens: TokenSet | TokenEndpointResponse): Promise<void> {
    const set = isTokenSet(tokens) ? copyTokenSet(tokens) : tokenSetFrom(tokens as TokenEndpointResponse);
    const generation = ++this.#generation;
    await this.#exclusive(() => this.#replaceStored(set));
    if (generation === this.#generation) {
      this.#signedOut = null;
      this.#pending = null;
    }
  }

  /**
   * An access token valid for at least `refreshMarginSeconds` (or half the
   * token's lifetime, when that is shorter). Refreshes when the stored one
   * expires within the margin; concurrent callers share one refresh. When
   * the refresh fails for now but the stored token has not expired yet, that
   * token is returned.
   *
   * @param options - `signal`: stop waiting (rejects with its reason); a
   *   refresh under way goes on for the other callers
   * @throws {@link SignInRequiredError} when the user must sign in again:
   *   `invalid_grant` (the refresh was refused), `signed_out` (no tokens, no
   *   refresh token and the access token is expiring, or another tab signed
   *   out), or the reason the manager was signed out for
   * @throws {@link LatchkeyError} when the token has expired and the refresh
   *   failed for now (429, 5xx, `invalid_client`, `network_error`, `timeout`,
   *   `invalid_response`), or the storage failed (`storage_error`); the
   *   tokens are kept
   * @throws the signal's reason when `options.signal` aborts first
   */
  async accessToken(options?: { signal?: AbortSignal }): Promise<string> {
    this.#throwIfSignedOut();
    const signal = options?.signal;
    if (signal?.aborted) throw signal.reason;
    return (await abortable(this.#usable(undefined), signal)).tokens.access_token;
  }

  /**
   * `fetch` with `Authorization: Bearer <access token>`. A 401
   * `token_expired` answer causes one refresh (shared with every other
   * caller; none when another caller already replaced the token) and one
   * retry with the new token, whose answer is returned whatever it is —
   * unless it is a 401 `session_revoked` or `account_disabled`, which signs
   * out as below. Any other answer is returned unchanged.
   *
   * The request is built once (`new Request(input, init)`) and sent as a
   * copy, so its body can be sent again on the retry: a stream body is
   * therefore held in memory until the call is done. Fields of `init` that a
   * `Request` does not keep (an undici `dispatcher`, Next.js `next`,
   * Cloudflare `cf`, …) are passed to `fetch` beside it. The request's
   * `signal` also stops the wait for a token (for this call only).
   *
   * @throws {@link SignInRequiredError} on a 401 `session_revoked` or
   *   `account_disabled` (the tokens of that session are cleared and
   *   `onSignInRequired` is called once), and as
   *   {@link TokenManager.accessToken} does
   * @throws {@link LatchkeyError} when a needed refresh failed for now, or
   *   the storage failed
   * @throws TypeError when `new Request(input, init)` does
   * @throws whatever `fetch` throws for the request itself (network, abort:
   *   the signal's reason)
   */
  async fetch(input: Request | string | URL, init?: RequestInit): Promise<Response> {
    this.#throwIfSignedOut();
    const request = new Request(input, init);
    const extra = passThrough(init);
    if (request.signal.aborted) throw request.signal.reason;
    const first = await abortable(this.#usable(undefined), request.signal);
    const response = await this.#send(request, first.tokens.access_token, extra);
    if (response.status !== 401) return response;
    const code = await latchkeyCode(response);
    if (code !== 'token_expired') return this.#unlessRevoked(response, code, first.tokens.access_token, first.generation);
    await response.body?.cancel().catch(ignore);
    const replaced = await abortable(this.#usable(first.tokens.access_token), request.signal);
    const retry = await this.#send(request, replaced.tokens.access_token, extra);
    if (retry.status !== 401) return retry;
    // Whatever the retry answers is returned, but a session that ended still signs out.
    return this.#unlessRevoked(retry, await latchkeyCode(retry), replaced.tokens.access_token, replaced.generation);
  }

  /**
   * Signs out locally: enters the signed-out state at once, then clears the
   * storage (for every tab sharing it), without calling `onSignInRequired`.
   * The clearing waits for a refresh under way (here, and under the Web Lock
   * in other tabs), so that the refresh cannot store its pair again
   * afterwards. Later calls reject with `SignInRequiredError('signed_out')`
   * until {@link TokenManager.setTokens}. To end the session at latchkey
   * too, send the browser to the `end_session_endpoint` (or
   * `POST {issuer}/logout` with the access token) before calling this.
   *
   * @throws {@link LatchkeyError} `storage_error` when the storage's `clear`
   *   throws (`cause` holds its error); this manager is signed out anyway
   */
  async signOut(): Promise<void> {
    this.#generation++;
    this.#signedOut = 'signed_out';
    this.#pending = null;
    await this.#exclusive(() => this.#replaceStored(null));
  }

  #throwIfSignedOut(): void {
    if (this.#signedOut !== null) throw new SignInRequiredError(this.#signedOut);
  }

  /** Whether `tokens` is valid for the margin, capped at half the token's lifetime where it is known. */
  #isFresh(tokens: TokenSet): boolean {
    let margin = this.#margin;
    if (tokens.received_at !== undefined) {
      margin = Math.min(margin, Math.max(0, (tokens.expires_at - tokens.received_at) / 2));
    }
    return tokens.expires_at - nowInSeconds() >= margin;
  }

  /**
   * Runs `work` after this manager's earlier writes and any refresh under way
   * here, under the Web Lock: a write that no refresh can overtake.
   */
  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#writes.then(async () => {
      await this.#refreshing?.then(ignore, ignore);
      return this.#underLock(work);
    });
    this.#writes = run.then(ignore, ignore);
    return run;
  }

  /**
   * Runs `work` holding the Web Lock (where there is one). When the lock
   * cannot be had in time (another tab hangs holding it) or at all, `work`
   * runs without it, as on platforms without Web Locks.
   */
  async #underLock<T>(work: () => Promise<T>): Promise<T> {
    const locks = this.#locks;
    if (!locks) return work();
    let granted = false;
    const wait = deadline(this.#timeoutMs * LOCK_WAIT_FACTOR);
    try {
      return await locks.request(this.#lockName, { signal: wait.signal }, () => {
        granted = true;
        wait.done();
        return work();
      });
    } catch (error) {
      if (granted) throw error;
      return work();
    } finally {
      wait.done();
    }
  }

  /**
   * Replaces (or, with null, clears) the stored tokens, inside the lock. When
   * that changes the stored refresh token, holds its rotation marker, so that
   * a tab whose view of the storage lags waits to see the change.
   */
  async #replaceStored(next: TokenSet | null): Promise<void> {
    let previous: string | undefined;
    try {
      previous = (await this.#storage.load())?.refresh_token;
    } catch {
      previous = undefined;
    }
    try {
      if (next) await this.#storage.save(next);
      else await this.#storage.clear();
    } catch (cause) {
      throw storageError(cause, next ? 'save' : 'clear');
    }
    if (previous !== undefined && previous !== next?.refresh_token) await this.#markRotated(previous);
  }

  /** The storage's tokens, read as they are (storage errors as `storage_error`). */
  async #read(): Promise<TokenSet | null> {
    try {
      return await this.#storage.load();
    } catch (cause) {
      throw storageError(cause, 'load');
    }
  }

  /**
   * The tokens to use given what the storage holds: a pair that could not be
   * saved while the storage still shows its predecessor, else the stored ones.
   */
  #effective(stored: TokenSet | null): TokenSet | null {
    const pending = this.#pending;
    if (!pending) return stored;
    if (stored !== null && stored.refresh_token === pending.predecessor) return pending.tokens;
    // The storage moved on (saved after all, another tab, a sign-in or sign-out): it wins.
    this.#pending = null;
    return stored;
  }

  /** The tokens to use; none stored is the signed-out state. */
  async #load(): Promise<TokenSet> {
    const tokens = this.#effective(await this.#read());
    this.#throwIfSignedOut();
    if (!tokens) throw await this.#enterSignedOut('signed_out', null, true);
    return tokens;
  }

  /**
   * Tokens to call with, and the generation they belong to: the stored ones
   * when fresh (and not `failed`, which an API answered 401 `token_expired`),
   * else a refresh's. When the refresh fails for now, the stored tokens while
   * their access token has not expired (and is not `failed`).
   */
  async #usable(failed: string | undefined): Promise<{ tokens: TokenSet; generation: number }> {
    for (;;) {
      this.#throwIfSignedOut();
      // setTokens and signOut of this manager go first (also those queued while waiting).
      for (let writes = this.#writes; ; writes = this.#writes) {
        await writes;
        if (writes === this.#writes) break;
      }
      this.#throwIfSignedOut();
      const generation = this.#generation;
      const stored = await this.#load();
      if (stored.access_token !== failed && this.#isFresh(stored)) return { tokens: stored, generation };
      let refreshed: Refreshed;
      try {
        refreshed = await this.#refresh(failed ?? stored.access_token, generation);
        // A refresh already in flight may have settled on the very token that failed.
        if (failed !== undefined && refreshed !== SUPERSEDED && refreshed.access_token === failed) {
          refreshed = await this.#refresh(failed, generation);
        }
      } catch (error) {
        if (!(error instanceof LatchkeyError)) throw error;
        const current = await this.#load().catch((e: unknown) => {
          if (e instanceof LatchkeyError) return undefined;
          throw e;
        });
        if (current && current.access_token !== failed && current.expires_at > nowInSeconds()) {
          return { tokens: current, generation };
        }
        throw error;
      }
      if (refreshed !== SUPERSEDED) return { tokens: refreshed, generation };
    }
  }

  /** After a 401 (with `code`): signs out on `session_revoked` or `account_disabled`, else returns `response`. */
  async #unlessRevoked(response: Response, code: string | undefined, token: string, generation: number): Promise<Response> {
    if (code !== 'session_revoked' && code !== 'account_disabled') return response;
    // The tokens were replaced by a new sign-in since: not this one's end.
    if (this.#signedOut === null && generation !== this.#generation) return response;
    await response.body?.cancel().catch(ignore);
    this.#throwIfSignedOut();
    throw await this.#enterSignedOut(code, { access_token: token }, false);
  }

  /**
   * Enters the signed-out state (once: a caller that finds it entered gets
   * its error), clears the storage when it still holds tokens of the rejected
   * session (compared by the access token's `sid`; not a new sign-in another
   * tab stored), and calls the handler. `locked`: the caller holds the lock
   * (or there is nothing to clear); otherwise the clearing takes it.
   */
  async #enterSignedOut(
    reason: SignInReason,
    rejected: Partial<TokenSet> | null,
    locked: boolean,
  ): Promise<SignInRequiredError> {
    if (this.#signedOut !== null) return new SignInRequiredError(this.#signedOut);
    this.#signedOut = reason;
    this.#pending = null;
    const generation = ++this.#generation;
    const error = new SignInRequiredError(reason);
    if (rejected !== null) {
      const clear = async () => {
        const stored = await this.#storage.load();
        if (stored !== null && sameSession(stored, rejected) && generation === this.#generation) {
          await this.#storage.clear();
        }
      };
      try {
        await (locked ? clear() : this.#exclusive(clear));
      } catch (e) {
        // A failing storage must not hide that the user has to sign in.
        report(e, 'the token storage failed while clearing the tokens of an ended session');
      }
    }
    if (this.#onSignInRequired && generation === this.#generation) {
      try {
        this.#onSignInRequired(error);
      } catch (e) {
        report(e, 'onSignInRequired threw');
      }
    }
    return error;
  }

  /**
   * Joins the refresh in flight, or starts one for the tokens of `generation`
   * (those the caller loaded: a sign-in or sign-out since makes it moot).
   */
  #refresh(stale: string, generation: number): Promise<Refreshed> {
    if (!this.#refreshing) {
      this.#refreshing = this.#underLock(() => this.#refreshNow(stale, generation)).finally(() => {
        this.#refreshing = null;
      });
    }
    return this.#refreshing;
  }

  /**
   * One refresh (inside the Web Lock where there is one). Reads the storage
   * first: tokens another tab stored meanwhile are used as they are.
   *
   * A tab's view of `localStorage` may lag behind another tab's write (in
   * Chromium each renderer process keeps a copy that is updated
   * asynchronously), so the lock alone does not show a tab that its refresh
   * token was just rotated (or cleared, or replaced by a sign-in). The tab
   * that changed it therefore holds a second lock named after the old token
   * (its fingerprint) for a few seconds; the Web Locks state is kept in one
   * place, so a tab that gets the refresh lock next sees that marker, and
   * waits for its storage to catch up instead of sending the old token again.
   */
  async #refreshNow(stale: string, generation: number): Promise<Refreshed> {
    let stored = await this.#load();
    if (generation !== this.#generation) return SUPERSEDED;
    if (stored.access_token !== stale && this.#isFresh(stored)) return stored;
    const locks = this.#locks;
    if (locks?.query && stored.refresh_token) {
      const marker = await this.#rotationMarker(stored.refresh_token);
      const newer = marker === undefined ? undefined : await this.#rotatedElsewhere(locks, marker, stored.refresh_token);
      if (newer) {
        if (this.#isFresh(newer)) return newer;
        stored = newer;
      }
    }
    const spent = stored.refresh_token;
    if (!spent) throw await this.#enterSignedOut('signed_out', stored, true);
    if (this.#pause !== null && Date.now() < this.#pause.until) throw this.#pause.error;

    let outcome = await this.#exchange(spent);
    if (outcome.kind === 'unsure') {
      // latchkey may have rotated the token and the answer was lost: its grace
      // window answers the same refresh with the same pair.
      this.#throwIfSignedOut();
      if (generation !== this.#generation) return SUPERSEDED;
      outcome = await this.#exchange(spent);
    }
    // Signed in again or out while this was under way: the newer state wins.
    this.#throwIfSignedOut();
    if (generation !== this.#generation) return SUPERSEDED;

    if (outcome.kind === 'tokens') {
      this.#pause = null;
      return this.#keep(outcome.tokens, spent, generation);
    }
    if (outcome.kind === 'unsure') throw outcome.error;
    const { response, answer } = outcome;
    const error = typeof answer?.error === 'string' ? answer.error : undefined;
    if (response.status === 400 && error === 'invalid_grant') {
      throw await this.#enterSignedOut('invalid_grant', stored, true);
    }
    const code = typeof answer?.code === 'string' ? answer.code : (error ?? `http_${response.status}`);
    const description =
      typeof answer?.error_description === 'string'
        ? answer.error_description
        : `The token endpoint answered ${response.status}`;
    const retryAfter = parseRetryAfter(response.headers.get('retry-after'));
    const failure = new LatchkeyError(response.status, code, description, retryAfter === undefined ? {} : { retryAfter });
    let pauseMs = 0;
    if ((response.status === 429 || response.status === 503) && retryAfter !== undefined) {
      pauseMs = Math.min(retryAfter, RETRY_AFTER_CAP_SECONDS) * 1000;
    } else if (CLIENT_ERRORS.has(code) || (error !== undefined && CLIENT_ERRORS.has(error))) {
      pauseMs = CLIENT_ERROR_PAUSE_MS;
    }
    this.#pause = pauseMs > 0 ? { until: Date.now() + pauseMs, error: failure } : null;
    throw failure;
  }

  /** One request to the token endpoint, with a timeout (the body is read within it too). */
  async #exchange(refreshToken: string): Promise<Exchange> {
    const body = new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: this.#clientId,
    });
    const headers: Record<string, string> = {
      'Content-Type': 'application/x-www-form-urlencoded',
      Accept: 'application/json',
    };
    if (this.#clientSecret !== undefined) {
      headers.Authorization = basicCredentials(this.#clientId, this.#clientSecret);
    }
    const timeout = deadline(this.#timeoutMs);
    try {
      return await this.#exchangeWithin(timeout.signal, headers, body);
    } finally {
      timeout.done();
    }
  }

  async #exchangeWithin(signal: AbortSignal, headers: Record<string, string>, body: URLSearchParams): Promise<Exchange> {
    const timedOut = (cause: unknown) =>
      new LatchkeyError(0, 'timeout', `The token endpoint did not answer within ${this.#timeoutMs / 1000} s`, { cause });
    let response: Response;
    try {
      response = await this.#fetch(this.#tokenEndpoint, { method: 'POST', headers, body, signal });
    } catch (cause) {
      const error = signal.aborted
        ? timedOut(cause)
        : new LatchkeyError(0, 'network_error', `The token endpoint could not be reached: ${String(cause)}`, { cause });
      return { kind: 'unsure', error };
    }
    let answer: Record<string, unknown> | undefined;
    let unreadable: { cause: unknown } | undefined;
    try {
      const parsed: unknown = await response.json();
      if (parsed !== null && typeof parsed === 'object') answer = parsed as Record<string, unknown>;
    } catch (cause) {
      unreadable = { cause };
    }
    if (!response.ok) return { kind: 'refused', response, answer };
    if (unreadable && signal.aborted) return { kind: 'unsure', error: timedOut(unreadable.cause) };
    try {
      if (unreadable) throw unreadable.cause;
      return { kind: 'tokens', tokens: tokenSetFrom(answer as unknown as TokenEndpointResponse) };
    } catch (cause) {
      return {
        kind: 'unsure',
        error: new LatchkeyError(response.status, 'invalid_response', 'The token endpoint answered no usable tokens', {
          cause,
        }),
      };
    }
  }

  /**
   * Stores a refreshed pair, unless the storage no longer holds the refresh
   * token `spent`: empty means another tab signed out (this one follows),
   * other tokens mean another tab signed in or refreshed (those are used).
   * A pair the storage cannot save is kept in memory and the failure reported.
   */
  async #keep(tokens: TokenSet, spent: string, generation: number): Promise<Refreshed> {
    // RFC 6749 §6: without a new refresh token, the old one stays valid.
    if (tokens.refresh_token === undefined) tokens.refresh_token = spent;
    let raw: TokenSet | null | undefined;
    try {
      raw = await this.#storage.load();
    } catch (cause) {
      raw = undefined; // unreadable: try to save all the same
      report(storageError(cause, 'load'), 'the token storage failed');
    }
    this.#throwIfSignedOut();
    if (generation !== this.#generation) return SUPERSEDED;
    const current = raw === undefined ? undefined : this.#effective(raw);
    if (current === null) throw await this.#enterSignedOut('signed_out', null, true);
    if (current !== undefined && current.refresh_token !== spent) {
      return current.refresh_token === tokens.refresh_token ? current : SUPERSEDED;
    }
    const predecessor = raw?.refresh_token ?? (this.#pending?.tokens.refresh_token === spent ? this.#pending.predecessor : spent);
    try {
      await this.#storage.save(tokens);
      this.#pending = null;
    } catch (cause) {
      this.#pending = { tokens, predecessor };
      report(storageError(cause, 'save'), 'the token storage failed; the new tokens are kept in memory');
      return tokens;
    }
    if (tokens.refresh_token !== spent) await this.#markRotated(spent);
    return tokens;
  }

  /** The lock name that says "this refresh token was just rotated". */
  async #rotationMarker(refreshToken: string): Promise<string | undefined> {
    try {
      const print = await fingerprint(refreshToken);
      return print === undefined ? undefined : `${this.#lockName} rotated ${print}`;
    } catch {
      return undefined;
    }
  }

  /** Holds the rotation marker of `refreshToken` (where there are Web Locks and `crypto.subtle`). */
  async #markRotated(refreshToken: string): Promise<void> {
    const locks = this.#locks;
    if (!locks) return;
    const marker = await this.#rotationMarker(refreshToken);
    if (marker !== undefined) await holdMarker(locks, marker);
  }

  /**
   * When another tab holds the marker of `refreshToken`, the tokens it stored
   * once this tab's storage shows them (waiting at most MARKER_WAIT_MS);
   * otherwise undefined, and the caller refreshes (latchkey's grace window
   * answers a late duplicate with the same pair). Empty storage is a
   * sign-out in another tab.
   */
  async #rotatedElsewhere(locks: Locks, marker: string, refreshToken: string): Promise<TokenSet | undefined> {
    let held = false;
    try {
      held = ((await locks.query?.())?.held ?? []).some((lock) => lock.name === marker);
    } catch {
      held = false;
    }
    if (!held) return undefined;
    const deadline = Date.now() + MARKER_WAIT_MS;
    for (;;) {
      const tokens = this.#effective(await this.#read());
      this.#throwIfSignedOut();
      if (!tokens) throw await this.#enterSignedOut('signed_out', null, true);
      if (tokens.refresh_token !== refreshToken) return tokens;
      if (Date.now() >= deadline) return undefined;
      await sleep(MARKER_POLL_MS);
    }
  }

  /** Sends a copy of `request` (its body stays replayable) with the token, and `extra` init fields. */
  #send(request: Request, token: string, extra: RequestInit | undefined): Promise<Response> {
    const copy = request.clone();
    copy.headers.set('Authorization', `Bearer ${token}`);
    return extra === undefined ? this.#fetch(copy) : this.#fetch(copy, extra);
  }
}

/**
 * Takes the marker lock if nobody holds it (`ifAvailable`: never waits, so
 * the refresh lock is not held up) and resolves once it is held, so the Web
 * Locks state shows it before the refresh lock is released; releases it
 * MARKER_HOLD_MS later. Taken already: another tab marks the same change.
 */
function holdMarker(locks: Locks, marker: string): Promise<void> {
  return new Promise<void>((held) => {
    try {
      locks
        .request(marker, { ifAvailable: true }, (lock) => {
          held();
          return lock ? sleep(MARKER_HOLD_MS, true) : undefined;
        })
        .catch(() => held());
    } catch {
      held(); // no marker: a late tab may refresh too, which the grace window answers
    }
  });
}
