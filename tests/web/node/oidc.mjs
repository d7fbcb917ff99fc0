// A real OpenID Connect provider for the browser tests (oidc-provider, its development sign-in
// pages: any login, any password). Accounts and their Mispers claims come from ACCOUNTS (JSON).
//   node oidc.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
import Provider from 'oidc-provider'

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2)
const accounts = JSON.parse(process.env.ACCOUNTS || '{}')

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic'
  }],
  claims: { openid: ['sub', 'force_role', 'force_rank'] },
  conformIdTokenClaims: false, // the role and rank go into the ID token itself
  pkce: { required: () => true },
  cookies: { keys: ['browser-test-only-cookie-key'] },
  async findAccount (ctx, id) {
    const extra = accounts[id] || {}
    return { accountId: id, async claims () { return { sub: id, ...extra } } }
  }
})
provider.proxy = false
provider.listen(Number(port), '127.0.0.1', () => { console.log(`oidc-provider listening on ${port}`) })
