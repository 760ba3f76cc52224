// A test OpenID Provider built on oidc-provider (panva/node-oidc-provider),
// an OpenID Certified implementation, for the Go test suite
// (internal/testidp/oidcprovider.go). It is configured entirely from the
// JSON file named by the first argument, which the Go side writes:
//
//   {
//     "issuer": "http://127.0.0.1:<port>",   // also where it listens
//     "user": { "login", "password", "sub", "email", "name", "groups" },
//     "clients": [ <oidc-provider client metadata>, ... ],
//     "features": { "par", "requirePar", "dpop", "dpopNonce", "revocation",
//                   "introspection", "backchannelLogout", "claimsParameter",
//                   "clientCredentials", "rpInitiatedLogout", "fapi2" },
//     "acrValues": [ ... ],
//     "accessTokenTTL": <seconds, 0 = default>,
//     "idTokenTTL": <seconds, 0 = default>
//   }
//
// Interactions are a small login form of our own (stable field names and
// ids, so a Go HTTP client or chromedp can drive it) that checks the one
// user's password; consent is granted without a page, as Dex's
// skipApprovalScreen does. Everything else is oidc-provider's own
// behaviour, including OIDC Core 5.4 (email/profile claims only from
// userinfo in the code flow) and 11 (offline_access only with
// prompt=consent).
//
// Test-only relaxation: oidc-provider refuses to fetch special-use
// addresses (loopback included) for jwks_uri and back-channel logout, a
// guard against SSRF. Every party of the tests is on 127.0.0.1, so this
// server drops that guard. Never do this in a real deployment.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { user } = cfg;
const features = cfg.features ?? {};
const issuer = new URL(cfg.issuer);

function privateJWK(type, options, extra) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: `${type}-${crypto.randomUUID()}`, ...extra };
}

// Fresh signing keys per start: RSA for RS256/PS256, P-256 for ES256,
// Ed25519 for EdDSA; a client picks with id_token_signed_response_alg.
const jwks = {
  keys: [
    privateJWK('rsa', { modulusLength: 2048 }, { use: 'sig' }),
    privateJWK('ec', { namedCurve: 'P-256' }, { use: 'sig' }),
    privateJWK('ed25519', {}, { use: 'sig' }),
  ],
};

const account = {
  accountId: user.sub,
  async claims() {
    return {
      sub: user.sub,
      email: user.email,
      email_verified: true,
      name: user.name,
      preferred_username: user.login,
      groups: user.groups,
    };
  },
};

const ttl = {};
if (cfg.accessTokenTTL > 0) ttl.AccessToken = cfg.accessTokenTTL;
if (cfg.idTokenTTL > 0) ttl.IdToken = cfg.idTokenTTL;

