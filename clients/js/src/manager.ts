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
   * many seconds, refreshing ahead of expiry (default 60). Keep it well below
   * the tenant's access-token lifetime (15 minutes by default): a token that
   * lives shorter than the margin is refreshed on every call.
   */
  refreshMarginSeconds?: number;
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
   * The Web Locks name under which tabs of one origin refresh one at a time
   * (default `latchkey-refresh ${tokenEndpoint} ${clientId}`).
   */
  lockName?: string;
}

type Fetch = (input: Request | string | URL, init?: RequestInit) => Promise<Response>;

/** The Web Locks API, where the platform has one (browsers; not Node 20). */
interface Locks {
  request<T>(name: string, callback: () => Promise<T>): Promise<T>;
  query?(): Promise<{ held?: Array<{ name?: string }> }>;
}

function webLocks(): Locks | undefined {
  const locks = (globalThis as { navigator?: { locks?: Partial<Locks> } }).navigator?.locks;
  return locks && typeof locks.request === 'function' ? (locks as Locks) : undefined;
}

/**
 * How long a tab that refreshed holds its rotation marker, and how long a tab
 * that finds one waits for the shared storage to show the new tokens.
 */
const MARKER_HOLD_MS = 3_000;
const MARKER_WAIT_MS = 1_000;
const MARKER_POLL_MS = 10;

/** Resolves after `ms`; `detached`: the timer never keeps a Node process alive. */
const sleep = (ms: number, detached = false) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms) as unknown as { unref?: () => void };
    if (detached) timer.unref?.();
  });

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

function report(error: unknown): void {
  const reportError = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof reportError === 'function') reportError(error);
  else console.error('latchkey-client: onSignInRequired threw', error);
}

