/**
 * The two failures a {@link TokenManager} reports, and {@link latchkeyCode},
 * which reads latchkey's stable error `code` from any answer (SPEC §5).
 *
 * @packageDocumentation
 */

/**
 * Why the user must sign in again:
 *
 * - `invalid_grant`: the token endpoint refused the refresh token (expired,
 *   revoked, reused, or its session ended);
 * - `session_revoked`: an API answered 401 `session_revoked` (logout, password
 *   change, admin revoke, refresh-token reuse);
 * - `account_disabled`: an API answered 401 `account_disabled` (the user or the
 *   tenant is disabled);
 * - `signed_out`: there are no usable tokens: never signed in, {@link
 *   TokenManager.signOut} was called, or another tab cleared the shared storage.
 */
export type SignInReason = 'invalid_grant' | 'session_revoked' | 'account_disabled' | 'signed_out';

/**
 * The user must sign in again; no refresh or retry can help. Retrying the
 * call that failed sends nothing until new tokens are given to
 * {@link TokenManager.setTokens}.
 *
 * @example
 * ```ts
 * try {
 *   await manager.fetch('/api/documents');
 * } catch (error) {
 *   if (error instanceof SignInRequiredError) showSignIn(error.code);
 *   else throw error;
 * }
 * ```
 */
export class SignInRequiredError extends Error {
  /** Why; see {@link SignInReason}. */
  readonly code: SignInReason;

  /**
   * @param code - why the user must sign in again
   * @param message - defaults to a sentence naming `code`
   */
  constructor(code: SignInReason, message?: string) {
    super(message ?? SIGN_IN_MESSAGES[code]);
    this.name = 'SignInRequiredError';
    this.code = code;
  }
}

const SIGN_IN_MESSAGES: Record<SignInReason, string> = {
  invalid_grant: 'The refresh token was refused (invalid_grant): sign in again',
  session_revoked: 'The session has ended (session_revoked): sign in again',
  account_disabled: 'The account or tenant is disabled (account_disabled): sign in again',
  signed_out: 'Not signed in: sign in first',
};

/**
 * A call failed in a way that may pass; the stored tokens are kept and the
 * sign-in handler is not called. One of:
 *
 * - latchkey answered the refresh with 429 (`rate_limited`; see
 *   {@link LatchkeyError.retryAfter}), 503 (`store_unavailable`) or another
 *   5xx (`http_<status>`);
 * - latchkey refused the client itself (`invalid_client`,
 *   `unauthorized_client`, `unsupported_grant_type`: a configuration error);
 * - the token endpoint answered 200 without usable tokens
 *   (`invalid_response`), could not be reached (`network_error`, status 0),
 *   or did not answer in time (`timeout`, status 0); the manager has already
 *   sent the same refresh once more before reporting either;
 * - the application's {@link TokenStorage} threw (`storage_error`, status 0).
 *
 * The underlying error, where there is one, is in `cause`. After a 429 or 503
 * with `Retry-After`, and for 30 seconds after a refused client, the manager
 * answers refreshes with the same error without sending anything.
 */
export class LatchkeyError extends Error {
  /** The HTTP status of the token endpoint's answer; 0 when there was none (also for `storage_error`). */
  readonly status: number;
  /**
   * latchkey's `code` (`rate_limited`, `store_unavailable`,
   * `invalid_client`, …), else the OAuth `error`, else `network_error`,
   * `timeout`, `invalid_response`, `storage_error` or `http_<status>`.
   */
  readonly code: string;
  /**
   * Seconds from a `Retry-After` header (429, 503; delay-seconds or an
   * HTTP-date), when one was sent.
   */
  readonly retryAfter: number | undefined;

