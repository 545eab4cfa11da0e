/**
 * latchkey-client: the token manager for applications signed in through
 * latchkey (SPEC §10). No runtime dependencies; ES modules; browsers and
 * Node 20.
 *
 * @packageDocumentation
 */

export { TokenManager, type Locks, type TokenManagerOptions } from './manager.js';
export {
  LocalStorageTokenStorage,
  MemoryTokenStorage,
  tokenSetFrom,
  type TokenEndpointResponse,
  type TokenSet,
  type StorageLike,
  type TokenStorage,
} from './tokens.js';
export { LatchkeyError, SignInRequiredError, latchkeyCode, type SignInReason } from './errors.js';
