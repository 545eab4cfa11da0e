#!/usr/bin/env python3
"""Delegated login (SPEC §9) as an unmodified authlib relying party sees it.

A confidential client runs the authorization code flow with PKCE (S256),
`state` and `nonce` against latchkey: discovery, the hosted login page driven
by a cookie-keeping `requests.Session` (the "browser"), the code exchange,
ID token validation by authlib itself (signature from `jwks_uri`, `iss`, `aud`,
`nonce`, `azp`, `at_hash`), userinfo, a refresh with a new ID token, RP-initiated
logout, and then proof that the session is over.

Inputs (environment): LK_ISSUER, LK_CLIENT_ID, LK_CLIENT_SECRET, LK_REDIRECT_URI,
LK_POST_LOGOUT_URI, LK_EMAIL, LK_PASSWORD. Prints one line per step; exits
non-zero on the first failure.
"""

import json
import os
import sys
import traceback
import warnings
from base64 import urlsafe_b64decode
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

# latchkey runs on plain http in the tests; authlib refuses that without this.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.base_client import BaseApp, OAuth2Mixin, OpenIDMixin  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402

NAME = "authlib"
SCOPE = "openid email offline_access"
TIMEOUT = 20


class Failure(Exception):
    pass


def step(message):
    print(f"{NAME}: {message}", flush=True)


def check(condition, message):
    if not condition:
        raise Failure(message)


def env(name):
    value = os.environ.get(name)
    if not value:
        raise Failure(f"environment variable {name} is not set")
    return value


class FormParser(HTMLParser):
    """The login form: its action and the values of its inputs, by name."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.action = None
        self.method = None
        self.inputs = {}
        self.input_types = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = attrs.get("action")
            self.method = (attrs.get("method") or "get").lower()
        elif tag == "input" and attrs.get("name"):
            self.inputs[attrs["name"]] = attrs.get("value") or ""
            self.input_types[attrs["name"]] = (attrs.get("type") or "text").lower()


def parse_form(html):
    parser = FormParser()
    parser.feed(html)
    parser.close()
    return parser


class RelyingParty(OAuth2Mixin, OpenIDMixin, BaseApp):
    """authlib's own OpenID client (the one behind its Flask, Django and
    Starlette integrations), used here for what it does without a web
    framework: loading the metadata, `parse_id_token` and `create_logout_url`."""

    client_cls = OAuth2Session


def legacy_jose_decode():
    """`authlib.jose.jwt` (deprecated in authlib 1.x in favour of joserfc,
    gone in 2.0); None when this authlib no longer has it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from authlib.jose import jwt
        return jwt
    except ImportError:
        return None


def validate_id_token(rp, jwks, token, nonce, issuer, client_id, label):
    """Validates `token["id_token"]` with authlib, twice: through the path its
    OpenID clients take (`OpenIDMixin.parse_id_token`: joserfc, the algorithms
    of `id_token_signing_alg_values_supported`, `CodeIDToken` with the access
    token for `at_hash`) and through `authlib.jose.jwt.decode` with the JWKS
    and `claims_cls=CodeIDToken`. Answers the claims."""
    options = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client_id},
    }
    claims = rp.parse_id_token(token, nonce, claims_options=options)
    check(claims is not None, f"{label}: no id_token in the token response")
    check("at_hash" in claims, f"{label}: the ID token has no at_hash")

    jwt = legacy_jose_decode()
    if jwt is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            legacy = jwt.decode(
                token["id_token"],
                jwks,
                claims_cls=CodeIDToken,
                claims_options={
                    "iss": {"essential": True, "value": issuer},
                    "aud": {"essential": True, "value": client_id},
                },
                claims_params={
                    "nonce": nonce,
                    "client_id": client_id,
                    "access_token": token["access_token"],
                },
            )
            legacy.validate(leeway=120)
        check(dict(legacy) == dict(claims), f"{label}: the two authlib decoders disagree")
        how = "parse_id_token and authlib.jose.jwt.decode"
    else:
        how = "parse_id_token (this authlib has no authlib.jose)"
    header = json.loads(urlsafe_b64decode(token["id_token"].split(".")[0] + "=="))
    step(f"{label}: valid per authlib ({how}): alg {header.get('alg')}, kid {header.get('kid')}, "
         f"sub {claims['sub']}, at_hash checked")
    return claims


def browser_authorize(browser, url, expect_login):
    """GET the authorize URL without following redirects. Answers the
    absolute Location."""
    response = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
    check(response.status_code == 302,
          f"authorize answered {response.status_code}, not 302: {response.text[:500]}")
    location = urljoin(url, response.headers["Location"])
    if expect_login is not None:
        is_login = urlsplit(location).path.endswith("/login")
        check(is_login == expect_login,
              f"authorize redirected to {location}; expected {'the login page' if expect_login else 'the client'}")
    return location