const configuration = {
  clients: cfg.clients,
  jwks,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  acrValues: cfg.acrValues ?? [],
  ttl,
  async findAccount(ctx, sub) {
    return sub === user.sub ? account : undefined;
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  features: {
    devInteractions: { enabled: false },
    pushedAuthorizationRequests: {
      enabled: features.par !== false,
      requirePushedAuthorizationRequests: features.requirePar === true,
    },
    dPoP: {
      enabled: features.dpop !== false,
      nonceSecret: features.dpopNonce ? crypto.randomBytes(32) : undefined,
      requireNonce: () => features.dpopNonce === true,
    },
    revocation: { enabled: features.revocation === true },
    introspection: { enabled: features.introspection === true },
    backchannelLogout: { enabled: features.backchannelLogout === true },
    claimsParameter: { enabled: features.claimsParameter === true },
    clientCredentials: { enabled: features.clientCredentials === true },
    rpInitiatedLogout: {
      enabled: features.rpInitiatedLogout !== false,
      logoutSource,
      postLogoutSuccessSource,
    },
    fapi: features.fapi2 ? { enabled: true, profile: '2.0' } : { enabled: false },
  },
  // See the header: the SSRF guard's dispatcher is left out.
  fetch(url, { dispatcher, ...options }) {
    return globalThis.fetch(url, options);
  },
};

const provider = new Provider(cfg.issuer, configuration);

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body>${body}</body></html>`;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// The confirmation oidc-provider asks for before ending the OP session.
// form is its own <form id="op.logoutForm"> with the xsrf field; the
// buttons name it in their form attribute.
async function logoutSource(ctx, form) {
  ctx.body = page('Sign out', `<h1 id="op-logout-question">Sign out of ${esc(ctx.host)}?</h1>${form}
<button id="op-logout-confirm" type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button id="op-logout-cancel" type="submit" form="op.logoutForm">No, stay signed in</button>`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.body = page('Signed out', '<h1 id="op-logout-done">You are signed out</h1>');
}

function loginPage(uid, error) {
  const err = error ? `<p id="op-login-error">${esc(error)}</p>` : '';
  return page('Sign in', `<h1>Sign in</h1>${err}
<form id="op-login" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<input id="op-login-name" type="text" name="login" autofocus>
<input id="op-login-password" type="password" name="password">
<button id="op-login-submit" type="submit">Sign in</button>
</form>`);
}

// acr of a login: the first requested acr_values entry the OP supports,
// else the first it supports, else none.
function loginACR(params) {
  const supported = cfg.acrValues ?? [];
  const requested = String(params.acr_values ?? '').split(' ').filter(Boolean);
  return requested.find((v) => supported.includes(v)) ?? supported[0];
}

// consent grants whatever the interaction is missing, with no page.
async function consent(details) {
  const { prompt: { details: missing }, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return { consent: { grantId: await grant.save() } };
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 << 10) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

// interaction serves GET /interaction/<uid> (the login form, or an
// automatic consent) and POST /interaction/<uid>/login.
async function interaction(req, res, path) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (req.method === 'GET' && path === `/interaction/${uid}`) {
    if (prompt.name === 'login') return send(res, 200, loginPage(uid));
    if (prompt.name === 'consent') return provider.interactionFinished(req, res, await consent(details), { mergeWithLastSubmission: true });
    return send(res, 400, page('Error', `unknown prompt ${esc(prompt.name)}`));
  }
  if (req.method === 'POST' && path === `/interaction/${uid}/login` && prompt.name === 'login') {
    const form = await readForm(req);
    if (form.get('login') !== user.login || form.get('password') !== user.password) {
      console.log(`login rejected for ${JSON.stringify(form.get('login'))}`);
      return send(res, 200, loginPage(uid, 'Invalid login or password.'));
    }
    const result = { login: { accountId: user.sub, acr: loginACR(params), amr: ['pwd'] } };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  return send(res, 404, page('Not found', 'no such interaction step'));
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, cfg.issuer);
  console.log(`${req.method} ${pathname}`);
  if (pathname.startsWith('/interaction/')) {
    interaction(req, res, pathname).catch((err) => {
      console.log(`interaction error: ${err}`);
      if (!res.headersSent) send(res, 400, page('Error', esc(err.message)));
    });
    return;
  }
  callback(req, res);
});

provider.on('server_error', (ctx, err) => console.log(`server_error: ${err.stack}`));
provider.on('backchannel.error', (client, err) => console.log(`backchannel.error ${client.clientId}: ${err}`));
provider.on('backchannel.success', (client) => console.log(`backchannel.success ${client.clientId}`));
for (const ev of ['grant.error', 'authorization.error', 'pushed_authorization_request.error', 'userinfo.error', 'introspection.error', 'revocation.error', 'end_session.error', 'jwks.error']) {
  provider.on(ev, (ctx, err) => console.log(`${ev}: ${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`));
}

process.on('SIGTERM', () => server.close(() => process.exit(0)));
server.listen(Number(issuer.port), issuer.hostname, () => {
  console.log(`oidc-provider listening on ${cfg.issuer}`);
});
