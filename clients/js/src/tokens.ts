/**
 * Token sets and where they are kept.
 *
 * @packageDocumentation
 */

/**
 * The tokens of one sign-in, as a {@link TokenManager} keeps them.
 * `expires_at` is absolute (Unix seconds), so a stored set means the same
 * thing after a reload or in another tab.
 */
export interface TokenSet {
  /** The bearer token for APIs (a JWT; treat it as opaque). */
  access_token: string;
  /** Absent when the client has no `refresh_token` grant. */
  refresh_token?: string;
  /** When `access_token` expires, in Unix seconds. */
  expires_at: number;
  /** The OpenID Connect ID token, when `openid` was granted. */
  id_token?: string;
  /** The granted scopes, space separated. */
  scope?: string;
  /**
   * When the token endpoint's answer arrived, in Unix seconds (set by
   * {@link tokenSetFrom}). With `expires_at` it gives the token's lifetime,
   * which caps the refresh margin at half of it. Optional: sets stored
   * without it (older versions, your own code) load and work as before.
   */
  received_at?: number;
}

/**
 * A successful answer of the token endpoint (RFC 6749 §5.1), as latchkey
 * sends it for every grant.
 */
export interface TokenEndpointResponse {
  /** The bearer token for APIs. */
  access_token: string;
  /** Always `Bearer` at latchkey. */
  token_type?: string;
  /** Lifetime of `access_token` in seconds from the answer. */
  expires_in: number;
  /** Present when the client has the `refresh_token` grant. */
  refresh_token?: string;
  /** Present when `openid` was granted. */
  id_token?: string;
  /** The granted scopes, space separated. */
  scope?: string;
}

/**
 * Turns a token endpoint answer into a {@link TokenSet}: `expires_in` becomes
 * the absolute `expires_at`, the time of the answer is `received_at`; absent
 * optional fields stay absent.
 *
 * @param response - the parsed JSON of a 200 answer of `/oauth/token`
 * @param nowSeconds - the time the answer arrived, Unix seconds (default: now)
 * @throws TypeError when `access_token` is not a non-empty string or
 *   `expires_in` is not a non-negative number
 *
 * @example
 * ```ts
 * const answer = await (await fetch(tokenEndpoint, { method: 'POST', body })).json();
 * const tokens = tokenSetFrom(answer); // { access_token, refresh_token, expires_at, received_at, ... }
 * ```
 */
export function tokenSetFrom(
  response: Pick<TokenEndpointResponse, 'access_token' | 'refresh_token' | 'expires_in' | 'id_token' | 'scope'>,
  nowSeconds: number = nowInSeconds(),
): TokenSet {
  if (response === null || typeof response !== 'object') {
    throw new TypeError('a token response must be an object');
  }
  const { access_token, refresh_token, expires_in, id_token, scope } = response;
  if (typeof access_token !== 'string' || access_token === '') {
    throw new TypeError('a token response needs a non-empty access_token');
  }
  if (typeof expires_in !== 'number' || !Number.isFinite(expires_in) || expires_in < 0) {
    throw new TypeError('a token response needs expires_in, a non-negative number of seconds');
  }
  const receivedAt = Math.floor(nowSeconds);
  const tokens: TokenSet = { access_token, expires_at: Math.floor(nowSeconds + expires_in) };
  if (typeof refresh_token === 'string' && refresh_token !== '') tokens.refresh_token = refresh_token;
  if (typeof id_token === 'string' && id_token !== '') tokens.id_token = id_token;
  if (typeof scope === 'string') tokens.scope = scope;
  tokens.received_at = receivedAt;
  return tokens;
}

/** Whether a value has the shape of a {@link TokenSet}. @internal */
export function isTokenSet(value: unknown): value is TokenSet {
  if (value === null || typeof value !== 'object') return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.access_token === 'string' &&
    v.access_token !== '' &&
    typeof v.expires_at === 'number' &&
    Number.isFinite(v.expires_at) &&
    (v.refresh_token === undefined || typeof v.refresh_token === 'string') &&
    (v.id_token === undefined || typeof v.id_token === 'string') &&
    (v.scope === undefined || typeof v.scope === 'string') &&
    (v.received_at === undefined || (typeof v.received_at === 'number' && Number.isFinite(v.received_at)))
  );
}

