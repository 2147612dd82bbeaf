// Package admin is keygate's management REST API (SPEC section 5) as a plain
// http.Handler over keys.Store. It never imports Caddy: module/ mounts it as
// the keygate_admin handler and on Caddy's admin endpoint, and the CLI runs
// it in process against the store.
//
// # Mounting
//
//	h := admin.New(admin.Config{Store: store, Hasher: hasher, Sealer: sealer, Logger: logger})
//	// network listener: callers authenticate with keygate access keys
//	mux.Handle("/v1/", h)
//	// local-only admin endpoint / CLI: trusted, acts as a superadmin
//	h.ServeHTTP(w, r.WithContext(admin.WithTrustedCaller(r.Context(), "cli")))
//
// Routes start at /v1/ (and the MTM paths of seed 001 under
// /services/mtm/v1/); under a prefix, strip it before calling the
// handler. Purge removes DELETED users whose plannedPurgeDate passed,
// CompleteDeletions finishes interrupted deletions and PurgeSessions
// removes expired console sessions; run them periodically (and
// CompleteDeletions at start). Client is a small typed client for the CLI.
//
// # Authentication and scoping
//
// A caller presents one of keygate's own access keys (Authorization: Bearer
// kg_… or X-Api-Key), an access token of the token endpoint, or a console
// session token (kgs_…, from POST /v1/console/session, which exchanges a
// key or access token for one bound to that key and refuses SERVICE and
// APPLICATION users). The key (the session's key) must verify, be usable
// (ACTIVE, unexpired, not past a replacement's grace period) and belong to
// an ACTIVE user. Every credential problem is the same 401 with
// WWW-Authenticate: Bearer realm="keygate". Then:
//
//   - A superadmin user (User.Superadmin) acts on every tenant. Trusted
//     callers (WithTrustedCaller) act as superadmins without a key.
//   - Otherwise the caller is a tenant admin of the key's tenant when it
//     holds an ACTIVE ADMIN permission there and the tenant is ACTIVE. A key
//     is valid in exactly one tenant, so a tenant admin acts on exactly one
//     tenant, even when its user is ADMIN in others too (it uses a key of
//     that other tenant there). A valid key without that gets 403.
//   - A user with an ACTIVE permission of any role in its key's tenant
//     (a MEMBER or VIEWER) reads its own record, keys (masked), roles and
//     permissions, and the profiles (id, name, type, role, status) of the
//     users in that tenant; nothing more (403 on the routes that
//     administer, 404 for other users' records).
//   - A tenant admin sees a user when the user's primary tenant is its
//     tenant or the user holds a permission (any state) there; it changes a
//     user (PATCH, DELETE, roles, secrets, history, export) only when the
//     primary tenant is its tenant and the user is no superadmin. Keys: it
//     sees and changes the keys valid in its tenant. Objects it may not see
//     answer 404, exactly like objects that do not exist; objects it sees
//     but may not change answer 403.
//   - Users: creating needs primaryTenant in the caller's tenant (default
//     for tenant admins); the user gets an ACTIVE permission there with its
//     role. Lists are forced to the caller's tenant (tenant=… for another
//     one is 404). Only a superadmin sets superadmin: true.
//   - Permissions: the caller must administer the workspace and see the
//     user; inviting a user of another tenant takes a superadmin.
//     POST /v1/permissions/{id}/accept is authenticated with one of the
//     invited user's own keys and only for its own permission.
//   - Tenants: a superadmin creates tenants and changes their status; a
//     tenant admin sees and may rename its own.
//   - POST /v1/bootstrap answers 404 to everyone but trusted callers.
//
// # Requests and responses
//
// Bodies are application/json (415 otherwise; PATCH also takes
// application/merge-patch+json), at most Config.MaxBody bytes (413),
// without unknown fields, wrong types or trailing data (400 naming the
// field). Success bodies are the Envelope {"status":"OK","type":"User",
// "errors":[],"total":N,"code":200,"timestamp":…,"account":…,"data":…};
// errors are RFC 9457 Problem documents
// (application/problem+json, type https://keygate.dev/problems/<slug>).
// Lists take page (default 1), size (default 30, at most 100), sort
// (comma-separated fields, "-" for descending; unknown fields are 400) and
// filters; total counts all matches. An answer with one object (read,
// created or changed) has total 1.
//
// Every single object carries a strong ETag "<version>". PATCH, PUT and
// DELETE on tenants, users, keys and secrets need If-Match (428 without it,
// 412 when stale, * matches any version) or a "version" member in the body.
// Roles PUT/DELETE honour If-Match but do not require it. POST actions
// need none.
//
// DELETE /v1/users/{id} deletes in two steps: DELETING (its keys revoked,
// secrets deactivated, permissions archived, console sessions ended, in
// one transaction), then DELETED (its usage counts taken off it); it
// answers 200 with the DELETED user, or 202 with the DELETING one when the
// second step failed (CompleteDeletions finishes it); DELETE of a key
// answers 200 with the REVOKED key; DELETE of a secret answers 204.
// POST …/keys/{keyId}/replace takes an optional {"gracePeriod": "24h"} (a Go
// duration string, or a number of seconds; at most 720h) and
// {"expiresAt"} (default: the old key's); it answers 201 with the new key
// (its "key" member shown once) and the old one under "previous".
//
// Full keys ("key") and secret values ("secret") appear only in the
// response that creates them; listings show kg_<id>_…last4. Every call to
// an authenticated route is recorded in the activity log (actor, method,
// path, status, tenant; never bodies or query strings). The OpenAPI 3.1
// document is served at GET /v1/openapi.json.
package admin
