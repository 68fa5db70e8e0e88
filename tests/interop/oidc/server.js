// An Entra-like OpenID provider for keyway's JWT interop tests, built on oidc-provider (OpenID
// Certified). Paths follow Entra: issuer {base}/{tenant}/v2.0 (discovery beneath it), token
// {base}/{tenant}/oauth2/v2.0/token, keys {base}/{tenant}/discovery/v2.0/keys. One confidential
// client (client_secret_post) gets RS256 JWT access tokens by client_credentials; `aud` is the
// `resource` parameter (default api://keyway). POST /rotate adds a new signing key, makes it the
// active one and answers {"kid": …}; old keys stay published. Listens on 127.0.0.1 only.
//
// usage: node server.js PORT [TENANT [CLIENT_ID [CLIENT_SECRET]]]
// env:   OIDC_TENANT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_WORKSPACE (portkey_workspace claim),
//        OIDC_ROLES (comma-separated `roles` claim), OIDC_AUDIENCE, OIDC_NODE_MODULES (where
//        oidc-provider is installed; default ${KEYWAY_CACHE:-~/.cache/keyway}/oidc/node_modules)
import crypto from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [port, tenant = process.env.OIDC_TENANT || 'tenant1',
  clientId = process.env.OIDC_CLIENT_ID || 'keyway-client',
  clientSecret = process.env.OIDC_CLIENT_SECRET || 'keyway-client-secret'] = process.argv.slice(2);
if (!/^\d+$/.test(port || '')) { console.error('usage: node server.js PORT [TENANT [CLIENT_ID [CLIENT_SECRET]]]'); process.exit(2); }
const env = process.env;
const modules = env.OIDC_NODE_MODULES
  || path.join(env.KEYWAY_CACHE || path.join(os.homedir(), '.cache/keyway'), 'oidc/node_modules');
const { default: Provider } = await import(pathToFileURL(path.join(modules, 'oidc-provider/lib/index.js')).href);

const base = `http://127.0.0.1:${port}`;
const issuer = `${base}/${tenant}/v2.0`;
const audience = env.OIDC_AUDIENCE || 'api://keyway';
const roles = (env.OIDC_ROLES || '').split(',').filter(Boolean);
const keys = [];

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = crypto.randomBytes(8).toString('hex');
  keys.unshift({ ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' });
  return kid;
}

// oidc-provider fixes its keys at construction: rotation builds a new instance (the first key
// signs) and swaps it in. Client-credentials tokens are stateless JWTs, so nothing is lost.
function build() {
  const provider = new Provider(issuer, {
    clients: [{ client_id: clientId, client_secret: clientSecret, grant_types: ['client_credentials'],
      redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_post',
      scope: 'openid owner admin member' }],
    jwks: { keys },
    scopes: ['openid', 'owner', 'admin', 'member'],
    routes: { token: '/oauth2/v2.0/token', jwks: '/discovery/v2.0/keys' },
    cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: { enabled: true,
        defaultResource: () => audience,
        getResourceServerInfo: () => ({ scope: 'owner admin member', accessTokenTTL: 600,
          accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }) },
    },
    extraTokenClaims: (ctx, token) => ({ azp: token.clientId, tid: tenant, ver: '2.0',
      ...(env.OIDC_WORKSPACE ? { portkey_workspace: env.OIDC_WORKSPACE } : {}),
      ...(roles.length ? { roles } : {}) }),
  });
  return provider.callback();
}

newKey();
let handler = build();
const mount = `/${tenant}`;
const discovery = `${mount}/v2.0/.well-known/openid-configuration`;

http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/rotate') {
    const kid = newKey();
    handler = build();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ kid }));
  } else if (req.url === discovery || req.url.startsWith(`${mount}/`)) {
    // oidc-provider derives its mount path (hence every advertised URL) from originalUrl.
    req.url = req.url === discovery ? '/.well-known/openid-configuration' : req.url.slice(mount.length);
    req.originalUrl = mount + req.url;
    handler(req, res);
  } else {
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
  }
}).listen(Number(port), '127.0.0.1', () => console.log(`oidc provider ${issuer} ready`));