/** The fields of a {@link TokenSet}, without anything else the value carries. @internal */
export function copyTokenSet(tokens: TokenSet): TokenSet {
  const copy: TokenSet = { access_token: tokens.access_token, expires_at: tokens.expires_at };
  if (tokens.refresh_token !== undefined) copy.refresh_token = tokens.refresh_token;
  if (tokens.id_token !== undefined) copy.id_token = tokens.id_token;
  if (tokens.scope !== undefined) copy.scope = tokens.scope;
  if (tokens.received_at !== undefined) copy.received_at = tokens.received_at;
  return copy;
}

/** The current time in whole Unix seconds. @internal */
export function nowInSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * Where a {@link TokenManager} keeps its {@link TokenSet}. The manager reads
 * it before every use (nothing is cached beside it), so a storage shared by
 * several managers (tabs, processes) is seen by all of them. Methods may be
 * synchronous or return promises.
 */
export interface TokenStorage {
  /** The stored tokens, or `null` when there are none. */
  load(): TokenSet | null | Promise<TokenSet | null>;
  /**
   * Replaces the stored tokens. When it throws (a full `localStorage`, a
   * store that is down), the manager keeps a refreshed pair in memory and
   * reports the error; see {@link TokenManager}.
   */
  save(tokens: TokenSet): void | Promise<void>;
  /** Removes the stored tokens. */
  clear(): void | Promise<void>;
}

/**
 * Keeps the tokens in memory, for one page or one process: the default. A
 * reload forgets them (the user signs in again, which on latchkey's hosted
 * login page is usually a redirect without a form, through the browser's
 * session). Never throws.
 */
export class MemoryTokenStorage implements TokenStorage {
  #tokens: TokenSet | null = null;

  /** @param initial - tokens to start with */
  constructor(initial: TokenSet | null = null) {
    this.#tokens = initial ? { ...initial } : null;
  }

  load(): TokenSet | null {
    return this.#tokens ? { ...this.#tokens } : null;
  }

  save(tokens: TokenSet): void {
    this.#tokens = { ...tokens };
  }

  clear(): void {
    this.#tokens = null;
  }
}

/**
 * The part of the Web Storage API (`localStorage`, `sessionStorage`) that
 * {@link LocalStorageTokenStorage} uses.
 */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/**
 * Keeps the tokens in `localStorage` under one key as JSON, shared by all tabs
 * of the origin: a refresh in one tab is used by the others, and a sign-out in
 * one is seen by all. A stored value that is not a token set reads as none.
 *
 * Anything that runs script on the origin can read `localStorage`: use it
 * only under a strict Content-Security-Policy, or prefer
 * {@link MemoryTokenStorage}.
 *
 * @example
 * ```ts
 * const manager = new TokenManager({ issuer, clientId: 'spa', storage: new LocalStorageTokenStorage() });
 * ```
 */
export class LocalStorageTokenStorage implements TokenStorage {
  readonly #key: string;
  readonly #storage: StorageLike;

  /**
   * @param key - the `localStorage` key (default `latchkey.tokens`); use one
   *   per client when an origin holds several sign-ins
   * @param storage - a Web Storage (default `globalThis.localStorage`;
   *   `sessionStorage` keeps tokens per tab instead)
   * @throws TypeError when no storage is given and there is no
   *   `globalThis.localStorage` (Node)
   */
  constructor(
    key = 'latchkey.tokens',
    storage: StorageLike | undefined = (globalThis as { localStorage?: StorageLike }).localStorage,
  ) {
    if (!storage) {
      throw new TypeError('LocalStorageTokenStorage needs localStorage (a browser); use MemoryTokenStorage elsewhere');
    }
    this.#key = key;
    this.#storage = storage;
  }

  load(): TokenSet | null {
    const raw = this.#storage.getItem(this.#key);
    if (raw === null) return null;
    try {
      const value: unknown = JSON.parse(raw);
      return isTokenSet(value) ? value : null;
    } catch {
      return null;
    }
  }

  /** @throws DOMException (`QuotaExceededError`) when the storage is full */
  save(tokens: TokenSet): void {
    this.#storage.setItem(this.#key, JSON.stringify(tokens));
  }

  clear(): void {
    this.#storage.removeItem(this.#key);
  }
}