/**
 * Holds the tokens of one sign-in and hands out access tokens that work:
 *
 * - {@link TokenManager.accessToken} returns a token valid for at least
 *   `refreshMarginSeconds`, refreshing ahead of expiry;
 * - any number of concurrent callers share **one** refresh in flight; in
 *   browsers with the Web Locks API, tabs sharing a
 *   {@link LocalStorageTokenStorage} refresh one at a time, and a tab that
 *   finds a fresh token stored by another sends nothing;
 * - {@link TokenManager.fetch} adds `Authorization: Bearer`, and after a 401
 *   `token_expired` refreshes once and retries once — never more;
 * - an `invalid_grant` refresh, or a 401 `session_revoked` or
 *   `account_disabled`, clears the stored tokens, calls `onSignInRequired`
 *   once and rejects with {@link SignInRequiredError}; from then on every call
 *   rejects at once, without a request, until {@link TokenManager.setTokens}.
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
  readonly #onSignInRequired: ((error: SignInRequiredError) => void) | undefined;
  readonly #fetch: Fetch;
  readonly #lockName: string;
  /** The refresh in flight in this page or process; all callers share it. */
  #refreshing: Promise<TokenSet> | null = null;
  /** Set while signed out: why. Cleared by setTokens. */
  #signedOut: SignInReason | null = null;
  /** Counts sign-ins and sign-outs: an answer to an older one is not applied. */
  #generation = 0;

  /**
   * @param options - see {@link TokenManagerOptions}
   * @throws TypeError when `clientId` is empty, neither `issuer` nor
   *   `tokenEndpoint` is given, `refreshMarginSeconds` is negative or not a
   *   number, or there is no `fetch`
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
    const custom = options.fetch;
    if (!custom && typeof globalThis.fetch !== 'function') {
      throw new TypeError('TokenManager needs fetch: pass options.fetch');
    }
    this.#tokenEndpoint = tokenEndpoint;
    this.#clientId = options.clientId;
    this.#clientSecret = options.clientSecret;
    this.#storage = options.storage ?? new MemoryTokenStorage();
    this.#margin = margin;
    this.#onSignInRequired = options.onSignInRequired;
    // Called with globalThis as `this`: a browser's own fetch refuses any other.
    this.#fetch = custom
      ? (input, init) => custom.call(globalThis, input, init)
      : (input, init) => globalThis.fetch(input, init);
    this.#lockName = options.lockName ?? `latchkey-refresh ${tokenEndpoint} ${options.clientId}`;
  }

  /**
   * Stores the tokens of a new sign-in (a {@link TokenSet}, or the JSON of a
   * token endpoint answer) and leaves the signed-out state.
   *
   * @throws TypeError when `tokens` is neither a token set nor a token
   *   response; whatever the storage's `save` throws
   */
  async setTokens(tokens: TokenSet | TokenEndpointResponse): Promise<void> {
    const set = isTokenSet(tokens) ? copyTokenSet(tokens) : tokenSetFrom(tokens as TokenEndpointResponse);
    this.#generation++;
    await this.#storage.save(set);
    this.#signedOut = null;
  }

  /**
   * An access token valid for at least `refreshMarginSeconds` (or, when the
   * tenant's tokens live shorter than that, the newest one). Refreshes when
   * the stored one expires within the margin; concurrent callers share one
   * refresh.
   *
   * @throws {@link SignInRequiredError} when the user must sign in again:
   *   `invalid_grant` (the refresh was refused), `signed_out` (no tokens, or
   *   no refresh token and the access token is expiring), or the reason the
   *   manager was signed out for
   * @throws {@link LatchkeyError} when the refresh failed for now (429, 503,
   *   `invalid_client`, network); the tokens are kept
   */
  async accessToken(): Promise<string> {
    this.#throwIfSignedOut();
    const stored = await this.#load();
    if (this.#isFresh(stored)) return stored.access_token;
    return (await this.#refresh(stored.access_token)).access_token;
  }

  /**
   * `fetch` with `Authorization: Bearer <access token>`. A 401
   * `token_expired` answer causes one refresh (shared with every other
   * caller; none when another caller already replaced the token) and one
   * retry with the new token, whose answer is returned whatever it is. Any
   * other answer is returned unchanged. The request is built once
   * (`new Request(input, init)`), so its body is sent again on the retry.
   *
   * @throws {@link SignInRequiredError} on a 401 `session_revoked` or
   *   `account_disabled` (the tokens are cleared and `onSignInRequired` is
   *   called once), and as {@link TokenManager.accessToken} does
   * @throws {@link LatchkeyError} when a needed refresh failed for now
   * @throws whatever `fetch` throws for the request itself (network, abort)
   */
  async fetch(input: Request | string | URL, init?: RequestInit): Promise<Response> {
    this.#throwIfSignedOut();
    const request = new Request(input, init);
    const generation = this.#generation;
    const token = await this.accessToken();
    const response = await this.#send(request, token);
    if (response.status !== 401) return response;
    const code = await latchkeyCode(response);
    if (code === 'token_expired') {
      await response.body?.cancel().catch(() => {});
      const replaced = await this.#replace(token);
      return this.#send(request, replaced.access_token);
    }
    if (code === 'session_revoked' || code === 'account_disabled') {
      this.#throwIfSignedOut();
      // The tokens were replaced by a new sign-in since: not this one's end.
      if (generation !== this.#generation) return response;
      throw await this.#enterSignedOut(code, { access_token: token });
    }
    return response;
  }

  /**
   * Signs out locally: clears the storage (for every tab sharing it) and
   * enters the signed-out state, without calling `onSignInRequired`. Later
   * calls reject with `SignInRequiredError('signed_out')` until
   * {@link TokenManager.setTokens}. To end the session at latchkey too, send
   * the browser to the `end_session_endpoint` (or `POST {issuer}/logout`
   * with the access token) before calling this.
   *
   * @throws whatever the storage's `clear` throws
   */
  async signOut(): Promise<void> {
    this.#generation++;
    this.#signedOut = 'signed_out';
    await this.#storage.clear();
  }

  #throwIfSignedOut(): void {
    if (this.#signedOut !== null) throw new SignInRequiredError(this.#signedOut);
  }

  #isFresh(tokens: TokenSet): boolean {
    return tokens.expires_at - nowInSeconds() >= this.#margin;
  }

  /** The stored tokens; none stored is the signed-out state. */
  async #load(): Promise<TokenSet> {
    const tokens = await this.#storage.load();
    this.#throwIfSignedOut();
    if (!tokens) throw await this.#enterSignedOut('signed_out', null);
    return tokens;
  }

  /**
   * Enters the signed-out state (once: a caller that finds it entered gets
   * its error), clears the storage when it still holds the rejected tokens
   * (not a newer sign-in another tab stored), and calls the handler.
   */
  async #enterSignedOut(reason: SignInReason, rejected: Partial<TokenSet> | null): Promise<SignInRequiredError> {
    if (this.#signedOut !== null) return new SignInRequiredError(this.#signedOut);
    this.#signedOut = reason;
    const generation = ++this.#generation;
    const error = new SignInRequiredError(reason);
    if (rejected !== null) {
      try {
        const stored = await this.#storage.load();
        const same =
          stored !== null &&
          ((rejected.access_token !== undefined && stored.access_token === rejected.access_token) ||
            (rejected.refresh_token !== undefined && stored.refresh_token === rejected.refresh_token));
        if (same && generation === this.#generation) await this.#storage.clear();
      } catch (e) {
        // A failing storage must not hide that the user has to sign in.
        report(e);
      }
    }
    if (this.#onSignInRequired && generation === this.#generation) {
      try {
        this.#onSignInRequired(error);
      } catch (e) {
        report(e);
      }
    }
    return error;
  }

  /**
   * Tokens to use instead of `failed`, which an API answered 401
   * `token_expired`: those another caller already stored, else a refresh.
   */
  async #replace(failed: string): Promise<TokenSet> {
    const stored = await this.#load();
    if (stored.access_token !== failed && this.#isFresh(stored)) return stored;
    let tokens = await this.#refresh(failed);
    // A refresh already in flight may have settled on the very token that failed.
    if (tokens.access_token === failed) tokens = await this.#refresh(failed);
    return tokens;
  }

  /** Joins the refresh in flight, or starts one. */
  #refresh(stale: string): Promise<TokenSet> {
    if (!this.#refreshing) {
      const locks = webLocks();
      const run = locks
        ? locks.request(this.#lockName, () => this.#refreshNow(stale, locks))
        : this.#refreshNow(stale, undefined);
      this.#refreshing = run.finally(() => {
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
   * token was just rotated. The tab that refreshed therefore holds a second
   * lock named after the old token (its fingerprint) for a few seconds; the
   * Web Locks state is kept in one place, so a tab that gets the refresh lock
   * next sees that marker, and waits for its storage to catch up instead of
   * sending the old token again.
   */
  async #refreshNow(stale: string, locks: Locks | undefined): Promise<TokenSet> {
    const generation = this.#generation;
    const stored = await this.#load();
    if (stored.access_token !== stale && this.#isFresh(stored)) return stored;
    if (!stored.refresh_token) throw await this.#enterSignedOut('signed_out', stored);
    const marker = locks?.query ? await this.#rotationMarker(stored.refresh_token) : undefined;
    if (locks && marker !== undefined) {
      const newer = await this.#rotatedElsewhere(locks, marker, stored.refresh_token);
      if (newer) return newer;
    }

    const body = new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: stored.refresh_token,
      client_id: this.#clientId,
    });
    const headers: Record<string, string> = {
      'Content-Type': 'application/x-www-form-urlencoded',
      Accept: 'application/json',
    };
    if (this.#clientSecret !== undefined) {
      headers.Authorization = basicCredentials(this.#clientId, this.#clientSecret);
    }
    let response: Response;
    try {
      response = await this.#fetch(this.#tokenEndpoint, { method: 'POST', headers, body });
    } catch (cause) {
      throw new LatchkeyError(0, 'network_error', `The token endpoint could not be reached: ${String(cause)}`, {
        cause,
      });
    }
    let answer: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = await response.json();
      if (parsed !== null && typeof parsed === 'object') answer = parsed as Record<string, unknown>;
    } catch {
      answer = undefined;
    }
    // Signed in again or out while this was under way: the newer state wins.
    if (generation !== this.#generation) return this.#load();

    if (response.ok) {
      let tokens: TokenSet;
      try {
        tokens = tokenSetFrom(answer as unknown as TokenEndpointResponse);
      } catch (cause) {
        throw new LatchkeyError(response.status, 'invalid_response', 'The token endpoint answered no usable tokens', {
          cause,
        });
      }
      // RFC 6749 §6: without a new refresh token, the old one stays valid.
      if (tokens.refresh_token === undefined) tokens.refresh_token = stored.refresh_token;
      await this.#storage.save(tokens);
      if (locks && marker !== undefined && tokens.refresh_token !== stored.refresh_token) {
        await holdMarker(locks, marker);
      }
      return tokens;
    }
    const error = typeof answer?.error === 'string' ? answer.error : undefined;
    if (response.status === 400 && error === 'invalid_grant') {
      throw await this.#enterSignedOut('invalid_grant', stored);
    }
    const code = typeof answer?.code === 'string' ? answer.code : (error ?? `http_${response.status}`);
    const description =
      typeof answer?.error_description === 'string'
        ? answer.error_description
        : `The token endpoint answered ${response.status}`;
    const retryAfter = Number.parseInt(response.headers.get('retry-after') ?? '', 10);
    throw new LatchkeyError(response.status, code, description, {
      ...(Number.isFinite(retryAfter) ? { retryAfter } : {}),
    });
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

  /**
   * When another tab holds the marker of `refreshToken`, the tokens it stored
   * once this tab's storage shows them (waiting at most MARKER_WAIT_MS);
   * otherwise undefined, and the caller refreshes (latchkey's grace window
   * answers a late duplicate with the same pair).
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
      const tokens = await this.#storage.load();
      this.#throwIfSignedOut();
      if (tokens && tokens.refresh_token !== refreshToken) return tokens;
      if (Date.now() >= deadline) return undefined;
      await sleep(MARKER_POLL_MS);
    }
  }

  /** Sends a copy of `request` (its body stays replayable) with the token. */
  #send(request: Request, token: string): Promise<Response> {
    const copy = request.clone();
    copy.headers.set('Authorization', `Bearer ${token}`);
    return this.#fetch(copy);
  }
}

/**
 * Takes the marker lock and resolves once it is held (so the Web Locks state
 * shows it before the refresh lock is released); releases it MARKER_HOLD_MS
 * later.
 */
function holdMarker(locks: Locks, marker: string): Promise<void> {
  return new Promise<void>((held) => {
    try {
      locks
        .request(marker, () => {
          held();
          return sleep(MARKER_HOLD_MS, true);
        })
        .catch(() => held());
    } catch {
      held(); // no marker: a late tab may refresh too, which the grace window answers
    }
  });
}