def main():
    issuer = env("LK_ISSUER").rstrip("/")
    client_id = env("LK_CLIENT_ID")
    client_secret = env("LK_CLIENT_SECRET")
    redirect_uri = env("LK_REDIRECT_URI")
    post_logout_uri = env("LK_POST_LOGOUT_URI")
    email = env("LK_EMAIL")
    password = env("LK_PASSWORD")

    # 1. Discovery: authlib reads the metadata, as its web clients do.
    discovery_url = f"{issuer}/.well-known/openid-configuration"
    rp = RelyingParty(
        framework=None,
        name="latchkey",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=discovery_url,
        client_kwargs={"default_timeout": TIMEOUT},
    )
    metadata = rp.load_server_metadata()
    check(metadata.get("issuer") == issuer,
          f"discovery issuer {metadata.get('issuer')!r} differs from {issuer!r}")
    for field in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint",
                  "jwks_uri", "end_session_endpoint"):
        check(metadata.get(field), f"discovery lacks {field}")
    check("S256" in (metadata.get("code_challenge_methods_supported") or []),
          "discovery does not list S256 in code_challenge_methods_supported")
    check(metadata.get("authorization_response_iss_parameter_supported") is True,
          "discovery does not say authorization_response_iss_parameter_supported: true")
    step(f"discovery ok: issuer {issuer}")

    jwks = requests.get(metadata["jwks_uri"], timeout=TIMEOUT).json()
    check(isinstance(jwks.get("keys"), list) and jwks["keys"], "the JWKS has no keys")
    step(f"JWKS ok: {len(jwks['keys'])} key(s)")

    # 2. The authorization request, built by authlib's OAuth2Session.
    oauth = OAuth2Session(
        client_id=client_id,
        client_secret=client_secret,
        token_endpoint_auth_method="client_secret_basic",
        scope=SCOPE,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        default_timeout=TIMEOUT,
    )
    code_verifier = generate_token(48)
    nonce = generate_token(20)
    authorize_url, state = oauth.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce
    )
    query = parse_qs(urlsplit(authorize_url).query)
    check(query.get("code_challenge_method") == ["S256"], "authlib did not add PKCE S256")
    step("authorization URL built (PKCE S256, state, nonce)")

    # 3. The browser: authorize -> login page -> POST the form -> 303 to the client.
    browser = requests.Session()
    login_url = browser_authorize(browser, authorize_url, expect_login=True)
    check("latchkey_login" in browser.cookies.get_dict(),
          f"authorize set no latchkey_login cookie (cookies: {sorted(browser.cookies.get_dict())})")
    page = browser.get(login_url, allow_redirects=False, timeout=TIMEOUT)
    check(page.status_code == 200, f"login page answered {page.status_code}")
    check(page.headers.get("Content-Type", "").startswith("text/html"),
          f"login page is {page.headers.get('Content-Type')}, not text/html")
    form = parse_form(page.text)
    check(form.method == "post", f"login form method is {form.method!r}, not post")
    for hidden in ("tx", "csrf"):
        check(form.inputs.get(hidden), f"login form has no value for the hidden input {hidden!r}")
        check(form.input_types.get(hidden) == "hidden", f"input {hidden!r} is not hidden")
    check("email" in form.inputs and "password" in form.inputs,
          f"login form lacks email/password inputs (has {sorted(form.inputs)})")
    step(f"login page ok: {urlsplit(login_url).path}, hidden tx and csrf found")

    action = urljoin(login_url, form.action or login_url)
    response = browser.post(
        action,
        data={"tx": form.inputs["tx"], "csrf": form.inputs["csrf"], "email": email, "password": password},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    check(response.status_code == 303,
          f"login POST answered {response.status_code}, not 303: {response.text[:500]}")
    callback = urljoin(action, response.headers["Location"])
    check(callback.startswith(redirect_uri + "?"),
          f"login redirected to {callback}, not to {redirect_uri}")
    check("latchkey_session" in browser.cookies.get_dict(), "login set no latchkey_session cookie")
    params = parse_qs(urlsplit(callback).query)
    check("error" not in params, f"authorization error: {params}")
    check(params.get("iss") == [issuer], f"iss in the redirect is {params.get('iss')}, not [{issuer!r}] (RFC 9207)")
    check(params.get("state") == [state], "state in the redirect differs from the one sent")
    check(params.get("code"), "no code in the redirect")
    step("signed in: 303 to the redirect URI with code, state and iss (RFC 9207) checked")

    # 4. The code exchange (authlib checks state again and sends code_verifier).
    token = oauth.fetch_token(
        metadata["token_endpoint"],
        authorization_response=callback,
        state=state,
        code_verifier=code_verifier,
    )
    for field in ("access_token", "token_type", "expires_in", "refresh_token", "id_token", "scope"):
        check(field in token, f"token response lacks {field}: {sorted(token)}")
    check(token["token_type"].lower() == "bearer", f"token_type {token['token_type']!r}")
    check("openid" in token["scope"].split(), f"granted scope {token['scope']!r} lacks openid")
    step(f"code exchanged (client_secret_basic): scope {token['scope']!r}")

    # 5. The ID token, validated by authlib.
    claims = validate_id_token(rp, jwks, token, nonce, issuer, client_id, "first ID token")
    check(claims.get("email") == email, f"ID token email {claims.get('email')!r}, not {email!r}")
    check(claims.get("sid"), "the ID token has no sid")
    check(isinstance(claims.get("auth_time"), int), "the ID token has no numeric auth_time")

    # 6. userinfo with the access token.
    info = oauth.get(metadata["userinfo_endpoint"])
    check(info.status_code == 200, f"userinfo answered {info.status_code}: {info.text[:300]}")
    info = info.json()
    check(info.get("sub") == claims["sub"], f"userinfo sub {info.get('sub')!r} differs from the ID token's")
    check(info.get("email") == email, f"userinfo email {info.get('email')!r}")
    step(f"userinfo ok: {info.get('email')}")

    # 7. Refresh: new tokens, a new ID token for the same session, without nonce.
    first_refresh = token["refresh_token"]
    refreshed = oauth.refresh_token(metadata["token_endpoint"])
    check(refreshed.get("id_token") and refreshed["id_token"] != token["id_token"],
          "the refresh answered no new id_token")
    check(refreshed.get("refresh_token") and refreshed["refresh_token"] != first_refresh,
          "the refresh token was not rotated")
    new_claims = validate_id_token(rp, jwks, refreshed, None, issuer, client_id, "refreshed ID token")
    check("nonce" not in new_claims, "the refreshed ID token carries a nonce")
    for same in ("sub", "sid", "auth_time"):
        check(new_claims.get(same) == claims.get(same), f"the refreshed ID token changed {same}")
    step("refresh ok: rotated refresh token, new ID token (same sub, sid, auth_time; no nonce)")

    # 8. RP-initiated logout with id_token_hint.
    logout_state = generate_token(20)
    logout_url = rp.create_logout_url(
        post_logout_redirect_uri=post_logout_uri,
        id_token_hint=refreshed["id_token"],
        state=logout_state,
    )["url"]
    response = browser.get(logout_url, allow_redirects=False, timeout=TIMEOUT)
    check(response.status_code == 302,
          f"end_session answered {response.status_code}, not 302: {response.text[:300]}")
    target = urljoin(logout_url, response.headers["Location"])
    parts = urlsplit(target)
    check(f"{parts.scheme}://{parts.netloc}{parts.path}" == post_logout_uri,
          f"end_session redirected to {target}, not to {post_logout_uri}")
    check(parse_qs(parts.query).get("state") == [logout_state], "end_session lost the state")
    step("end_session ok: 302 to post_logout_redirect_uri with state")

    # 9. The session is over: access token, refresh token and browser sign-in.
    response = requests.get(
        metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {refreshed['access_token']}"},
        timeout=TIMEOUT,
    )
    check(response.status_code == 401, f"userinfo after logout answered {response.status_code}, not 401")
    challenge = response.headers.get("WWW-Authenticate", "")
    check('error="invalid_token"' in challenge, f"WWW-Authenticate after logout: {challenge!r}")
    body = response.json()
    check(body.get("code") == "session_revoked", f"userinfo after logout: code {body.get('code')!r}")
    step("access token after logout: 401 invalid_token / session_revoked")

    try:
        oauth.refresh_token(metadata["token_endpoint"])
    except Exception as error:  # authlib's OAuthError
        check(getattr(error, "error", None) == "invalid_grant",
              f"refresh after logout failed with {error!r}, not invalid_grant")
    else:
        raise Failure("the refresh token still works after logout")
    step("refresh token after logout: invalid_grant")

    again, _ = oauth.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=generate_token(48), nonce=generate_token(20)
    )
    browser_authorize(browser, again, expect_login=True)
    step("browser sign-in ended: authorize shows the login page again")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - every failure ends the run
        traceback.print_exc()
        print(f"{NAME}: FAILED: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    step("all steps passed")