  /**
   * @param status - HTTP status, 0 when no answer arrived
   * @param code - see {@link LatchkeyError.code}
   * @param message - a description (latchkey's `error_description` when given)
   * @param options - `cause`: the underlying error; `retryAfter`: seconds
   */
  constructor(status: number, code: string, message: string, options?: { cause?: unknown; retryAfter?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LatchkeyError';
    this.status = status;
    this.code = code;
    this.retryAfter = options?.retryAfter;
  }
}

/**
 * latchkey's stable error `code` (SPEC §5) of an answer, or `undefined` for a
 * success or an answer that names none.
 *
 * Read, in this order, from a copy of the answer (`response.clone()`, so the
 * caller can still read the body):
 *
 * 1. the JSON body's `code` (problem+json from resource and admin endpoints;
 *    RFC 6749 §5.2 JSON from the OAuth endpoints), else its OAuth `error`;
 * 2. the `WWW-Authenticate: Bearer` challenge, for APIs that send no body:
 *    no `error` attribute is `token_missing`; `error="invalid_token"` is
 *    `token_expired` when `error_description` is "The access token expired"
 *    (and `session_revoked`, `account_disabled`, `token_not_yet_valid`,
 *    `token_wrong_audience` for latchkey's other descriptions), else
 *    `token_invalid`; `error="insufficient_scope"` is `insufficient_scope`
 *    with a `scope` attribute and `forbidden` without; any other `error` is
 *    returned as it is.
 *
 * Never throws: an unreadable body counts as no body.
 *
 * @example
 * ```ts
 * const response = await fetch(userinfoUrl, { headers: { Authorization: `Bearer ${token}` } });
 * if (response.status === 401 && (await latchkeyCode(response)) === 'token_expired') {
 *   // refresh, then try once more
 * }
 * ```
 */
export async function latchkeyCode(response: Response): Promise<string | undefined> {
  if (response.status < 400) return undefined;
  const fromBody = await codeFromBody(response);
  if (fromBody !== undefined) return fromBody;
  return codeFromChallenge(response.headers.get('www-authenticate'));
}

async function codeFromBody(response: Response): Promise<string | undefined> {
  const type = (response.headers.get('content-type') ?? '').toLowerCase();
  if (!type.includes('json') || response.bodyUsed) return undefined;
  try {
    const body: unknown = await response.clone().json();
    if (body === null || typeof body !== 'object') return undefined;
    const { code, error } = body as { code?: unknown; error?: unknown };
    if (typeof code === 'string' && code !== '') return code;
    if (typeof error === 'string' && error !== '') return error;
  } catch {
    // Not JSON after all, or the body could not be read: no code from it.
  }
  return undefined;
}

/**
 * latchkey's `error_description` texts for `invalid_token`, which its
 * src/error.rs copies into the challenge: src/authn/tokens.rs (`TokenError`:
 * expired, not yet valid, another tenant, signature) and
 * src/service/token_check.rs (`token_error`, and `check_access_state`: session
 * ended, account or tenant disabled); src/api/me.rs (userinfo: the user no
 * longer exists, `session_revoked`).
 */
const INVALID_TOKEN_DESCRIPTIONS: ReadonlyArray<[RegExp, string]> = [
  [/^the access token expired$/i, 'token_expired'],
  [/^the session of this token has ended$/i, 'session_revoked'],
  [/^the user no longer exists$/i, 'session_revoked'],
  [/^the account or tenant is disabled$/i, 'account_disabled'],
  [/^the access token is not yet valid$/i, 'token_not_yet_valid'],
  [/^the access token was issued by another tenant$/i, 'token_wrong_audience'],
];

function codeFromChallenge(header: string | null): string | undefined {
  if (!header) return undefined;
  const params = bearerParams(header);
  if (!params) return undefined;
  const error = params.get('error');
  if (error === undefined) return 'token_missing';
  if (error === 'invalid_token') {
    const description = (params.get('error_description') ?? '').trim();
    for (const [pattern, code] of INVALID_TOKEN_DESCRIPTIONS) {
      if (pattern.test(description)) return code;
    }
    return 'token_invalid';
  }
  if (error === 'insufficient_scope') return params.has('scope') ? 'insufficient_scope' : 'forbidden';
  return error;
}

/**
 * The auth-params of the `Bearer` challenge in a `WWW-Authenticate` value
 * (RFC 9110 §11.6.1), or `undefined` when there is no Bearer challenge.
 */
function bearerParams(header: string): Map<string, string> | undefined {
  const token = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;
  const param = /\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([!#$%&'*+.^_`|~0-9A-Za-z-]+))\s*/y;
  let at = 0;
  while (at < header.length) {
    // A challenge: its scheme, then auth-params separated by commas.
    while (at < header.length && /[\s,]/.test(header[at]!)) at++;
    token.lastIndex = at;
    const scheme = token.exec(header);
    if (!scheme) return undefined;
    at = token.lastIndex;
    const params = new Map<string, string>();
    for (;;) {
      param.lastIndex = at;
      const match = param.exec(header);
      if (!match) {
        // token68 or nothing: skip to the next comma.
        const comma = header.indexOf(',', at);
        at = comma < 0 ? header.length : comma + 1;
        break;
      }
      const value = match[2] !== undefined ? match[2].replace(/\\(.)/g, '$1') : match[3]!;
      params.set(match[1]!.toLowerCase(), value);
      at = param.lastIndex;
      if (header[at] !== ',') break;
      at++;
      // A comma followed by `scheme ` (no `=`) starts the next challenge.
      const rest = header.slice(at);
      if (/^\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+\s+[^=\s,]/.test(rest) || /^\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*(,|$)/.test(rest)) break;
    }
    if (scheme[0].toLowerCase() === 'bearer') return params;
  }
  return undefined;
}
