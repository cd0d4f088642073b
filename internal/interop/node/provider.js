// An OpenID provider for Gatehouse's interoperability tests: panva's
// oidc-provider (OpenID Certified), configured like a strict production
// provider where it matters to a relying party's refresh:
//   - refresh tokens rotate on every use (the old one is dead at once);
//   - access tokens live ACCESS_TOKEN_TTL seconds (a few, so tests see expiry);
//   - refreshed ID tokens carry the original nonce (oidc-provider always does);
//   - only the scopes it knows are granted (openid profile email), so a
//     refresh that names more scopes is refused with invalid_scope.
// Login and consent are accepted without a page (the test user is
// ACCOUNT), as an interactive provider would after the user clicked through.
//
// Environment: GATEHOUSE_CLIENT_ID, GATEHOUSE_APP_URL (redirect and
// post-logout URIs are derived from it), ACCESS_TOKEN_TTL, ACCOUNT.
// It listens on a port the kernel picks and prints "issuer <url>" once ready.
import http from 'node:http';
import Provider from 'oidc-provider';

const env = (name, fallback) => process.env[name] || fallback;
const clientID = env('GATEHOUSE_CLIENT_ID', 'gatehouse-interop');
const appURL = env('GATEHOUSE_APP_URL', 'http://127.0.0.1:3000');
const accessTTL = Number(env('ACCESS_TOKEN_TTL', '3'));
const account = env('ACCOUNT', 'interop-user');

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientID,
      token_endpoint_auth_method: 'none', // a public client: PKCE
      redirect_uris: [`${appURL}/auth/callback`],
      post_logout_redirect_uris: [`${appURL}/auth/logout/callback`],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    }],
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    claims: { openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email', 'email_verified'] },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, name: 'Interop User', preferred_username: id, email: `${id}@interop.example`, email_verified: true };
        },
      };
    },
    // offline_access is granted only with prompt=consent (OpenID Connect
    // Core 11); Gatehouse does not ask for it, so issue refresh tokens to
    // this client regardless, as ZITADEL does for offline_access.
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    rotateRefreshToken: true,
    ttl: { AccessToken: accessTTL, IdToken: 3600, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // Gatehouse posts its end-session form; oidc-provider accepts POST there
    // only with SameSite=None session cookies (a cross-site POST carries
    // no Lax cookie in a browser; this test's client sends them anyway).
    enableHttpPostMethods: true,
    cookies: { keys: ['interop-cookie-key-not-a-secret-0123456789'], long: { httpOnly: true, sameSite: 'none' } },
  });
  provider.proxy = false;

  // Login and consent, accepted at once.
  const interaction = async (req, res) => {
    const details = await provider.interactionDetails(req, res);
    const { prompt, params } = details;
    let result;
    if (prompt.name === 'login') {
      result = { login: { accountId: account } };
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
      if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
      if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
      result = { consent: { grantId: await grant.save() } };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  };

  const handle = provider.callback();
  server.on('request', (req, res) => {
    if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(req.url)) {
      interaction(req, res).catch((err) => {
        res.statusCode = 500;
        res.end(String(err && err.message));
      });
      return;
    }
    handle(req, res);
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err && err.message));
  console.log(`issuer ${issuer}`);
});

// The test stops the process by closing its stdin (and kills it if needed).
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
